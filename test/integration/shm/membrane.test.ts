import assert from 'node:assert/strict';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { isCellError } from '../../../src/errors/index.js';
import { Membrane } from '../../../src/index.js';
import { cellSocketPath } from '../../../src/paths/index.js';
import { loadNative } from '../../../src/shm/native.js';
import type { RingFrameSink } from '../../../src/shm/wire.js';
import { Synapse, unixConnector } from '../../../src/synapse/index.js';
import { ShmTest } from './fixtures/contract.js';
import { startCell } from './fixtures/start-cell.js';

if (loadNative().addon === undefined) throw new Error(`needs the native addon: ${loadNative().reason}`);

async function grow(t: TestContext) {
  const c = await Synapse.grow(ShmTest, { waitMs: 3000 });
  t.after(() => c.$close());
  return c;
}

function ringSink(c: { $synapse: unknown }): RingFrameSink {
  return (c.$synapse as unknown as { conn: { sink: RingFrameSink } }).conn.sink;
}

test('Synapse upgrades to shm; every size class round-trips, oversize frames take the socket; metrics say so', async (t) => {
  await startCell(t);
  const c = await grow(t);
  assert.deepEqual(c.$synapse.transport, { transport: 'shm', shmDeclined: undefined, identity: 'verified' });
  const sizes = [0, 1, 15, 16, 17, 1000, 4000, 16_000, 16_300, 16_400, 70_000, 1 << 20];
  for (let round = 0; round < 8; round++) {
    for (const size of sizes) {
      const body = new Uint8Array(size);
      for (let i = 0; i < size; i += 31) body[i] = (i + size + round) & 0xff;
      const reply = await c.echo(body);
      assert.deepEqual(Buffer.from(reply), Buffer.from(body), `size ${size}`);
    }
  }
  const sink = ringSink(c);
  assert.ok(sink.ringFrames > 0, 'requests went through the ring');
  assert.ok(sink.socketFrames > 0, 'oversize requests went over the socket');
  const probe = await c.probe(new Uint8Array(8));
  assert.deepEqual(probe, { borrowed: true, shared: true }, 'the handler read the request in place, in shared memory');
  const m = (await c.$metrics()) as {
    shm: { available: boolean; connections: number; transports: Array<{ transport: string }> };
  };
  assert.equal(m.shm.available, true);
  assert.equal(m.shm.connections, 1);
  assert.deepEqual(
    m.shm.transports.map((x) => x.transport),
    ['shm'],
  );
});

test('10 000 pipelined calls with random handler delays: slots freed out of order, every reply its own', async (t) => {
  await startCell(t);
  const c = await grow(t);
  assert.equal(c.$synapse.transport?.transport, 'shm');
  const calls: Promise<void>[] = [];
  for (let i = 0; i < 10_000; i++) {
    const body = new Uint8Array(i % 200).fill(i & 0xff);
    calls.push(
      c.delayed({ id: i, delay: i % 7 === 0 ? 0 : (i * 7919) % 5, body }).then((r) => {
        assert.equal(r.id, i);
        assert.deepEqual(Buffer.from(r.body), Buffer.from(body));
      }),
    );
  }
  await Promise.all(calls);
});

test('CELL_DISABLE_SHM on the cell only: the caller is told at once and stays on the socket', async (t) => {
  await startCell(t, { CELL_DISABLE_SHM: '1' });
  const started = Date.now();
  const c = await grow(t);
  assert.deepEqual(c.$synapse.transport, {
    transport: 'socket',
    shmDeclined: 'server: CELL_DISABLE_SHM is set',
    identity: 'verified',
  });
  assert.ok(Date.now() - started < 2000);
  assert.deepEqual(Buffer.from(await c.echo(new Uint8Array([1, 2, 3]))), Buffer.from([1, 2, 3]));
  const m = (await c.$metrics()) as { shm: { available: boolean; reason: string } };
  assert.deepEqual([m.shm.available, m.shm.reason], [false, 'CELL_DISABLE_SHM is set']);
});

