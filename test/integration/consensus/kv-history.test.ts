import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkKvHistory, type KvOp } from './kv-history.js';

const op = (clientId: number, input: KvOp['input'], output: KvOp['output'], call: number, ret: number): KvOp => ({
  clientId,
  key: 'k',
  input,
  output,
  call,
  ret,
});

test('kv history checker: known-good and known-bad histories', () => {
  // Sequential put then get.
  assert.equal(
    checkKvHistory([op(1, { op: 'put', value: 'a' }, null, 0, 1), op(2, { op: 'get' }, { value: 'a' }, 2, 3)], 1000)
      .result,
    'ok',
  );
  // A read after an acknowledged write that misses it: stale read.
  assert.equal(
    checkKvHistory([op(1, { op: 'put', value: 'a' }, null, 0, 1), op(2, { op: 'get' }, { value: null }, 2, 3)], 1000)
      .result,
    'illegal',
  );
  // Concurrent: either order is fine.
  assert.equal(
    checkKvHistory([op(1, { op: 'put', value: 'a' }, null, 0, 5), op(2, { op: 'get' }, { value: null }, 1, 2)], 1000)
      .result,
    'ok',
  );
  // Two reads disagreeing with real time: a then old value after.
  assert.equal(
    checkKvHistory(
      [
        op(1, { op: 'put', value: 'a' }, null, 0, 10),
        op(2, { op: 'get' }, { value: 'a' }, 1, 2),
        op(3, { op: 'get' }, { value: null }, 3, 4),
      ],
      1000,
    ).result,
    'illegal',
  );
  // cas: both succeeding from the same expected value is impossible.
  assert.equal(
    checkKvHistory(
      [
        op(1, { op: 'put', value: 'a' }, null, 0, 1),
        op(2, { op: 'cas', expected: 'a', value: 'b' }, { ok: true }, 2, 5),
        op(3, { op: 'cas', expected: 'a', value: 'c' }, { ok: true }, 2, 5),
      ],
      1000,
    ).result,
    'illegal',
  );
  // An unknown-outcome write may take effect later (or never).
  assert.equal(
    checkKvHistory(
      [
        op(1, { op: 'put', value: 'a' }, undefined, 0, Number.POSITIVE_INFINITY),
        op(2, { op: 'get' }, { value: null }, 1, 2),
        op(2, { op: 'get' }, { value: 'a' }, 3, 4),
      ],
      1000,
    ).result,
    'ok',
  );
});
