// A handler's ctx.signal fires when its caller gives up on the call (CANCEL) or the connection closes.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { isCellError } from '../../src/errors/index.js';
import { Membrane } from '../../src/index.js';
import { t } from '../../src/protein/index.js';
import { rpc, service } from '../../src/service/index.js';
import { Synapse } from '../../src/synapse/index.js';

const Svc = service('canceller', {
  /** Waits up to `ms` or until its signal fires; records which. */
  wait: rpc(t.u32, t.string),
  /** Returns at once, reading its signal first (a finished call must not stay watched). */
  quick: rpc(t.u32, t.u32),
});

/** The reasons each `wait` call ended with, by the `ms` it was given (distinct per call in a test). */
const outcomes = new Map<number, string>();

async function start(tc: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'cell-cancel-'));
  const membrane = new Membrane(Svc, {
    wait: (ms, ctx) =>
      new Promise<string>((resolve) => {
        const timer = setTimeout(() => {
          outcomes.set(ms, 'finished');
          resolve('finished');
        }, ms);
        ctx.signal.addEventListener('abort', () => {
          clearTimeout(timer);
          const reason = ctx.signal.reason as unknown;
          outcomes.set(ms, isCellError(reason) ? reason.code : String(reason));
          resolve('stopped');
        });
      }),
    quick: (n, ctx) => (ctx.signal.aborted ? 0 : n + 1),
  });
  const path = join(dir, 'c.sock');
  const server = createServer({ allowHalfOpen: true }, (s) => membrane.serveStream(s));
  await new Promise<void>((r) => server.listen(path, r));
  tc.after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const stream = connect({ path, allowHalfOpen: true });
  await new Promise((r) => stream.once('connect', r));
  const ex = await Synapse.attach(Svc, stream);
  return { ex, stream };
}

async function outcomeOf(ms: number): Promise<string> {
  const deadline = Date.now() + 5000;
  while (!outcomes.has(ms)) {
    if (Date.now() > deadline) throw new Error(`the handler given ${ms} never ended`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return outcomes.get(ms) as string;
}

test("a caller's timeout aborts the handler's signal with E_ABORTED; finished calls are untouched", async (tc) => {
  const { ex } = await start(tc);
  tc.after(() => ex.$close());
  const err = await ex.wait(3001, { timeoutMs: 50 }).catch((e: unknown) => e);
  assert.ok(isCellError(err, 'E_TIMEOUT'), String(err));
  assert.equal(await outcomeOf(3001), 'E_ABORTED');
  // A call that runs to the end is not disturbed, and a finished call's signal stays quiet.
  assert.equal(await ex.wait(20), 'finished');
  assert.equal(await outcomeOf(20), 'finished');
  assert.equal(await ex.quick(1), 2);
});

test("a caller's AbortSignal aborts the handler's signal, one call only", async (tc) => {
  const { ex } = await start(tc);
  tc.after(() => ex.$close());
  const ac = new AbortController();
  const cancelled = ex.wait(3002, { signal: ac.signal }).catch((e: unknown) => e);
  const bystander = ex.wait(150);
  setTimeout(() => ac.abort(), 20);
  assert.ok(isCellError(await cancelled, 'E_ABORTED'));
  assert.equal(await outcomeOf(3002), 'E_ABORTED');
  assert.equal(await bystander, 'finished', 'the other call on the connection ran to the end');
});

test('a many() run that times out cancels each of its calls still running', async (tc) => {
  const { ex } = await start(tc);
  tc.after(() => ex.$close());
  const err = await ex.wait.many([10, 3003, 3004], { timeoutMs: 100 }).catch((e: unknown) => e);
  assert.ok(isCellError(err, 'E_TIMEOUT'), String(err));
  assert.equal(await outcomeOf(10), 'finished');
  assert.equal(await outcomeOf(3003), 'E_ABORTED');
  assert.equal(await outcomeOf(3004), 'E_ABORTED');
});

test("the connection closing aborts every watching handler's signal with E_CONNECTION_LOST", async (tc) => {
  const { ex, stream } = await start(tc);
  const a = ex.wait(3005).catch((e: unknown) => e);
  const b = ex.wait(3006).catch((e: unknown) => e);
  await new Promise((r) => setTimeout(r, 30));
  stream.destroy();
  assert.ok(isCellError(await a, 'E_CONNECTION_LOST'));
  assert.ok(isCellError(await b, 'E_CONNECTION_LOST'));
  assert.equal(await outcomeOf(3005), 'E_CONNECTION_LOST');
  assert.equal(await outcomeOf(3006), 'E_CONNECTION_LOST');
});

test('over shared memory too: a vanished caller is noticed while its call runs, and close() never waits for abandoned calls', async (tc) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-cancel-shm-'));
  const before = process.env.CELL_SOCKET_DIR;
  process.env.CELL_SOCKET_DIR = dir;
  let stuck = 0;
  const membrane = await Membrane.bind(
    Svc,
    {
      // Ignores its signal and never settles once aborted: the caller must not wait for it.
      wait: (ms, ctx) =>
        new Promise<string>((resolve) => {
          const timer = setTimeout(() => resolve('finished'), ms);
          ctx.signal.addEventListener('abort', () => {
            clearTimeout(timer);
            stuck++;
            const reason = ctx.signal.reason as unknown;
            outcomes.set(ms, isCellError(reason) ? reason.code : String(reason));
          });
        }),
      quick: (n) => n + 1,
    },
    { drainTimeoutMs: 500 },
  );
  tc.after(async () => {
    await membrane.close();
    if (before === undefined) delete process.env.CELL_SOCKET_DIR;
    else process.env.CELL_SOCKET_DIR = before;
    rmSync(dir, { recursive: true, force: true });
  });

  const a = await Synapse.grow(Svc);
  assert.equal(a.$synapse.transport?.transport, 'shm');
  assert.ok(isCellError(await a.wait(3007, { timeoutMs: 30 }).catch((e: unknown) => e), 'E_TIMEOUT'));
  assert.equal(await outcomeOf(3007), 'E_ABORTED');
  const started = Date.now();
  await a.$close();
  assert.ok(Date.now() - started < 1000, `close took ${Date.now() - started} ms`);

  // A caller whose socket vanishes (as in a crash) while its call runs on the rings.
  const b = await Synapse.grow(Svc);
  assert.equal(b.$synapse.transport?.transport, 'shm');
  const lost = b.wait(3008).catch((e: unknown) => e);
  await new Promise((r) => setTimeout(r, 30));
  (b.$synapse as unknown as { conn: { stream: { destroy(): void } } }).conn.stream.destroy();
  assert.ok(isCellError(await lost, 'E_CONNECTION_LOST'));
  assert.equal(await outcomeOf(3008), 'E_CONNECTION_LOST');
  assert.equal(stuck, 2);
});
