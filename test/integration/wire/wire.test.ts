import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { type CellError, isCellError } from '../../../src/errors/index.js';
import { FrameType, HEADER_SIZE, writeHeader } from '../../../src/frame/index.js';
import { Synapse, type SynapseClient } from '../../../src/index.js';
import { EchoService, EchoServiceV2, Id } from './fixtures/contract.js';
import { RawClient, type RunningCell, removeDir, startCell, stopCell, tempSocketDir, waitFor } from './helpers.js';

type Echo = SynapseClient<typeof EchoService>;

async function rejectsWith(p: Promise<unknown>, code: string): Promise<CellError> {
  try {
    await p;
  } catch (err) {
    assert.ok(isCellError(err), `expected a CellError, got ${err}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, but the call succeeded`);
}

describe('wire: one shared echo cell', () => {
  let dir: string;
  let cell: RunningCell;
  let ex: Echo;
  const opened: Array<{ $close(): Promise<void> }> = [];
  const grow = async (opts = {}) => {
    const c = await Synapse.grow(EchoService, { name: 'echo', ...opts });
    opened.push(c);
    return c;
  };

  before(async () => {
    dir = tempSocketDir();
    process.env.CELL_SOCKET_DIR = dir;
    process.env.CELL_HOME = dir;
    cell = await startCell(dir);
    ex = await grow();
  });
  after(async () => {
    await Promise.all(opened.map((c) => c.$close().catch(() => {})));
    await stopCell(cell);
    removeDir(dir);
    delete process.env.CELL_SOCKET_DIR;
    delete process.env.CELL_HOME;
  });

  test('socket is 0600 in a 0700 directory; calls, errors and built-ins work', async () => {
    assert.equal(statSync(join(dir, 'echo', 'echo.sock')).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.deepEqual(await ex.echo({ id: 7, delay: 0 }), { id: 7 });
    assert.equal(await ex.sum(new Uint8Array([1, 2, 250])), 253);
    const e1 = await rejectsWith(ex.fail({ id: 1 }), 'E_INVALID_ARGUMENT');
    assert.match(e1.message, /id 1 is not allowed/);
    assert.equal(e1.fix, 'use another id');
    await rejectsWith(ex.fail({ id: 2 }), 'E_REMOTE');
    const e3 = await rejectsWith(ex.fail({ id: 3 }), 'E_REMOTE');
    assert.match(e3.message, /plain boom/);
    const genome = (await ex.$genome()) as { fingerprint: string; methods: unknown[] };
    assert.equal(genome.fingerprint, `0x${EchoService.fingerprint.toString(16).padStart(16, '0')}`);
    assert.equal(genome.methods.length, 5);
    const health = (await ex.$health()) as { status: string; pid: number };
    assert.equal(health.status, 'ok');
    assert.equal(health.pid, cell.pid);
    const metrics = (await ex.$metrics()) as { requests: number; errors: number };
    assert.ok(metrics.requests >= 5 && metrics.errors >= 3);
    // the cell survived every handler error
    assert.deepEqual(await ex.echo({ id: 8, delay: 0 }), { id: 8 });
  });

  test('64 clients x 10 000 pipelined calls with random delays: every reply matches its request', async () => {
    const clients = await Promise.all(Array.from({ length: 64 }, () => grow()));
    const perClient = 10_000;
    const window = 64;
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    let mismatches = 0;
    let done = 0;
    await Promise.all(
      clients.map(async (c, ci) => {
        let next = 0;
        const worker = async () => {
          while (next < perClient) {
            const id = ci * perClient + next++;
            // 2 % of calls wait 1-2 ms in the handler, so replies overtake each other.
            const delay = rand() < 0.02 ? 1 + Math.floor(rand() * 2) : 0;
            const r = await c.echo({ id, delay });
            if (r.id !== id) mismatches++;
            done++;
          }
        };
        await Promise.all(Array.from({ length: window }, worker));
      }),
    );
    assert.equal(mismatches, 0);
    assert.equal(done, 64 * perClient);
    await Promise.all(clients.map((c) => c.$close()));
  });

  test('an inspection connection (no contract) reaches only the built-in methods', async () => {
    const probe = await Synapse.inspect('echo');
    const genome = (await probe.genome()) as { service: string; methods: Array<{ name: string }> };
    assert.equal(genome.service, 'echo');
    assert.deepEqual(
      genome.methods.map((m) => m.name),
      EchoService.byId.map((m) => m.name),
    );
    assert.equal(((await probe.health()) as { status: string }).status, 'ok');
    await probe.close();
    const blind = await Synapse.grow(EchoService, { inspectOnly: true });
    opened.push(blind);
    await rejectsWith(blind.echo({ id: 1, delay: 0 }), 'E_SCHEMA_MISMATCH');
  });

  test('a contract mismatch fails with E_SCHEMA_MISMATCH naming both fingerprints', async () => {
    const err = await rejectsWith(Synapse.grow(EchoServiceV2, { name: 'echo' }), 'E_SCHEMA_MISMATCH');
    const fp = (x: bigint) => `0x${x.toString(16).padStart(16, '0')}`;
    assert.ok(err.message.includes(fp(EchoService.fingerprint)), err.message);
    assert.ok(err.message.includes(fp(EchoServiceV2.fingerprint)), err.message);
    assert.match(err.fix ?? '', /rebuild the caller/);
    assert.deepEqual(await ex.echo({ id: 9, delay: 0 }), { id: 9 });
  });

  test('malformed frames: a connection-level error, then close; the cell keeps serving', async () => {
    const path = join(dir, 'echo', 'echo.sock');
    // 1. not a HELLO
    const a = await RawClient.connect(path);
    a.request(0, 1, new Uint8Array(8));
    await a.until(() => a.closed);
    assert.equal(a.errorOf(0)?.code, 'E_PROTOCOL');
    // 2. a length field shorter than the header
    const b = await RawClient.connect(path);
    b.hello(EchoService.fingerprint);
    b.socket.write(Buffer.from([3, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]));
    await b.until(() => b.closed);
    assert.equal(b.errorOf(0)?.code, 'E_FRAME_MALFORMED');
    // 3. an unknown frame type
    const c = await RawClient.connect(path);
    c.hello(EchoService.fingerprint);
    c.socket.write(Buffer.from([8, 0, 0, 0, 0x66, 0, 0, 0, 1, 0, 0, 0]));
    await c.until(() => c.closed);
    assert.equal(c.errorOf(0)?.code, 'E_PROTOCOL');
    // 4. random garbage instead of a handshake
    const d = await RawClient.connect(path);
    d.socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await d.until(() => d.closed);
    assert.ok(d.errorOf(0) !== undefined);
    assert.deepEqual(await ex.echo({ id: 10, delay: 0 }), { id: 10 });
  });

  test('random bytes after a valid handshake never take the cell down (fuzz, real socket)', async () => {
    const path = join(dir, 'echo', 'echo.sock');
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 64 }), { minLength: 1, maxLength: 8 }),
        async (chunks) => {
          const raw = await RawClient.connect(path);
          raw.hello(EchoService.fingerprint);
          for (const c of chunks) raw.socket.write(c);
          // whatever the cell makes of it (frames, per-call errors, a connection error), it must answer the next call
          await new Promise((r) => setTimeout(r, 5));
          raw.socket.destroy();
        },
      ),
      { numRuns: 60, seed: 20261125 },
    );
    assert.deepEqual(await ex.echo({ id: 16, delay: 0 }), { id: 16 });
    const m = (await ex.$metrics()) as { protocolErrors: number };
    assert.ok(m.protocolErrors > 0, 'garbage was reported as protocol errors');
  });

  test('an oversize frame header is refused before allocation; the connection closes', async () => {
    const raw = await RawClient.connect(join(dir, 'echo', 'echo.sock'));
    raw.hello(EchoService.fingerprint);
    const header = Buffer.alloc(HEADER_SIZE);
    writeHeader(header, 0, 0, FrameType.REQUEST, 0, 1);
    header.writeUInt32LE(0xfffffff0, 0); // claims ~4 GiB
    raw.socket.write(header);
    await raw.until(() => raw.closed);
    assert.equal(raw.errorOf(0)?.code, 'E_FRAME_TOO_LARGE');
    const m = (await ex.$metrics()) as { rssBytes: number };
    assert.ok(m.rssBytes < 1024 * 1024 * 1024);
    assert.deepEqual(await ex.echo({ id: 11, delay: 0 }), { id: 11 });
  });

  test('unknown method ids and undecodable inputs get per-call errors; the connection stays usable', async () => {
    const raw = await RawClient.connect(join(dir, 'echo', 'echo.sock'));
    raw.hello(EchoService.fingerprint);
    raw.request(999, 5, new Uint8Array(0));
    raw.request(EchoService.methods.echo.id, 6, new Uint8Array(1)); // truncated input
    raw.request(EchoService.methods.echo.id, 7, EchoService.methods.echo.input.encode({ id: 77, delay: 0 }));
    await raw.until(() => raw.frames.some((f) => f.type === FrameType.REPLY && f.id === 7));
    assert.equal(raw.errorOf(5)?.code, 'E_UNKNOWN_METHOD');
    assert.equal(raw.errorOf(6)?.code, 'E_DECODE');
    const reply = raw.frames.find((f) => f.id === 7)!;
    assert.equal(Id.decode(reply.payload).id, 77);
    assert.equal(raw.closed, false);
    raw.socket.destroy();
  });

  test('a client that never reads is throttled without hurting others', async () => {
    const before = (await ex.$metrics()) as { replies: number };
    const raw = await RawClient.connect(join(dir, 'echo', 'echo.sock'));
    raw.socket.pause(); // never reads: replies pile up in the kernel buffers
    raw.hello(EchoService.fingerprint);
    const req = EchoService.methods.blob.input.encode(1024 * 1024);
    for (let i = 1; i <= 200; i++) raw.request(EchoService.methods.blob.id, i, req); // asks for 200 MiB of replies
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    for (let i = 0; i < 50; i++) assert.deepEqual(await ex.echo({ id: i, delay: 0 }), { id: i });
    assert.ok(Date.now() - t0 < 5000);
    const m = (await ex.$metrics()) as { rssBytes: number };
    assert.ok(m.rssBytes < 150 * 1024 * 1024, `cell RSS ${m.rssBytes} grew with the unread replies`);
    const blobReplies = (m as unknown as { replies: number }).replies - before.replies - 51;
    assert.ok(
      blobReplies > 0 && blobReplies < 100,
      `the cell kept producing replies nobody read (${blobReplies} of 200)`,
    );
    raw.socket.destroy();
  });

  test('a client that disconnects mid-request does not disturb the cell', async () => {
    const raw = await RawClient.connect(join(dir, 'echo', 'echo.sock'));
    raw.hello(EchoService.fingerprint);
    raw.request(EchoService.methods.slow.id, 1, EchoService.methods.slow.input.encode({ id: 300 }));
    await raw.until(() => raw.frames.some((f) => f.type === FrameType.WELCOME));
    raw.socket.destroy();
    await waitFor(async () => ((await ex.$health()) as { connections: number }).connections <= 2);
    assert.deepEqual(await ex.echo({ id: 12, delay: 0 }), { id: 12 });
  });

  test('timeouts and aborts fail the call only; the late reply is ignored', async () => {
    await rejectsWith(ex.slow({ id: 400 }, { timeoutMs: 50 }), 'E_TIMEOUT');
    const ac = new AbortController();
    const p = ex.slow({ id: 300 }, { signal: ac.signal });
    ac.abort();
    await rejectsWith(p, 'E_ABORTED');
    const pre = new AbortController();
    pre.abort();
    await rejectsWith(ex.echo({ id: 1, delay: 0 }, { signal: pre.signal }), 'E_ABORTED');
    await new Promise((r) => setTimeout(r, 450)); // let the late replies arrive
    assert.deepEqual(await ex.echo({ id: 13, delay: 0 }), { id: 13 });
  });

  test('a request larger than the cell accepts fails locally with E_FRAME_TOO_LARGE', async () => {
    await rejectsWith(ex.sum(new Uint8Array(17 * 1024 * 1024)), 'E_FRAME_TOO_LARGE');
    assert.deepEqual(await ex.echo({ id: 14, delay: 0 }), { id: 14 });
  });

  test('a second instance is refused and does not touch the live socket', async () => {
    const second = startCell(dir);
    await assert.rejects(second, /E_CELL_ALREADY_RUNNING|already running/);
    assert.ok(existsSync(join(dir, 'echo', 'echo.sock')));
    assert.deepEqual(await ex.echo({ id: 15, delay: 0 }), { id: 15 });
  });
});

