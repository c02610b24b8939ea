import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isCellError } from '../../../src/errors/index.js';
import { loadNative } from '../../../src/shm/native.js';
import { FRAME_UPGRADE_DECLINED, ShmClient, ShmServer } from '../../support/shm-link.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');

if (loadNative().addon === undefined) {
  throw new Error(`the shm integration tests need the native addon: ${loadNative().reason}`);
}

interface Proc {
  child: ChildProcess;
  next(): Promise<Record<string, unknown>>;
}

/** The first directory on the way to `path` that other users may not search, if any. */
function closedToOthers(path: string): string | undefined {
  for (let d = path; ; d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) return d;
    if (dirname(d) === d) return undefined;
  }
}

function home(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'cell-shm-it-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function start(
  t: TestContext,
  script: string,
  args: string[],
  env: Record<string, string | undefined>,
  uid?: number,
): Proc {
  const fullEnv: Record<string, string | undefined> = { ...process.env, ...env };
  for (const k of Object.keys(fullEnv)) if (fullEnv[k] === undefined) delete fullEnv[k];
  const child = spawn(process.execPath, [join(fixtures, script), ...args], {
    env: fullEnv as NodeJS.ProcessEnv,
    stdio: ['ignore', 'pipe', 'inherit'],
    ...(uid === undefined ? {} : { uid, gid: uid }),
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines: Record<string, unknown>[] = [];
  const waiters: Array<(l: Record<string, unknown>) => void> = [];
  let exited = false;
  const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  rl.on('line', (line) => {
    const o = JSON.parse(line) as Record<string, unknown>;
    const w = waiters.shift();
    if (w) w(o);
    else lines.push(o);
  });
  child.on('exit', (code, signal) => {
    exited = true;
    for (const w of waiters.splice(0)) w({ exited: true, code, signal });
  });
  return {
    child,
    next: () =>
      new Promise((resolve, reject) => {
        const l = lines.shift();
        if (l) return resolve(l);
        if (exited) return resolve({ exited: true });
        const timer = setTimeout(() => reject(new Error(`${script} ${args[0]} said nothing for 20 s`)), 20_000);
        waiters.push((o) => {
          clearTimeout(timer);
          resolve(o);
        });
      }),
  };
}

async function until(what: string, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function serverChild(
  t: TestContext,
  dir: string,
  capacity: number,
  env: Record<string, string | undefined> = {},
) {
  const path = join(dir, 'cell.sock');
  const proc = start(t, 'server.js', [path, String(capacity)], { CELL_HOME: dir, ...env });
  assert.equal((await proc.next()).ready, true);
  return { path, proc };
}

async function inProcessServer(t: TestContext, dir: string) {
  const prev = { home: process.env.CELL_HOME };
  process.env.CELL_HOME = dir;
  const server = new ShmServer((_m, p) => Buffer.from(p), { ringCapacity: 1 << 16 });
  const path = join(dir, 'cell.sock');
  await server.listen(path);
  t.after(async () => {
    await server.close();
    process.env.CELL_HOME = prev.home;
    if (prev.home === undefined) delete process.env.CELL_HOME;
  });
  return { server, path };
}

function withClientEnv<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  process.env.CELL_HOME = dir;
  return fn();
}

test('every size class round-trips across processes, through ring wrap-around and the socket for oversize', async (t) => {
  const dir = home(t);
  const capacity = 1 << 16;
  const { path } = await serverChild(t, dir, capacity);
  const client = await withClientEnv(dir, () => ShmClient.connect(path));
  t.after(() => client.close());
  assert.equal(client.transport, 'shm', client.shmDeclined);
  const max = (client.channel?.maxPayload ?? 0) as number;
  const sizes = [0, 1, 7, 15, 16, 17, 63, 64, 65, 1000, 4095, 4096, max - 1, max, max + 1, 100_000, 1 << 20];
  for (let round = 0; round < 12; round++) {
    for (const size of sizes) {
      const body = Buffer.alloc(size);
      for (let i = 0; i < size; i += 97) body[i] = (i + round + size) & 0xff;
      const reply = await client.call(1, body);
      assert.ok(reply.equals(body), `size ${size} round ${round}`);
    }
  }
  const ch = client.channel as NonNullable<typeof client.channel>;
  // 12 rounds of ~ (sum of in-ring sizes) bytes is several times the 64 KiB ring: it wrapped.
  assert.ok(ch.sent >= 12 * 14, `ring carried ${ch.sent} requests`);
  assert.ok(ch.received >= 12 * 14);
  await assert.rejects(
    client.call(3, Buffer.alloc(4)),
    (e) => isCellError(e, 'E_REMOTE') && /on purpose/.test(e.message),
  );
});

test('10 000 pipelined calls with random handler delays all get their own reply', async (t) => {
  const dir = home(t);
  const { path } = await serverChild(t, dir, 1 << 16);
  const client = await withClientEnv(dir, () => ShmClient.connect(path));
  t.after(() => client.close());
  assert.equal(client.transport, 'shm', client.shmDeclined);
  const calls: Promise<void>[] = [];
  for (let i = 0; i < 10_000; i++) {
    const body = Buffer.alloc(8 + (i % 300));
    body.writeUInt32LE(i, 0);
    body.writeUInt32LE(i ^ 0x5a5a5a5a, 4);
    calls.push(
      client.call(2, body).then((reply) => {
        assert.equal(reply.readUInt32LE(0), i);
        assert.ok(reply.equals(body));
      }),
    );
  }
  await Promise.all(calls);
  assert.equal(client.inFlight, 0);
  assert.ok((client.channel?.sent ?? 0) > 0, 'requests went through the ring');
});

for (const variant of ['huge-length', 'tail-jump', 'bad-kind', 'torn', 'random']) {
  test(`a hostile client writing garbage (${variant}) is disconnected with E_PROTOCOL; others keep being served`, async (t) => {
    const dir = home(t);
    const { server, path } = await inProcessServer(t, dir);
    const errors: Error[] = [];
    server.onError((e) => errors.push(e));
    const hostile = start(t, 'client.js', [`hostile-${variant}`, path], { CELL_HOME: dir });
    assert.deepEqual(await hostile.next(), { corrupted: `hostile-${variant}` });
    assert.deepEqual(await hostile.next(), { closed: true });
    await until('the error', () => errors.length > 0);
    assert.ok(isCellError(errors[0], 'E_PROTOCOL'), String(errors[0]));
    await until('the connection to go', () => server.connections.size === 0);
    assert.equal(server.ringsFreed, 1);
    const good = start(t, 'client.js', ['calls', path], { CELL_HOME: dir });
    assert.deepEqual(await good.next(), { transport: 'shm', ok: true });
  });
}

test('a client killed mid-message: its rings are freed and the server carries on', async (t) => {
  const dir = home(t);
  const { server, path } = await inProcessServer(t, dir);
  const victim = start(t, 'client.js', ['die-mid-message', path], { CELL_HOME: dir });
  assert.deepEqual(await victim.next(), { corrupted: 'die-mid-message' });
  assert.equal(server.status()[0]?.transport, 'shm');
  victim.child.kill('SIGKILL');
  await until('the dead peer to be noticed', () => server.connections.size === 0);
  assert.equal(server.ringsFreed, 1);
  assert.equal(server.errors.length, 0, 'an uncommitted record is invisible, not garbage');
  const good = start(t, 'client.js', ['calls', path], { CELL_HOME: dir });
  assert.deepEqual(await good.next(), { transport: 'shm', ok: true });
});

test('a server killed with calls in flight: the calls fail with E_CONNECTION_LOST, nothing hangs', async (t) => {
  const dir = home(t);
  const { path, proc } = await serverChild(t, dir, 1 << 16);
  const client = await withClientEnv(dir, () => ShmClient.connect(path));
  t.after(() => client.close());
  assert.equal(client.transport, 'shm');
  const calls = Array.from({ length: 50 }, () => client.call(2, Buffer.alloc(10)).catch((e: unknown) => e));
  proc.child.kill('SIGKILL');
  const results = await Promise.all(calls);
  assert.ok(results.some((r) => isCellError(r, 'E_CONNECTION_LOST')) || results.every((r) => Buffer.isBuffer(r)));
  await assert.rejects(client.call(1, Buffer.alloc(1)), (e) => isCellError(e, 'E_CONNECTION_LOST'));
});

test("a pickup with a proof not keyed by the offer's challenge is refused, and the offer is spent", async (t) => {
  const dir = home(t);
  const { server, path } = await inProcessServer(t, dir);
  const c = start(t, 'client.js', ['wrong-proof', path], { CELL_HOME: dir });
  const r = await c.next();
  assert.deepEqual(r.fds, 0);
  assert.match(String(r.answer), /^ERR wrong proof/);
  // The same ticket with the right proof afterwards: the ticket was used up by the failed attempt.
  assert.match(String(r.retry), /^ERR unknown or expired ticket/);
  assert.equal(server.status()[0]?.transport, 'socket');
});

test('a peer of another uid is refused by the server (SO_PEERCRED)', async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root to start a process as another user');
    return;
  }
  // The other uid must reach the test's directory (under tmpdir) and its fixtures (in the checkout).
  const closed = closedToOthers(tmpdir()) ?? closedToOthers(fixtures);
  if (closed !== undefined) {
    t.skip(`the other uid cannot reach ${closed} (mode ${(statSync(closed).mode & 0o777).toString(8)})`);
    return;
  }
  const dir = home(t);
  const { path } = await inProcessServer(t, dir);
  chmodSync(dir, 0o755);
  chmodSync(path, 0o777);
  const c = start(t, 'client.js', ['raw-upgrade', path], { CELL_HOME: dir }, 65534);
  const r = await c.next();
  assert.equal(r.type, FRAME_UPGRADE_DECLINED, JSON.stringify(r));
  assert.match(String(r.payload), /peer uid 65534 differs/);
});

