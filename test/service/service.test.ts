import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCellError } from '../../src/errors/index.js';
import { canonicalJson, protein, t } from '../../src/protein/index.js';
import { genomeJson, rpc, service } from '../../src/service/index.js';

const Order = protein('Order', { symbol: t.string, amount: t.u64 });

test('method ids are dense and follow the sorted method names', () => {
  const s = service('exchange', {
    place: rpc(Order, t.u64),
    ping: rpc(t.u64, t.u64),
    batch: rpc(t.vec(Order), t.uint),
    Zeta: rpc(t.unit, t.unit),
  });
  assert.deepStrictEqual(
    s.byId.map((m) => [m.id, m.name]),
    [
      [0, 'Zeta'],
      [1, 'batch'],
      [2, 'ping'],
      [3, 'place'],
    ],
  );
  for (const m of s.byId) assert.equal(s.methods[m.name as keyof typeof s.methods], m);
  assert.equal(s.methods.place.input, Order);
  assert.equal(s.name, 'exchange');
  assert.ok(Object.isFrozen(s) && Object.isFrozen(s.byId));
});

test('declaration order does not change ids or the fingerprint', () => {
  const a = service('exchange', { ping: rpc(t.u64, t.u64), place: rpc(Order, t.u64) });
  const b = service('exchange', { place: rpc(Order, t.u64), ping: rpc(t.u64, t.u64) });
  assert.equal(a.fingerprint, b.fingerprint);
  assert.equal(genomeJson(a), genomeJson(b));
  assert.equal(a.methods.place.id, b.methods.place.id);
});

test('the fingerprint covers the name, methods and their shapes', () => {
  const base = service('exchange', { ping: rpc(t.u64, t.u64) });
  const others = [
    service('exchange2', { ping: rpc(t.u64, t.u64) }),
    service('exchange', { pong: rpc(t.u64, t.u64) }),
    service('exchange', { ping: rpc(t.u32, t.u64) }),
    service('exchange', { ping: rpc(t.u64, t.unit) }),
    service('exchange', { ping: rpc(t.u64, t.u64), pong: rpc(t.unit, t.unit) }),
  ];
  for (const o of others) assert.notEqual(o.fingerprint, base.fingerprint, canonicalJson(o.genome));
  const g = JSON.parse(genomeJson(base));
  assert.equal(g.kind, 'service');
  assert.deepStrictEqual(g.methods[0], {
    id: 0,
    input: { kind: 'u64' },
    kind: 'method',
    name: 'ping',
    output: { kind: 'u64' },
  });
});

test('invalid service and method names and non-codecs are rejected', () => {
  const bad = (fn: () => unknown, code: string) => assert.throws(fn, (e: unknown) => isCellError(e) && e.code === code);
  bad(() => service('Bad Name', { ping: rpc(t.u64, t.u64) }), 'E_NAME_INVALID');
  bad(() => service('../x', {}), 'E_NAME_INVALID');
  bad(() => service('ok', { 'has space': rpc(t.u64, t.u64) }), 'E_NAME_INVALID');
  // biome-ignore lint/suspicious/noThenProperty: proves the name is refused
  bad(() => service('ok', { then: rpc(t.u64, t.u64) }), 'E_NAME_INVALID');
  bad(() => service('ok', { ping: { input: t.u64, output: t.u64 } as never }), 'E_SCHEMA_INVALID');
  bad(() => rpc({} as never, t.u64), 'E_SCHEMA_INVALID');
});

test('scalar and unit inputs/outputs encode through the method codecs', () => {
  const s = service('exchange', { ping: rpc(t.u64, t.u64), stop: rpc(t.unit, t.unit) });
  assert.equal(s.methods.ping.input.decode(s.methods.ping.input.encode(42n)), 42n);
  assert.equal(s.methods.stop.input.encode(undefined).length, 0);
  assert.equal(s.methods.stop.output.decode(new Uint8Array(0)), undefined);
});