describe('wire: lifecycle', () => {
  let dir: string;
  const cells: RunningCell[] = [];
  const clients: Array<{ $close(): Promise<void> }> = [];
  before(() => {
    dir = tempSocketDir();
    process.env.CELL_SOCKET_DIR = dir;
    process.env.CELL_HOME = dir;
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.$close().catch(() => {})));
    for (const c of cells) await stopCell(c);
    removeDir(dir);
    delete process.env.CELL_SOCKET_DIR;
    delete process.env.CELL_HOME;
  });
  const start = async (env: Record<string, string> = {}) => {
    const c = await startCell(dir, env);
    cells.push(c);
    return c;
  };

  test('E_CELL_NOT_FOUND when nothing appears; grow waits for a socket about to appear', async () => {
    const err = await rejectsWith(Synapse.grow(EchoService, { waitMs: 150 }), 'E_CELL_NOT_FOUND');
    assert.equal(err.cell, 'echo');
    const growing = Synapse.grow(EchoService, { waitMs: 10_000 });
    const cell = await start();
    const ex = await growing;
    clients.push(ex);
    assert.deepEqual(await ex.echo({ id: 1, delay: 0 }), { id: 1 });
    // a crash fails in-flight calls clearly, and the next call reconnects to the restarted cell
    const inflight = ex.slow({ id: 5000 }).then(
      () => null,
      (e: unknown) => e,
    );
    await new Promise((r) => setTimeout(r, 50));
    cell.child.kill('SIGKILL');
    await cell.exited;
    const lost = await inflight;
    assert.ok(isCellError(lost, 'E_CONNECTION_LOST'), String(lost));
    assert.match(lost.message, /1 call\(s\) in flight/);
    // the dead process left its socket and lock behind: the new instance must replace them
    assert.ok(existsSync(join(dir, 'echo', 'echo.sock')));
    await start();
    assert.deepEqual(await ex.echo({ id: 2, delay: 0 }), { id: 2 });
  });

  test('SIGTERM drains: GOAWAY, in-flight calls finish, the process exits 0', async () => {
    for (const c of cells) await stopCell(c);
    const cell = await start();
    const ex = await Synapse.grow(EchoService, { waitMs: 3000 });
    clients.push(ex);
    const inflight = [ex.slow({ id: 300 }), ex.slow({ id: 200 }), ex.echo({ id: 3, delay: 100 })];
    await new Promise((r) => setTimeout(r, 50));
    cell.child.kill('SIGTERM');
    assert.deepEqual(await Promise.all(inflight), [{ id: 300 }, { id: 200 }, { id: 3 }]);
    assert.equal(await cell.exited, 0);
    assert.equal(existsSync(join(dir, 'echo', 'echo.sock')), false);
    // after GOAWAY new calls go to a fresh connection: here, the next instance
    await start();
    assert.deepEqual(await ex.echo({ id: 4, delay: 0 }), { id: 4 });
  });

  test('in-flight limit: a Synapse keeps within it and every call runs; a client past it is shed with E_OVERLOADED', async () => {
    for (const c of cells) await stopCell(c);
    await start({ ECHO_MAX_IN_FLIGHT: '4', ECHO_MAX_CONNECTIONS: '2' });
    const a = await Synapse.grow(EchoService);
    clients.push(a);
    // 40 calls at once where the cell takes 4: the rest wait in the caller, unsent, and go out as answers come.
    const ids = Array.from({ length: 40 }, (_, i) => 20 + (i % 7));
    assert.deepEqual(
      await Promise.all(ids.map((id) => a.slow({ id }))),
      ids.map((id) => ({ id })),
    );
    const seen = (await a.$metrics()) as { shed: number; requests: number };
    assert.equal(seen.shed, 0);
    // A call that waits past its timeout fails unsent: it never reaches the cell.
    const full = [0, 1, 2, 3].map(() => a.slow({ id: 300 }));
    const late = await rejectsWith(a.slow({ id: 5 }, { timeoutMs: 50 }), 'E_TIMEOUT');
    assert.match(late.message, /was not sent within 50 ms: the cell allows 4 calls in flight/);
    assert.deepEqual(late.details, { requestId: late.details?.requestId, timeoutMs: 50, sent: false });
    assert.deepEqual(
      await Promise.all(full),
      full.map(() => ({ id: 300 })),
    );
    // Calls given up on after they were sent hold the cell until it answers them (echo ignores its
    // signal): the next four wait for those answers instead of being shed.
    const gone = new AbortController();
    const abandoned = [0, 1, 2, 3].map(() => a.echo({ id: 1, delay: 300 }, { signal: gone.signal }).catch(String));
    gone.abort();
    await Promise.all(abandoned);
    assert.deepEqual(
      await Promise.all([1, 2, 3, 4].map((id) => a.slow({ id }))),
      [1, 2, 3, 4].map((id) => ({ id })),
    );
    const after = (await a.$metrics()) as { shed: number; requests: number };
    assert.equal(after.shed, 0);
    // 4 + 4 abandoned + 4, and the metrics call; not the one that timed out unsent.
    assert.equal(after.requests - seen.requests, 13);
    // A client that ignores the limit the WELCOME names is shed: the calls past it do not run.
    const raw = await RawClient.connect(join(dir, 'echo', 'echo.sock'));
    raw.hello(EchoService.fingerprint);
    await raw.until(() => raw.frames.some((f) => f.type === FrameType.WELCOME));
    for (let i = 1; i <= 10; i++) raw.request(EchoService.methods.slow.id, i, Id.encode({ id: 200 }));
    await raw.until(() => raw.frames.filter((f) => f.type !== FrameType.WELCOME).length === 10);
    const shed = [...Array(10).keys()].filter((i) => raw.errorOf(i + 1)?.code === 'E_OVERLOADED');
    assert.equal(shed.length, 6);
    raw.socket.destroy();
    // The connection limit (2) is held by the Synapse and, until it closed, the raw client.
    const b = await Synapse.grow(EchoService);
    clients.push(b);
    await rejectsWith(Synapse.grow(EchoService, { waitMs: 100 }), 'E_OVERLOADED');
    assert.deepEqual(await b.echo({ id: 5, delay: 0 }), { id: 5 });
  });
});