test('addon missing on the client: socket fallback works and says so', async (t) => {
  const dir = home(t);
  const { path } = await inProcessServer(t, dir);
  const c = start(t, 'client.js', ['calls', path], { CELL_HOME: dir, CELL_NATIVE_ADDON: join(dir, 'missing.node') });
  const r = await c.next();
  assert.deepEqual({ transport: r.transport, ok: r.ok }, { transport: 'socket', ok: true });
  assert.match(String(r.reason), /native addon not built/);
});

test('CELL_DISABLE_SHM on the server only: the client is told promptly and stays on the socket', async (t) => {
  const dir = home(t);
  const { path } = await serverChild(t, dir, 1 << 16, { CELL_DISABLE_SHM: '1' });
  const started = Date.now();
  const c = start(t, 'client.js', ['calls', path], { CELL_HOME: dir });
  const r = await c.next();
  assert.deepEqual({ transport: r.transport, ok: r.ok }, { transport: 'socket', ok: true });
  assert.equal(r.reason, 'server: CELL_DISABLE_SHM is set');
  assert.ok(Date.now() - started < 15_000);
});

test('CELL_DISABLE_SHM on the client only: it never asks', async (t) => {
  const dir = home(t);
  const { path } = await serverChild(t, dir, 1 << 16);
  const c = start(t, 'client.js', ['calls', path], { CELL_HOME: dir, CELL_DISABLE_SHM: '1' });
  const r = await c.next();
  assert.deepEqual(r, { transport: 'socket', reason: 'client: CELL_DISABLE_SHM is set', ok: true });
});
