// A call's default timeout (the Synapse's timeoutMs) must run from when the call is made. The first
// call on a fresh connection after a quiet spell (no connection open: a harness ran a child process,
// then grew a Synapse), and a call made right after the event loop was blocked, used to get a
// deadline from a clock as old as the quiet spell, and failed with E_TIMEOUT at the first sweep,
// long before its timeout, while the cell answered it at once.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { Synapse } from '../../../src/index.js';
import { EchoService } from './fixtures/contract.js';
import { type RunningCell, removeDir, startCell, stopCell, tempSocketDir } from './helpers.js';

/** The Synapse's default call timeout in these tests; every quiet spell below lasts longer. */
const TIMEOUT_MS = 1000;
const QUIET_MS = TIMEOUT_MS + 300;

/** Runs a short-lived child with piped stdio and waits until it has exited and its pipes closed. */
function runChild(): Promise<void> {
  return new Promise((resolve, reject) => {
    const k = spawn(process.execPath, ['-e', 'console.log(1)'], { stdio: ['ignore', 'pipe', 'pipe'] });
    k.stdout.resume();
    k.stderr.resume();
    k.once('error', reject);
    k.once('close', () => resolve());
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Blocks this thread (no timer, no I/O runs) without spinning a core. */
function blockLoop(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe('wire: the default call timeout runs from the call, not from a stale clock', () => {
  let dir: string;
  let cell: RunningCell;

  before(async () => {
    dir = tempSocketDir();
    process.env.CELL_SOCKET_DIR = dir;
    process.env.CELL_HOME = dir;
    cell = await startCell(dir);
  });

  after(async () => {
    await stopCell(cell);
    removeDir(dir);
  });

  test('the first call on a fresh connection after a quiet spell with no connection open is answered', async () => {
    // Each round: no connection (so nothing reads the clock), a child process comes and goes, then a
    // fresh connection without shared memory and its first call at once, as a test harness does.
    for (let round = 0; round < 4; round++) {
      await Promise.all([runChild(), sleep(QUIET_MS)]);
      const c = await Synapse.grow(EchoService, { name: 'echo', shm: false, timeoutMs: TIMEOUT_MS, waitMs: 5000 });
      try {
        assert.deepEqual(await c.echo({ id: round, delay: 0 }), { id: round }, `round ${round}`);
      } finally {
        await c.$close();
      }
    }
  });

  test('a call made right after the event loop was blocked longer than the timeout is answered', async () => {
    const c = await Synapse.grow(EchoService, { name: 'echo', shm: false, timeoutMs: TIMEOUT_MS, waitMs: 5000 });
    try {
      assert.deepEqual(await c.echo({ id: 1, delay: 0 }), { id: 1 });
      for (let round = 0; round < 3; round++) {
        blockLoop(QUIET_MS);
        assert.deepEqual(await c.echo({ id: 10 + round, delay: 0 }), { id: 10 + round }, `round ${round}`);
      }
      // The many() path shares the deadline logic.
      blockLoop(QUIET_MS);
      assert.deepEqual(
        await c.echo.many([
          { id: 20, delay: 0 },
          { id: 21, delay: 0 },
        ]),
        [{ id: 20 }, { id: 21 }],
      );
    } finally {
      await c.$close();
    }
  });

  test('a call that gets no reply still times out after its timeout, not before', async () => {
    const c = await Synapse.grow(EchoService, { name: 'echo', shm: false, timeoutMs: TIMEOUT_MS, waitMs: 5000 });
    try {
      const t0 = performance.now();
      await assert.rejects(c.slow({ id: 60_000 }), (err: { code?: string }) => err.code === 'E_TIMEOUT');
      const waited = performance.now() - t0;
      assert.ok(waited >= TIMEOUT_MS, `timed out after ${waited.toFixed(0)} ms, before its ${TIMEOUT_MS} ms`);
    } finally {
      await c.$close();
    }
  });
});
