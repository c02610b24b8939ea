import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeErrorPayload, encodeFrame, FrameType } from '../../src/frame/index.js';
import { pickupRefusal } from '../../src/shm/upgrade.js';

test('a refused pickup reads as the reason: the glue’s ERR text, or a decoded connection-level ERROR frame', () => {
  assert.equal(pickupRefusal(Buffer.from('ERR unknown or expired ticket')), 'unknown or expired ticket');
  const frame = encodeFrame(
    FrameType.ERROR,
    0,
    0,
    encodeErrorPayload({ code: 'E_OVERLOADED', message: 'the cell already serves 1 connections.', fix: 'reuse' }),
  );
  assert.equal(pickupRefusal(frame), 'E_OVERLOADED: the cell already serves 1 connections');
  assert.equal(pickupRefusal(Buffer.alloc(0)), 'no answer');
  assert.equal(pickupRefusal(Buffer.from([0x01, 0x02, 0x41])), '??A', 'control bytes never reach the message');
  assert.equal(pickupRefusal(Buffer.alloc(500, 0x41)).length, 201);
});
