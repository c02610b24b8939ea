import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Membrane } from '../../src/index.js';
import { Histogram, parseServiceMetricsSnapshot } from '../../src/metrics/index.js';
import { protein, t } from '../../src/protein/index.js';
import { rpc, service } from '../../src/service/index.js';
import { Synapse } from '../../src/synapse/index.js';
import { openTap } from '../../src/tap/index.js';

const Order = protein('Order', { symbol: t.string, amount: t.u32, price: t.u64 });
const Market = service('market', {
  ping: rpc(t.u32, t.u32),
  place_order: rpc(Order, protein('Ack', { accepted: t.bool, id: t.u32 })),
  slow: rpc(t.u32, t.u32),
});

async function setup(t: import('node:test').TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'cell-mt-'));
  const socketPath = join(dir, 'market.sock');
  // The tap socket lives in the cell's private dir under CELL_HOME.
  const savedHome = process.env.CELL_HOME;
  process.env.CELL_HOME = dir;
  t.after(() => {
    if (savedHome === undefined) delete process.env.CELL_HOME;
    else process.env.CELL_HOME = savedHome;
  });
  let ids = 0;
  const membrane = await Membrane.bind(
    Market,
    {
      ping: (n) => n + 1,
      place_order: (o) => {
        if (o.amount === 0) throw new Error('amount must be positive');
        return { accepted: o.amount < 1000, id: ++ids };
      },
      slow: (ms) => new Promise((r) => setTimeout(() => r(ms), ms)),
    },
    { socketPath, handleSignals: false },
  );
  const client = await Synapse.grow(Market, {
    resolvers: [
      {
        name: 'test',
        order: 0,
        resolve: () => ({
          describe: socketPath,
          connect: async () => {
            const { connect } = await import('node:net');
            return await new Promise((res, rej) => {
              const s = connect({ path: socketPath, allowHalfOpen: true });
              s.once('error', rej);
              s.once('connect', () => res(s));
            });
          },
        }),
      },
    ],
  });
  t.after(async () => {
    await client.$close();
    await membrane.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, membrane, client };
}

test('the Membrane counts per method and ships its histograms through the metrics built-in', async (t) => {
  const { membrane, client } = await setup(t);
  await Promise.all(Array.from({ length: 50 }, (_, i) => client.ping(i)));
  for (let i = 0; i < 5; i++) await client.place_order({ symbol: 'ACME', amount: 10 * i + 1, price: 5n });
  await assert.rejects(client.place_order({ symbol: 'ACME', amount: 0, price: 5n }));
  await Promise.all([client.slow(30), client.slow(30)]);

  const snap = parseServiceMetricsSnapshot(await client.$metrics());
  const by = new Map(snap.methods.map((m) => [m.method, m]));
  assert.equal(by.get('ping')!.requests, 50);
  assert.equal(by.get('ping')!.errors, 0);
  assert.equal(by.get('ping')!.bytesIn, 200);
  assert.equal(by.get('place_order')!.requests, 6);
  assert.equal(by.get('place_order')!.errors, 1);
  assert.equal(by.get('slow')!.requests, 2);
  assert.equal(by.get('slow')!.inFlight, 0);
  const slow = Histogram.fromSnapshot(by.get('slow')!.latency);
  assert.equal(slow.count, 2);
  assert.ok(slow.percentile(0.5) >= 25e6, `slow p50 ${slow.percentile(0.5)} ns`);
  const ping = Histogram.fromSnapshot(by.get('ping')!.latency);
  assert.equal(ping.count, 50);
  assert.ok(ping.percentile(0.99) < 1e9);
  assert.equal(membrane.calls.byId[0].requests, 50);
});

test('cell tap: decoded requests and replies, filtered, only while attached', async (t) => {
  const { dir, membrane, client } = await setup(t);
  assert.ok(existsSync(join(dir, 'cells', 'market', 'tap.sock')));
  assert.equal(membrane.observer, null);
  const tap = await openTap(
    'market',
    'method == place_order && amount > 100',
    join(dir, 'cells', 'market', 'tap.sock'),
  );
  t.after(() => tap.close());
  for (let i = 0; i < 100 && membrane.observer === null; i++) await new Promise((r) => setTimeout(r, 10));
  assert.notEqual(membrane.observer, null);

  await client.ping(1);
  await client.place_order({ symbol: 'ACME', amount: 50, price: 1n });
  await client.place_order({ symbol: 'BOLT', amount: 500, price: 12_000_000_000n });
  await assert.rejects(client.place_order({ symbol: 'ACME', amount: 0, price: 1n }));
  await client.place_order({ symbol: 'CASK', amount: 5000, price: 7n });
  const records = tap.records();
  const a = (await records.next()).value;
  const b = (await records.next()).value;
  assert.ok(a && !('dropped' in a) && b && !('dropped' in b));
  assert.equal(a.method, 'place_order');
  assert.deepEqual(a.request, { symbol: 'BOLT', amount: 500, price: '12000000000' });
  assert.deepEqual(a.reply, { accepted: true, id: 2 });
  assert.ok(a.ok && a.latency_ns > 0 && a.bytesOut > 0);
  assert.deepEqual(
    [b.request && (b.request as { symbol: string }).symbol, b.reply],
    ['CASK', { accepted: false, id: 3 }],
  );

  tap.close();
  for (let i = 0; i < 100 && membrane.observer !== null; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(membrane.observer, null);
});
