import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isCellError } from '../../../src/errors/index.js';
import { Synapse } from '../../../src/index.js';
import {
  type ChildGeneration,
  childProcessSwapSteps,
  generationSocketPath,
  type SwapResult,
  stopGeneration,
  swapGenerations,
} from '../../../src/swap/index.js';
import { VersionedService } from './fixtures/versioned-contract.js';

const CELL = fileURLToPath(new URL('./fixtures/versioned-cell.js', import.meta.url));
const CLIENTS = 8;
const SWAPS = 10;

test('8 clients at full speed (4 on shared memory, 4 on the socket) while the cell is hot-swapped 10 times: nothing fails, is lost or doubled', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-swapload-'));
  const reports = join(dir, 'reports');
  mkdirSync(reports);
  const cellDir = join(dir, 'counter');
  const publicPath = join(cellDir, 'counter.sock');
  const children: ChildGeneration[] = [];
  let current: ChildGeneration | undefined;
  const stderr: string[] = [];
  let failNext = false;

  const steps = childProcessSwapSteps({
    cell: 'counter',
    spawn: (generation, bindPath) => {
      const child = spawn(process.execPath, [CELL], {
        env: {
          ...process.env,
          CELL_SOCKET_DIR: dir,
          CELL_BIND_PATH: bindPath,
          CELL_VERSION: `v${generation}`,
          CELL_REPORT_DIR: reports,
          CELL_FAIL_START: failNext ? '1' : '0',
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      child.stderr!.on('data', (d) => stderr.push(`[v${generation}] ${d}`));
      return child;
    },
  });
  const start = steps.start;
  steps.start = async (g, p) => {
    const c = await start(g, p);
    children.push(c);
    return c;
  };
  let stop = false;
  let clients: Awaited<ReturnType<typeof Synapse.grow<typeof VersionedService>>>[] = [];
  t.after(async () => {
    stop = true;
    await Promise.all(clients.map((c) => c.$close().catch(() => {})));
    for (const c of children) await stopGeneration(c, 2000);
    rmSync(dir, { recursive: true, force: true });
  });

  current = (await swapGenerations({ cell: 'counter', publicPath, current, nextGeneration: 1, steps })).next;

  // Clients: each one sequential, as fast as it can; replies must match the call and never go back a version.
  const failures: string[] = [];
  const tally = new Map<string, number>();
  let calls = 0;
  const resolver = {
    name: 'public',
    order: 0,
    resolve: () => ({
      describe: publicPath,
      connect: () =>
        new Promise<Duplex>((resolve, reject) => {
          const s = connect({ path: publicPath, allowHalfOpen: true });
          s.once('error', reject);
          s.once('connect', () => resolve(s));
        }),
    }),
  };
  // Even-numbered clients take the shared-memory upgrade, odd ones stay on the socket.
  const wantsShm = (id: number) => id % 2 === 0;
  clients = await Promise.all(
    Array.from({ length: CLIENTS }, (_, id) =>
      Synapse.grow(VersionedService, { name: 'counter', resolvers: [resolver], waitMs: 5000, shm: wantsShm(id) }),
    ),
  );
  for (const [id, c] of clients.entries()) {
    assert.equal(
      c.$synapse.transport?.transport,
      wantsShm(id) ? 'shm' : 'socket',
      `client ${id}: ${JSON.stringify(c.$synapse.transport)}`,
    );
  }
  // Which carrier each reply came over, per version: every version must have answered on both.
  const carriers = new Map<string, Set<string>>();
  const loops = clients.map(async (client, id) => {
    let lastVersion = 0;
    for (let seq = 0; !stop; seq++) {
      // The carrier of the connection this call goes out on (null while reconnecting after GOAWAY).
      const carrier = client.$synapse.transport?.transport;
      try {
        const r = await client.call({ client: id, seq });
        if (r.client !== id || r.seq !== seq)
          failures.push(`client ${id} seq ${seq} got the reply for ${r.client}/${r.seq}`);
        const v = Number(r.version.slice(1));
        if (v < lastVersion) failures.push(`client ${id} went back from v${lastVersion} to ${r.version}`);
        lastVersion = v;
        tally.set(r.version, (tally.get(r.version) ?? 0) + 1);
        if (!wantsShm(id) && carrier === 'shm') failures.push(`client ${id} (socket only) is on shm`);
        if (carrier !== undefined) {
          const seen = carriers.get(r.version) ?? new Set<string>();
          seen.add(carrier);
          carriers.set(r.version, seen);
        }
        calls++;
      } catch (err) {
        failures.push(`client ${id} seq ${seq}: ${isCellError(err) ? err.code : ''} ${(err as Error).message}`);
      }
    }
  });

  const waitForCalls = async (n: number) => {
    const target = calls + n;
    const deadline = Date.now() + 20_000;
    while (calls < target && Date.now() < deadline && failures.length === 0) await new Promise((r) => setTimeout(r, 5));
    assert.ok(calls >= target, `clients made no progress (${calls} < ${target}); failures: ${failures.slice(0, 3)}`);
  };

  let generation = 1;
  const swapMs: number[] = [];
  for (let i = 0; i < SWAPS; i++) {
    await waitForCalls(300);
    if (i === 4) {
      // A version that cannot start is rolled back; the clients never notice.
      failNext = true;
      await assert.rejects(
        swapGenerations({
          cell: 'counter',
          publicPath,
          current,
          nextGeneration: ++generation,
          steps,
          readyTimeoutMs: 5000,
        }),
        (err: unknown) =>
          isCellError(err, 'E_SWAP_FAILED') &&
          /keeps serving/.test((err as Error).message) &&
          /exited before it became healthy/.test((err as Error).message),
      );
      failNext = false;
      await waitForCalls(300);
    }
    const before: ChildGeneration = current!;
    const r: SwapResult<ChildGeneration> = await swapGenerations({
      cell: 'counter',
      publicPath,
      current: before,
      nextGeneration: ++generation,
      steps,
    });
    assert.equal(r.previous?.pid, before.pid);
    swapMs.push(r.durationMs);
    assert.equal(r.drainError, undefined);
    const old = await before.exited;
    assert.equal(old.code, 0, `generation ${before.generation} exited with ${JSON.stringify(old)}`);
    current = r.next;
  }
  await waitForCalls(300);
  stop = true;
  await Promise.all(loops);
  await Promise.all(clients.map((c) => c.$close()));
  await stopGeneration(current!, 10_000);

  assert.deepEqual(failures, [], `failures (stderr: ${stderr.join('')})`);
  // Server side: every generation reports what it answered; the sums per version must match exactly.
  const served = new Map<string, number>();
  for (const f of readdirSync(reports)) {
    const r = JSON.parse(readFileSync(join(reports, f), 'utf8')) as { version: string; served: number };
    served.set(r.version, (served.get(r.version) ?? 0) + r.served);
  }
  const byVersion = (m: Map<string, number>) => [...m.entries()].filter(([, n]) => n > 0).sort();
  assert.deepEqual(byVersion(served), byVersion(tally));
  assert.equal(
    [...served.values()].reduce((a, b) => a + b, 0),
    calls,
  );
  // Ten successful swaps (generation 6 was the rolled-back one), each one answering calls.
  assert.equal(tally.size, SWAPS + 1, `versions that answered: ${[...tally.keys()]}`);
  assert.ok(!tally.has('v6'));
  // Shared-memory connections got GOAWAY and moved on too: every version answered over both carriers.
  for (const [version, seen] of carriers) {
    assert.ok(seen.has('shm') && seen.has('socket'), `${version} answered over ${[...seen]}`);
  }
  // Every generation removed its own socket name on exit (the last one its public name too); the
  // rolled-back one never kept one.
  assert.ok(!existsSync(publicPath));
  assert.deepEqual(
    (existsSync(cellDir) ? readdirSync(cellDir) : []).filter((f) => /^counter\.\d+\.sock/.test(f)),
    [],
  );
  assert.equal(generationSocketPath(publicPath, 2), join(cellDir, 'counter.2.sock'));
  t.diagnostic(
    `${calls} calls over ${tally.size} versions: ${byVersion(tally)
      .map(([v, n]) => `${v}=${n}`)
      .join(' ')}; swap ms (start → old drained): ${swapMs.map((ms) => ms.toFixed(0)).join(' ')}`,
  );
});
