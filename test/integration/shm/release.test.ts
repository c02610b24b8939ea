// What a shared-memory connection holds (two memfd rings, two eventfd doorbells, the mappings) goes
// back as soon as the connection closes, whichever side closes it and however; and an idle ring gives
// its pages back (docs/PROTOCOL.md § 3.6).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Synapse } from '../../../src/index.js';
import { loadNative } from '../../../src/shm/native.js';
import { waitFor } from '../wire/helpers.js';
import { ShmTest } from './fixtures/contract.js';
import { startCell } from './fixtures/start-cell.js';

if (loadNative().addon === undefined) throw new Error(`needs the native addon: ${loadNative().reason}`);

const HOLDER = fileURLToPath(new URL('./fixtures/holder.js', import.meta.url));
const MiB = 1024 * 1024;

interface ProcStats {
  /** Resident bytes, and the shared-memory part of them. */
  rss: number;
  shmem: number;
  fds: number;
  /** Mappings of ring memfds still in the address space. */
  ringMaps: number;
}

function stats(pid: number | 'self'): ProcStats {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024;
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
  return {
    rss: kib('VmRSS'),
    shmem: kib('RssShmem'),
    fds: readdirSync(`/proc/${pid}/fd`).length,
    ringMaps: maps.split('\n').filter((l) => l.includes('cell-ring')).length,
  };
}

async function openShm(n: number): Promise<Array<Awaited<ReturnType<typeof Synapse.grow<typeof ShmTest>>>>> {
  const out = [];
  for (let i = 0; i < n; i++) {
    const c = await Synapse.grow(ShmTest, { waitMs: 3000 });
    await c.echo(new Uint8Array(100));
    assert.equal(c.$synapse.transport?.transport, 'shm', String(c.$synapse.transport?.shmDeclined));
    out.push(c);
  }
  return out;
}

async function cellWith1MiBRings(t: TestContext) {
  return startCell(t, { SHM_TEST_RING: String(MiB) });
}

test('5 rounds of 200 shm connections opened and closed: the cell’s RSS, fds and mappings return to the baseline each time', async (t) => {
  const { child } = await cellWith1MiBRings(t);
  const pid = child.pid as number;
  // Warm up once, so lazily loaded code and first-use buffers are part of the baseline.
  for (const c of await openShm(5)) await c.$close();
  await waitFor(() => stats(pid).ringMaps === 0, 5000);
  const base = stats(pid);
  for (let round = 0; round < 5; round++) {
    const conns = await openShm(200);
    const open = stats(pid);
    assert.ok(open.fds >= base.fds + 200, `round ${round}: ${open.fds} fds with 200 connections open`);
    await Promise.all(conns.map((c) => c.$close()));
    // Each close reaches the cell asynchronously: wait (bounded) until it has seen all of them.
    await waitFor(() => stats(pid).fds <= base.fds + 2, 10_000);
    const now = stats(pid);
    const self = stats('self');
    assert.equal(now.ringMaps, 0, `round ${round}: the cell still maps ${now.ringMaps} rings of closed connections`);
    assert.equal(self.ringMaps, 0, `round ${round}: the caller still maps ${self.ringMaps} rings`);
    assert.ok(
      now.rss - base.rss < 40 * MiB,
      `round ${round}: cell RSS ${(now.rss / MiB).toFixed(1)} MiB vs ${(base.rss / MiB).toFixed(1)} MiB before`,
    );
  }
});

test('a caller process killed with 40 shm connections open: the cell frees their rings and fds at once', async (t) => {
  const { child } = await cellWith1MiBRings(t);
  const pid = child.pid as number;
  const base = stats(pid);
  const holder = spawn(process.execPath, [HOLDER, '40'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => holder.kill('SIGKILL'));
  const onShm = await new Promise<number>((resolve, reject) => {
    let out = '';
    holder.stdout.on('data', (d) => {
      out += d;
      const m = /ready (\d+)/.exec(out);
      if (m !== null) resolve(Number(m[1]));
    });
    holder.once('exit', (code) => reject(new Error(`holder exited with ${code}`)));
  });
  assert.equal(onShm, 40);
  assert.ok(stats(pid).ringMaps >= 80, `${stats(pid).ringMaps} ring mappings for 40 connections`);
  holder.kill('SIGKILL');
  await waitFor(() => stats(pid).fds <= base.fds + 2, 10_000);
  assert.equal(stats(pid).ringMaps, 0);
  assert.ok(stats(pid).shmem < 256 * 1024, `cell still holds ${stats(pid).shmem} bytes of shared memory`);
});

test('a cell killed under 20 shm connections: the caller unmaps the rings and closes its doorbells', async (t) => {
  const { child } = await cellWith1MiBRings(t);
  const before = stats('self');
  const conns = await openShm(20);
  for (const c of conns) await c.echo(new Uint8Array(200_000)); // touch pages on both sides
  assert.ok(stats('self').ringMaps >= before.ringMaps + 40);
  child.kill('SIGKILL');
  await waitFor(() => stats('self').ringMaps <= before.ringMaps, 10_000);
  assert.ok(stats('self').fds <= before.fds + 2, `${stats('self').fds} fds, ${before.fds} before`);
  assert.ok(stats('self').shmem < 256 * 1024);
  await Promise.all(conns.map((c) => c.$close().catch(() => {})));
});

test('a ring that carried megabytes gives its pages back once idle, on both sides, and keeps working', async (t) => {
  const { child } = await cellWith1MiBRings(t);
  const pid = child.pid as number;
  const c = (await openShm(1))[0]!;
  t.after(() => c.$close());
  const body = new Uint8Array(200_000);
  for (let i = 0; i < body.length; i += 97) body[i] = i & 0xff;
  // 12 × 200 kB each way: every page of both 1 MiB rings has been written.
  for (let k = 0; k < 12; k++) assert.deepEqual(Buffer.from(await c.echo(body)), Buffer.from(body));
  assert.ok(stats(pid).shmem > MiB, `cell maps ${stats(pid).shmem} bytes of ring`);
  // Quiet for a trim interval (2 s) or two: each producer punches its own ring's pages out.
  await waitFor(() => stats(pid).shmem < 64 * 1024 && stats('self').shmem < 64 * 1024, 10_000);
  for (let k = 0; k < 12; k++) assert.deepEqual(Buffer.from(await c.echo(body)), Buffer.from(body), `after trim ${k}`);
  assert.equal(c.$synapse.transport?.transport, 'shm');
});
