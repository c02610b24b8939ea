import assert from 'node:assert/strict';
import type { StreamSink } from '../../src/shm/wire.js';

/** A ring sink's socket side for tests in which every frame must take the ring: any use fails. */
export const noSocket: StreamSink = {
  buf: Buffer.alloc(1 << 16),
  reserve: () => 0,
  commit: () => assert.fail('a frame went to the socket'),
  flush: () => {},
  writeFrame: () => assert.fail('a frame went to the socket'),
};
