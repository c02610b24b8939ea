import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConnectionSlots, SLOT_ORDINARY, SLOT_RESERVED } from '../../src/membrane/slots.js';

test('ordinary slots are shared up to the limit, one uid holds at most its share', () => {
  const s = new ConnectionSlots({ maxConnections: 4, perUid: 3, reserved: 2 });
  assert.equal(s.admit(1000, false), SLOT_ORDINARY);
  assert.equal(s.admit(1000, false), SLOT_ORDINARY);
  assert.equal(s.admit(1000, false), SLOT_ORDINARY);
  assert.equal(s.admit(1000, false), 'uid', 'uid 1000 holds its 3');
  assert.equal(s.admit(1001, false), SLOT_ORDINARY, 'another uid takes the last slot');
  assert.equal(s.admit(1002, false), 'full');
  assert.equal(s.admit(-1, false), 'full', 'an unknown uid is held to the shared limit');
  s.release(SLOT_ORDINARY, 1000);
  assert.equal(s.heldBy(1000), 2);
  assert.equal(s.admit(-1, false), SLOT_ORDINARY);
  assert.equal(s.ordinary, 4);
});

test('inspection takes an ordinary slot while one is free, then the reserved ones, and only those', () => {
  const s = new ConnectionSlots({ maxConnections: 2, perUid: 2, reserved: 2 });
  assert.equal(s.admit(0, true), SLOT_ORDINARY);
  assert.equal(s.admit(5, false), SLOT_ORDINARY);
  assert.equal(s.admit(5, false), 'full');
  assert.equal(s.admit(0, true), SLOT_RESERVED);
  assert.equal(s.admit(5, true), SLOT_RESERVED);
  assert.equal(s.admit(0, true), 'full');
  s.release(SLOT_RESERVED, 0);
  assert.equal(s.reservedInUse, 1);
  assert.equal(s.admit(7, true), SLOT_RESERVED);
  // A uid at its share may still inspect through a reserved slot.
  const u = new ConnectionSlots({ maxConnections: 10, perUid: 1, reserved: 1 });
  assert.equal(u.admit(3, false), SLOT_ORDINARY);
  assert.equal(u.admit(3, true), SLOT_RESERVED);
  assert.equal(u.admit(3, true), 'uid');
});
