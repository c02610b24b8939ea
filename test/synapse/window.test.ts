import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PendingCall } from '../../src/synapse/pending.js';
import { SendWindow } from '../../src/synapse/window.js';

const noop = () => {};
const call = (id: number) => new PendingCall(id, null, noop, noop, 0, null, 0);
const frame = (id: number) => Buffer.from([id]);

test('requests past the limit wait and go out in call order, one per answer', () => {
  const w = new SendWindow();
  w.setLimit(2);
  w.sent();
  w.sent();
  assert.equal(w.full, true);
  const waiting = [3, 4, 5].map(call);
  for (const p of waiting) w.hold(p, frame(p.id));
  assert.equal(w.take(), undefined, 'no room yet');
  assert.equal(w.answered(), true);
  assert.deepEqual(w.take(), frame(3));
  assert.equal(waiting[0]?.frame, null, 'on the wire');
  assert.equal(w.take(), undefined, 'full again');
  w.answered();
  w.answered();
  assert.deepEqual([w.take(), w.take(), w.take()], [frame(4), frame(5), undefined]);
});

test('a request given up while it waited is skipped, not sent', () => {
  const w = new SendWindow();
  w.setLimit(1);
  w.sent();
  const [a, b] = [call(2), call(3)];
  w.hold(a, frame(2));
  w.hold(b, frame(3));
  a.frame = null;
  w.answered();
  assert.deepEqual(w.take(), frame(3));
  assert.equal(w.full, true);
});

test('an abandoned request holds its place until its late answer; its id stays taken until then', () => {
  const w = new SendWindow();
  w.setLimit(1);
  w.sent();
  w.abandon(7);
  assert.equal(w.inUse(7), true);
  w.hold(call(8), frame(8));
  assert.equal(w.lateAnswer(99), false, 'an id never abandoned frees nothing');
  assert.equal(w.take(), undefined);
  assert.equal(w.lateAnswer(7), true);
  assert.equal(w.inUse(7), false);
  assert.deepEqual(w.take(), frame(8));
  assert.equal(w.lateAnswer(7), false, 'answered once only');
});

test('no limit until the WELCOME names one; 0 there means none', () => {
  const w = new SendWindow();
  for (let i = 0; i < 100_000; i++) w.sent();
  assert.equal(w.full, false);
  w.setLimit(0);
  assert.equal(w.full, false);
  // Nothing waits for an abandoned request's place, so none is tracked (a cell that never answers).
  w.abandon(5);
  assert.equal(w.inUse(5), false);
  w.setLimit(100_000);
  assert.equal(w.full, true);
});

test('a long queue drained in steps keeps its order and does not grow without bound', () => {
  const w = new SendWindow();
  w.setLimit(1);
  w.sent();
  for (let i = 1; i <= 10_000; i++) w.hold(call(i), frame(i & 0xff));
  for (let i = 1; i <= 10_000; i++) {
    w.answered();
    assert.deepEqual(w.take(), frame(i & 0xff));
  }
  w.answered();
  assert.equal(w.take(), undefined);
  assert.equal(w.full, false);
});
