import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Vesicle } from '../../src/vesicle/index.js';

test('a borrowed Vesicle views the chunk without copying and releases once', () => {
  const chunk = new Uint8Array([1, 2, 3, 4, 5, 6]);
  let released = 0;
  const v = Vesicle.borrowed(chunk, 2, 3, () => released++);
  assert.equal(v.borrowed, true);
  assert.deepEqual([...v.payload], [3, 4, 5]);
  chunk[2] = 9;
  assert.equal(v.payload[0], 9, 'the payload is a view, not a copy');
  v.release();
  v.release();
  assert.equal(released, 1);
  assert.equal(v.released, true);
});

test('retain() copies borrowed bytes, returns the borrowed memory, and survives reuse of the chunk', () => {
  const chunk = new Uint8Array([1, 2, 3, 4]);
  let released = 0;
  const v = Vesicle.borrowed(chunk, 1, 2, () => released++).retain();
  assert.equal(released, 1);
  assert.equal(v.borrowed, false);
  chunk.fill(0);
  assert.deepEqual([...v.payload], [2, 3]);
  v.release();
  assert.equal(released, 1);
});

test('an owned Vesicle has no release hook', () => {
  const v = Vesicle.owned(new Uint8Array([7]));
  assert.equal(v.borrowed, false);
  assert.equal(v.retain(), v);
  v.release();
  assert.equal(v.released, true);
});
