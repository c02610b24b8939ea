import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCellError } from '../../src/errors/index.js';
import { canonicalJson, protein, t } from '../../src/protein/index.js';
import { genomeJson, rpc, service, serviceCompatible } from '../../src/service/index.js';

const Order = protein('Order', { symbol: t.string, amount: t.u64 });

test('method ids are dense and follow the declaration order', () => {
  const s = service('exchange', {
    place: rpc(Order, t.u64),
    ping: rpc(t.u64, t.u64),
    batch: rpc(t.vec(Order), t.uint),
    Zeta: rpc(t.unit, t.unit),
  });
  assert.deepStrictEqual(
    s.byId.map((m) => [m.id, m.name]),
    [
      [0, 'place'],
      [1, 'ping'],
      [2, 'batch'],
      [3, 'Zeta'],
    ],
  );
  for (const m of s.byId) assert.equal(s.methods[m.name as keyof typeof s.methods], m);
  assert.equal(s.methods.place.input, Order);
  assert.equal(s.name, 'exchange');
  assert.ok(Object.isFrozen(s) && Object.isFrozen(s.byId));
});

test('appending a method keeps ids; reordering changes ids and the fingerprint', () => {
  const a = service('exchange', { ping: rpc(t.u64, t.u64), place: rpc(Order, t.u64) });
  const again = service('exchange', { ping: rpc(t.u64, t.u64), place: rpc(Order, t.u64) });
  const appended = service('exchange', {
    ping: rpc(t.u64, t.u64),
    place: rpc(Order, t.u64),
    cancel: rpc(t.u64, t.bool),
  });
  const reordered = service('exchange', { place: rpc(Order, t.u64), ping: rpc(t.u64, t.u64) });
  assert.equal(a.fingerprint, again.fingerprint);
  assert.equal(genomeJson(a), genomeJson(again));
  assert.equal(appended.methods.place.id, a.methods.place.id);
  assert.equal(appended.methods.cancel.id, 2);
  assert.notEqual(reordered.fingerprint, a.fingerprint);
  assert.equal(reordered.methods.place.id, 0);
  assert.ok(serviceCompatible(appended, a), 'a new server serves old clients');
  assert.ok(!serviceCompatible(a, appended), 'an old server lacks the new method');
  assert.ok(!serviceCompatible(reordered, a), 'ids moved');
});

test('service compatibility follows struct evolution in inputs and outputs', () => {
  const V1 = protein('Order', { symbol: t.string, amount: t.u64 });
  const V2 = protein('Order', { symbol: t.string, amount: t.u64, note: t.option(t.string) });
  const R1 = protein('Receipt', { id: t.u64 });
  const R2 = protein('Receipt', { id: t.u64, at: t.option(t.u64) });
  const oldSvc = service('exchange', { place: rpc(V1, R1) });
  const newSvc = service('exchange', { place: rpc(V2, R2) });
  assert.ok(serviceCompatible(newSvc, oldSvc));
  assert.ok(serviceCompatible(oldSvc, newSvc));
  const breaking = service('exchange', { place: rpc(V1, t.u64) });
  assert.ok(!serviceCompatible(breaking, oldSvc));
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
