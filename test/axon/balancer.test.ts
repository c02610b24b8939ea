import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Balancer } from '../../src/axon/balancer.js';
import { parsePeer } from '../../src/axon/client.js';
import type { RemoteInstance } from '../../src/axon/pheromones/index.js';
import { isCellError } from '../../src/errors/index.js';

const inst = (key: string, load = 0): RemoteInstance => ({
  key,
  name: 'adder',
  fingerprint: 1n,
  address: '10.77.0.1',
  port: 1,
  load,
  hostName: key,
  hostFingerprint: key,
  expiresAt: Number.POSITIVE_INFINITY,
});

test('least in-flight picks the instance with the fewest outstanding calls, then the lowest announced load', () => {
  const b = new Balancer();
  const list = [inst('a', 5), inst('b', 0), inst('c', 9)];
  const inFlight: Record<string, number> = { a: 1, b: 3, c: 1 };
  assert.equal(b.pick(list, (k) => inFlight[k] ?? 0)?.key, 'a');
  inFlight.a = 2;
  assert.equal(b.pick(list, (k) => inFlight[k] ?? 0)?.key, 'c');
});

test('equal instances share calls evenly', () => {
  const b = new Balancer();
  const list = [inst('a'), inst('b'), inst('c')];
  const counts: Record<string, number> = {};
  for (let i = 0; i < 300; i++) {
    const k = b.pick(list, () => 0)!.key;
    counts[k] = (counts[k] ?? 0) + 1;
  }
  assert.deepEqual(counts, { a: 100, b: 100, c: 100 });
});

test('a failed instance cools down with doubling back-off and is used again afterwards', () => {
  let now = 0;
  const b = new Balancer({ cooldownMs: 100, maxCooldownMs: 300, now: () => now });
  const list = [inst('a'), inst('b')];
  b.markFailed('a');
  for (let i = 0; i < 10; i++) assert.equal(b.pick(list, () => 0)?.key, 'b');
  now = 101;
  assert.ok(!b.isCoolingDown('a'));
  b.markFailed('a');
  now = 250;
  assert.ok(b.isCoolingDown('a'), 'second failure waits 200 ms');
  b.markFailed('a'); // third: capped at 300
  assert.ok(b.isCoolingDown('a'));
  now = 551;
  assert.ok(!b.isCoolingDown('a'));
  b.markHealthy('a');
  const seen = new Set([b.pick(list, () => 0)?.key, b.pick(list, () => 0)?.key]);
  assert.deepEqual(seen, new Set(['a', 'b']));
});

test('when every instance is cooling down, the one recovering first is tried; excluded ones never', () => {
  let now = 0;
  const b = new Balancer({ cooldownMs: 100, now: () => now });
  const list = [inst('a'), inst('b')];
  b.markFailed('a');
  now = 50;
  b.markFailed('b');
  assert.equal(b.pick(list, () => 0)?.key, 'a');
  assert.equal(b.pick(list, () => 0, new Set(['a']))?.key, 'b');
  assert.equal(
    b.pick(list, () => 0, new Set(['a', 'b'])),
    undefined,
  );
  assert.equal(
    b.pick([], () => 0),
    undefined,
  );
});

test('round-robin rotates regardless of load', () => {
  const b = new Balancer({ strategy: 'round-robin' });
  const list = [inst('a', 100), inst('b', 0)];
  const picks = Array.from({ length: 4 }, () => b.pick(list, () => 0)?.key);
  assert.deepEqual(picks.sort(), ['a', 'a', 'b', 'b']);
});

test('CELL_PEER parsing', () => {
  assert.deepEqual(parsePeer('10.0.0.5:7070'), { host: '10.0.0.5', port: 7070 });
  assert.deepEqual(parsePeer('db.lan:443'), { host: 'db.lan', port: 443 });
  for (const bad of ['10.0.0.5', ':7070', '10.0.0.5:0', '10.0.0.5:70000', 'x:y']) {
    assert.throws(
      () => parsePeer(bad),
      (e) => isCellError(e, 'E_INVALID_ARGUMENT'),
      bad,
    );
  }
});
