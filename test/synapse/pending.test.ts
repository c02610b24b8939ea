import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PendingCall, PendingTable } from '../../src/synapse/pending.js';

const noop = () => {};

test('a long-pending call among millions of short ones neither collides nor grows the table', () => {
  const table = new PendingTable();
  let next = 1;
  const take = () => {
    const id = table.claim(next);
    next = id === 0xffffffff ? 1 : id + 1;
    const p = new PendingCall(id, null, noop, noop, 0, null, 0);
    table.set(p);
    return p;
  };
  const stuck = take();
  const window: PendingCall[] = [];
  for (let i = 0; i < 1_000_000; i++) {
    window.push(take());
    if (window.length === 16) {
      for (const p of window) {
        assert.equal(table.get(p.id), p);
        table.delete(p);
      }
      window.length = 0;
    }
  }
  assert.equal(table.get(stuck.id), stuck);
  assert.ok(table.capacity <= 64, `table grew to ${table.capacity}`);
  assert.equal(table.size, 1);
});

test('ids wrap around 2^32 and skip 0; a late reply for a reused slot misses', () => {
  const table = new PendingTable();
  const a = new PendingCall(table.claim(0xffffffff), null, noop, noop, 0, null, 0);
  table.set(a);
  assert.equal(a.id, 0xffffffff);
  const id = table.claim(1);
  assert.equal(id, 1);
  table.delete(a);
  assert.equal(table.get(0xffffffff), undefined);
  // id 63 shares the slot 0xffffffff used: a late reply for the old id must not find the new call
  const b = new PendingCall(table.claim(63), null, noop, noop, 0, null, 0);
  table.set(b);
  assert.equal(b.id, 63);
  assert.equal(table.get(0xffffffff), undefined);
  assert.equal(table.get(63), b);
});

test('the table grows when more than half the slots are in flight', () => {
  const table = new PendingTable();
  for (let i = 1; i <= 1000; i++) table.set(new PendingCall(table.claim(i), null, noop, noop, 0, null, 0));
  assert.equal(table.size, 1000);
  assert.ok(table.capacity >= 2000);
  for (let i = 1; i <= 1000; i++) assert.equal(table.get(i)?.id, i);
});
