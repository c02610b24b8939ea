import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { test } from 'node:test';
import { Membrane } from '../../src/index.js';
import { protein, t } from '../../src/protein/index.js';
import { rpc, service } from '../../src/service/index.js';
import { addResolver, type Resolver, removeResolver, resolvers, Synapse } from '../../src/synapse/index.js';

const Msg = protein('Msg', { n: t.u32, text: t.string });
const Svc = service('greeter', {
  greet: rpc(Msg, t.string),
  wait: rpc(t.u32, t.string),
});

/** A Membrane served over plain net connections through serveStream (no Unix-socket binding of its own). */
function host(label: string): { membrane: Membrane<typeof Svc>; server: Server; path: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'cell-syn-'));
  const path = join(dir, `${label}.sock`);
  const membrane = new Membrane(Svc, {
    greet: (m) => `${label}: hello ${m.text} #${m.n}`,
    wait: (ms) => new Promise((r) => setTimeout(() => r(`${label} waited ${ms}`), ms)),
  });
  const server = createServer({ allowHalfOpen: true }, (s: Socket) => membrane.serveStream(s));
  server.listen(path);
  return { membrane, server, path, dir };
}

function resolverFor(getPath: () => string): Resolver {
  return {
    name: 'test',
    order: 0,
    resolve: () => ({
      describe: getPath(),
      connect: () =>
        new Promise<Duplex>((res, rej) => {
          const s = connect({ path: getPath(), allowHalfOpen: true });
          s.once('error', rej);
          s.once('connect', () => res(s));
        }),
    }),
  };
}

test('resolvers are asked in order; registration replaces by name', () => {
  const before = resolvers().map((r) => r.name);
  // Synapse itself knows only the local socket; the package entry (src/runtime.ts) adds the Root's
  // spawn-on-demand (200) and the mesh lookups (300: Axon, NATS). They stay inert unless a Root answers
  // on the umbilical socket / CELL_LAN=1, CELL_PEER or CELL_NATS is set.
  assert.deepEqual(before, ['local socket', 'root spawn', 'axon', 'nats']);
  addResolver({ name: 'remote', order: 400, resolve: () => null });
  addResolver({ name: 'root', order: 200, resolve: () => null });
  assert.deepEqual(
    resolvers().map((r) => r.name),
    ['local socket', 'root spawn', 'root', 'axon', 'nats', 'remote'],
  );
  addResolver({ name: 'root', order: 50, resolve: () => null });
  assert.deepEqual(
    resolvers().map((r) => r.name),
    ['root', 'local socket', 'root spawn', 'axon', 'nats', 'remote'],
  );
  removeResolver('root');
  removeResolver('remote');
  assert.deepEqual(
    resolvers().map((r) => r.name),
    before,
  );
});

test('any duplex carrier works, and GOAWAY moves new calls to a fresh connection while old replies drain', async (t) => {
  const a = host('a');
  const b = host('b');
  t.after(() => {
    a.server.close();
    b.server.close();
    rmSync(a.dir, { recursive: true, force: true });
    rmSync(b.dir, { recursive: true, force: true });
  });
  let target = a.path;
  const asked: string[] = [];
  const ex = await Synapse.grow(Svc, {
    resolvers: [
      {
        name: 'nothing',
        order: 0,
        resolve: () => {
          asked.push('nothing');
          return null;
        },
      },
      { ...resolverFor(() => target), order: 1 },
    ],
  });
  t.after(() => ex.$close());
  assert.deepEqual(asked, ['nothing']);
  assert.equal(await ex.greet({ n: 1, text: 'ü' }), 'a: hello ü #1');
  const draining = ex.wait(200);
  await new Promise((r) => setTimeout(r, 20));
  target = b.path;
  const closed = a.membrane.close();
  // wait until the GOAWAY has been seen: the next call must land on b
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(await ex.greet({ n: 2, text: 'x' }), 'b: hello x #2');
  assert.equal(await draining, 'a waited 200');
  await closed;
  assert.equal(a.membrane.connectionCount(), 0);
});

test('$close waits for in-flight calls, then refuses new ones', async (t) => {
  const a = host('c');
  t.after(() => {
    a.server.close();
    rmSync(a.dir, { recursive: true, force: true });
  });
  const ex = await Synapse.grow(Svc, { resolvers: [resolverFor(() => a.path)] });
  const p = ex.wait(100);
  await ex.$close();
  assert.equal(await p, 'c waited 100');
  await assert.rejects(ex.greet({ n: 1, text: 'late' }), /E_CLOSED|closed/);
});

test("a new connection's first call takes its deadline from the current clock, not from sweeps that stopped", async (t) => {
  const h = host('clock');
  t.after(() => {
    h.server.close();
    rmSync(h.dir, { recursive: true, force: true });
  });
  const first = await Synapse.grow(Svc, { resolvers: [resolverFor(() => h.path)], timeoutMs: 400, shm: false });
  assert.equal(await first.wait(1), 'clock waited 1');
  await first.$close();
  // No connection (and no sweep) for longer than the timeout.
  await new Promise((r) => setTimeout(r, 600));
  const second = await Synapse.grow(Svc, { resolvers: [resolverFor(() => h.path)], timeoutMs: 400, shm: false });
  t.after(() => second.$close());
  assert.equal(await second.wait(150), 'clock waited 150');
});

test('one sweep timer serves every connection of the process, and each still times out its calls', async (t) => {
  const h = host('sweep');
  t.after(() => {
    h.server.close();
    rmSync(h.dir, { recursive: true, force: true });
  });
  // Sweep intervals (every 50 ms) started while the connections open.
  const real = globalThis.setInterval;
  let intervals = 0;
  globalThis.setInterval = ((...args: Parameters<typeof real>) => {
    if (args[1] === 50) intervals++;
    return real(...args);
  }) as typeof real;
  const grow = () => Synapse.grow(Svc, { resolvers: [resolverFor(() => h.path)], timeoutMs: 200, shm: false });
  const clients: Array<Awaited<ReturnType<typeof grow>>> = [];
  try {
    for (let i = 0; i < 8; i++) clients.push(await grow());
  } finally {
    globalThis.setInterval = real;
  }
  t.after(() => Promise.all(clients.map((c) => c.$close())));
  assert.ok(intervals <= 1, `${intervals} interval timers for 8 connections`);
  const outcomes = await Promise.allSettled(clients.map((c) => c.wait(2000)));
  for (const o of outcomes) {
    assert.equal(o.status, 'rejected');
    assert.match(String((o as PromiseRejectedResult).reason), /E_TIMEOUT|no reply within/);
  }
});
