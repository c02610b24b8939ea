import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCellError } from '../../src/errors/index.js';
import { codecFromGenome } from '../../src/protein/from-genome.js';
import { protein, t } from '../../src/protein/index.js';
import { rpc, service } from '../../src/service/index.js';
import { serviceFromGenome } from '../../src/service/service.js';

const Side = t.enum('Side', { Buy: null, Sell: t.u64, Note: t.string });
const Leg = protein('Leg', { qty: t.i32, px: t.f64 });
const Order = protein('Order', {
  symbol: t.string,
  amount: t.u64,
  delta: t.i64,
  side: Side,
  legs: t.vec(Leg),
  tag: t.array(t.u8, 4),
  blob: t.bytes,
  flags: t.vec(t.bool),
  seq: t.uint,
  off: t.int,
  small: t.u16,
  tiny: t.i8,
  f: t.f32,
  note: t.option(t.string),
  nothing: t.unit,
});

test('a codec rebuilt from its genome has the same fingerprint and reads and writes the same bytes', () => {
  const copy = codecFromGenome(Order.genome);
  assert.equal(copy.fingerprint, Order.fingerprint);
  const value = {
    symbol: 'BTC',
    amount: 2n ** 60n,
    delta: -5n,
    side: { tag: 'Sell', value: 9n },
    legs: [{ qty: -3, px: 1.5 }],
    tag: [1, 2, 3, 4],
    blob: new Uint8Array([9, 8]),
    flags: [true, false],
    seq: 7,
    off: -7,
    small: 65535,
    tiny: -128,
    f: 0.5,
    note: 'n',
    nothing: undefined,
  } as const;
  const bytes = Order.encode(value as never);
  assert.deepEqual(Buffer.from(copy.encode(value)), Buffer.from(bytes));
  assert.deepEqual(copy.decode(bytes), Order.decode(bytes));
});

test('a service rebuilt from its genome keeps ids, names and the fingerprint', () => {
  const Svc = service('market', {
    place: rpc(Order, t.u64),
    cancel: rpc(t.uint, t.bool),
    ping: rpc(t.unit, t.unit),
  });
  const copy = serviceFromGenome(Svc.genome);
  assert.equal(copy.fingerprint, Svc.fingerprint);
  assert.deepEqual(
    copy.byId.map((m) => [m.id, m.name]),
    [
      [0, 'place'],
      [1, 'cancel'],
      [2, 'ping'],
    ],
  );
});

test('an unknown or malformed genome is E_SCHEMA_INVALID', () => {
  for (const g of [{ kind: 'quaternion' }, { kind: 'vec' }, { kind: 'struct', name: 'X' }]) {
    assert.throws(
      () => codecFromGenome(g),
      (e: unknown) => isCellError(e, 'E_SCHEMA_INVALID'),
    );
  }
  assert.throws(
    () => serviceFromGenome({ kind: 'struct', name: 'x' }),
    (e: unknown) => isCellError(e, 'E_SCHEMA_INVALID'),
  );
});