test('a Membrane with shm: false declines the upgrade: the caller stays on the socket and says why', async (t) => {
  await startCell(t, { SHM_TEST_OFF: '1' });
  const c = await grow(t);
  assert.deepEqual(c.$synapse.transport, {
    transport: 'socket',
    shmDeclined: 'server: shared memory is turned off in the Membrane options',
    identity: 'verified',
  });
  assert.deepEqual(Buffer.from(await c.echo(new Uint8Array([4, 2]))), Buffer.from([4, 2]));
});

test('no native addon in the cell: the caller is told why and stays on the socket', async (t) => {
  await startCell(t, { CELL_NATIVE_ADDON: '/nonexistent/cell_native.node' });
  const c = await grow(t);
  assert.equal(c.$synapse.transport?.transport, 'socket');
  assert.match(String(c.$synapse.transport?.shmDeclined), /^server: native addon not built/);
  assert.deepEqual(Buffer.from(await c.echo(new Uint8Array([5]))), Buffer.from([5]));
});

test('rings offered by another process than the verified cell are refused: the caller stays on the socket', async (t) => {
  const cell = await startCell(t);
  // The main connection reaches the cell; the pickup path leads to another process (here: this one).
  const decoy = await Membrane.bind(
    ShmTest,
    {
      echo: (b) => b.slice(),
      delayed: (d) => ({ id: d.id, delay: d.delay, body: d.body.slice() }),
      probe: () => ({ borrowed: false, shared: false }),
      tally: (n) => n,
    },
    {
      socketPath: join(cell.dir, 'decoy.sock'),
      handleSignals: false,
      tap: false,
    },
  );
  t.after(() => decoy.close());
  const real = cellSocketPath('shmtest');
  const c = await Synapse.grow(ShmTest, {
    waitMs: 3000,
    resolvers: [
      {
        name: 'decoy',
        order: 1,
        resolve: () => ({
          describe: `unix:${join(cell.dir, 'decoy.sock')}`,
          connect: () => unixConnector(real).connect(),
        }),
      },
    ],
  });
  t.after(() => c.$close());
  assert.equal(c.$synapse.transport?.identity, 'verified');
  assert.equal(c.$synapse.transport?.transport, 'socket');
  assert.match(
    String(c.$synapse.transport?.shmDeclined),
    new RegExp(
      `answered by pid ${process.pid} uid \\d+, not by the process serving this connection \\(pid ${cell.child.pid} `,
    ),
  );
  assert.deepEqual(Buffer.from(await c.echo(new Uint8Array([9]))), Buffer.from([9]));
});

test('a caller writing garbage into its ring is cut off with E_PROTOCOL; the cell serves the next caller', async (t) => {
  await startCell(t);
  const bad = await Synapse.grow(ShmTest, { waitMs: 3000 });
  assert.equal(bad.$synapse.transport?.transport, 'shm');
  await bad.echo(new Uint8Array(4));
  const ring = ringSink(bad).channel.tx;
  // A record whose frame claims more bytes than the record holds.
  const off = ring.reserve(0x46, 0, 0, 16);
  ring.bytes.fill(0xff, off, off + 16);
  ring.commit();
  await assert.rejects(
    bad.echo(new Uint8Array(4)),
    (e) => isCellError(e) && /E_PROTOCOL|E_CONNECTION_LOST/.test(e.code),
  );
  await bad.$close().catch(() => {});
  const good = await grow(t);
  assert.equal(good.$synapse.transport?.transport, 'shm');
  const m = (await good.$metrics()) as { protocolErrors: number; shm: { connections: number } };
  assert.ok(m.protocolErrors >= 1);
  assert.equal(m.shm.connections, 1, 'the bad connection’s rings were freed');
});

test('a cell killed with calls in flight: calls fail with E_CONNECTION_LOST, nothing hangs', async (t) => {
  const cell = await startCell(t);
  const c = await grow(t);
  assert.equal(c.$synapse.transport?.transport, 'shm');
  const calls = Array.from({ length: 20 }, (_, i) =>
    c.delayed({ id: i, delay: 50, body: new Uint8Array(1) }).catch((e: unknown) => e),
  );
  cell.child.kill('SIGKILL');
  const results = await Promise.all(calls);
  assert.ok(
    results.every((r) => isCellError(r, 'E_CONNECTION_LOST')),
    String(results[0]),
  );
});
