// Connection limits and what happens to connections the cell will not serve (docs/PROTOCOL.md § 2.9):
// refused sockets are destroyed after their ERROR and never hold up a shutdown; idle connections are
// timed out; one uid holds only its share; inspection callers always find a reserved slot.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { isCellError } from '../../../src/errors/index.js';
import { FrameType } from '../../../src/frame/index.js';
import { type CellInspector, Synapse } from '../../../src/index.js';
import { cellSocketPath } from '../../../src/paths/index.js';
import { PICKUP_MAGIC } from '../../../src/shm/upgrade.js';
import { EchoService } from './fixtures/contract.js';
import { RawClient, type RunningCell, removeDir, startCell, stopCell, tempSocketDir, waitFor } from './helpers.js';

const fdsOf = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

async function overloaded(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => assert.fail('expected E_OVERLOADED'),
    (e: unknown) => e,
  );
  assert.ok(isCellError(err, 'E_OVERLOADED'), String(err));
  return err.message;
}

describe('wire: connection limits', () => {
  let dir: string;
  let cell: RunningCell | undefined;
  const closers: Array<{ $close?(): Promise<void>; close?(): Promise<void> }> = [];
  const raws: Array<{ socket: Socket }> = [];
  beforeEach(() => {
    dir = tempSocketDir();
    process.env.CELL_SOCKET_DIR = dir;
  });
  afterEach(async () => {
    for (const r of raws.splice(0)) r.socket.destroy();
    await Promise.all(closers.splice(0).map((c) => (c.$close ?? c.close)?.call(c).catch(() => {})));
    await stopCell(cell);
    cell = undefined;
    removeDir(dir);
    delete process.env.CELL_SOCKET_DIR;
  });
  const grow = async (options = {}) => {
    const c = await Synapse.grow(EchoService, { waitMs: 3000, ...options });
    closers.push(c);
    return c;
  };
  /** A plain socket (a pickup answer is not a frame) that keeps its side open when the cell ends its own. */
  const plain = async () => {
    const socket = connect({ path: cellSocketPath('echo'), allowHalfOpen: true });
    await once(socket, 'connect');
    const state = { socket, closed: false, received: '' };
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => {
      state.received += d.toString('latin1');
    });
    socket.on('close', () => {
      state.closed = true;
    });
    raws.push(state);
    return state;
  };
  const raw = async () => {
    const r = await RawClient.connect(cellSocketPath('echo'));
    raws.push(r);
    return r;
  };

  test('200 refused connections that keep their sockets open cost the cell no fd; SIGTERM still exits at once', async () => {
    cell = await startCell(dir, { ECHO_MAX_CONNECTIONS: '2' });
    const a = await grow();
    const b = await grow();
    assert.deepEqual(await a.echo({ id: 1, delay: 0 }), { id: 1 });
    const base = fdsOf(cell.pid);
    // Each sends HELLO, is refused, and then neither reads nor closes.
    const refused: RawClient[] = [];
    for (let i = 0; i < 200; i++) {
      const r = await raw();
      r.hello(EchoService.fingerprint);
      refused.push(r);
    }
    await refused[199]!.until(() => refused[199]!.errorOf(0) !== undefined);
    assert.equal(refused[0]!.errorOf(0)?.code, 'E_OVERLOADED');
    assert.ok(
      refused.every((r) => r.frames.every((f) => f.type !== FrameType.WELCOME)),
      'ERROR instead of WELCOME',
    );
    // The cell destroys each refused socket about a second after its ERROR.
    await waitFor(() => refused.every((r) => r.closed), 5000);
    await waitFor(() => fdsOf(cell!.pid) <= base, 3000);
    // The limit is not consumed by them: the two callers still work, a third is still refused.
    assert.deepEqual(await b.echo({ id: 2, delay: 0 }), { id: 2 });
    await overloaded(Synapse.grow(EchoService, { waitMs: 100 }));
    // Refused sockets still lingering, a half-open pickup and idle callers: SIGTERM must not wait for any.
    for (let i = 0; i < 50; i++) (await raw()).hello(EchoService.fingerprint);
    const pickup = await plain();
    pickup.socket.write(Buffer.concat([PICKUP_MAGIC, Buffer.alloc(48)]));
    // Waiting for any of them would cost the drain timeout (5 s) or, for the sockets, forever: the
    // two callers leave at GOAWAY, so the cell has nothing to wait for.
    cell.child.kill('SIGTERM');
    const code = await Promise.race([cell.exited, new Promise((r) => setTimeout(() => r('still running'), 4500))]);
    assert.equal(code, 0, `the cell did not exit within 4.5 s of SIGTERM (${code})`);
  });

  test('a refused shared-memory pickup is destroyed after its answer even if the caller keeps it open', async () => {
    cell = await startCell(dir);
    const base = fdsOf(cell.pid);
    const pickups: Array<{ received: string }> = [];
    for (let i = 0; i < 50; i++) {
      const r = await plain();
      r.socket.write(Buffer.concat([PICKUP_MAGIC, Buffer.alloc(48, i)])); // an unknown ticket
      pickups.push(r);
    }
    await waitFor(() => pickups.every((r) => r.received.startsWith('ERR unknown or expired ticket')), 3000);
    // The callers never close their side: only the cell can let go of the sockets.
    await waitFor(() => fdsOf(cell!.pid) <= base, 6000);
  });

  test('a shared-memory pickup turned away at the connection cap: the caller is told why, decoded', async () => {
    cell = await startCell(dir, { ECHO_MAX_CONNECTIONS: '1', ECHO_RESERVED: '0', ECHO_HELLO_TIMEOUT_MS: '60000' });
    const base = fdsOf(cell.pid);
    // 64 connections that have not said HELLO yet fill the handshake headroom (cap: 1 + 0 + 64 sockets)...
    for (let i = 0; i < 64; i++) await raw();
    await waitFor(() => fdsOf(cell!.pid) >= base + 64, 3000);
    // ...so the caller's own connection is the last one the cell takes, and its pickup is refused.
    const ex = await grow();
    assert.equal(ex.$synapse.transport?.transport, 'socket');
    assert.equal(
      ex.$synapse.transport?.shmDeclined,
      'client: server refused the ring pickup: E_OVERLOADED: the cell already holds 65 connections.',
    );
    assert.deepEqual(await ex.echo({ id: 3, delay: 0 }), { id: 3 });
  });

  test('an idle connection gets GOAWAY after the idle timeout and is closed if it ignores it', async () => {
    cell = await startCell(dir, { ECHO_IDLE_TIMEOUT_MS: '400' });
    const r = await raw();
    r.hello(EchoService.fingerprint);
    r.request(EchoService.methods.echo.id, 1, EchoService.methods.echo.input.encode({ id: 1, delay: 0 }));
    await r.until(() => r.frames.some((f) => f.type === FrameType.REPLY));
    const quietFrom = Date.now();
    await r.until(() => r.frames.some((f) => f.type === FrameType.GOAWAY), 5000);
    assert.ok(Date.now() - quietFrom >= 390, `GOAWAY after ${Date.now() - quietFrom} ms of quiet`);
    await r.until(() => r.closed, 5000);
    assert.equal(r.errorOf(0), undefined, 'an idle close is not an error');
  });

  test('a call in flight keeps a connection alive; an idle Synapse moves to a fresh connection transparently', async () => {
    cell = await startCell(dir, { ECHO_IDLE_TIMEOUT_MS: '300' });
    const ex = await grow({ shm: false });
    // 1.2 s in flight, four idle timeouts: the connection stays.
    assert.deepEqual(await ex.slow({ id: 1200 }), { id: 1200 });
    const first = await ex.$synapse.connection();
    // Then it idles past the timeout: GOAWAY, and the Synapse leaves that connection.
    await waitFor(() => !first.isOpen, 5000);
    assert.deepEqual(await ex.echo({ id: 7, delay: 0 }), { id: 7 });
    const second = await ex.$synapse.connection();
    assert.notEqual(second, first);
  });

  test('inspection callers get in through the reserved slots when the cell is full', async () => {
    cell = await startCell(dir, { ECHO_MAX_CONNECTIONS: '2', ECHO_RESERVED: '3' });
    await grow();
    await grow();
    await overloaded(Synapse.grow(EchoService, { waitMs: 100 }));
    const probes: CellInspector[] = [];
    for (let i = 0; i < 3; i++) {
      const p = await Synapse.inspect('echo');
      closers.push(p);
      probes.push(p);
      const health = (await p.health()) as { status: string; connections: number };
      assert.equal(health.status, 'ok');
    }
    // The reserved slots are few: a fourth inspection caller is refused too.
    await overloaded(Synapse.inspect('echo', { waitMs: 100 }));
    // Freeing an ordinary slot lets an ordinary caller in again.
    await (closers[0] as { $close(): Promise<void> }).$close();
    await waitFor(async () => ((await probes[0]!.health()) as { connections: number }).connections <= 4, 3000);
    await grow();
  });

  test('one uid holds at most its share of the connections; inspection still gets in', async () => {
    cell = await startCell(dir, { ECHO_MAX_CONNECTIONS: '4', ECHO_MAX_PER_UID: '2' });
    await grow();
    await grow();
    const message = await overloaded(Synapse.grow(EchoService, { waitMs: 100 }));
    assert.match(message, new RegExp(`uid ${process.getuid?.()} already holds 2 of the cell's 4 connections`));
    const probe = await Synapse.inspect('echo');
    closers.push(probe);
    assert.equal(((await probe.health()) as { status: string }).status, 'ok');
  });

  test('connections that never send HELLO are cut after the HELLO timeout', async () => {
    cell = await startCell(dir, { ECHO_HELLO_TIMEOUT_MS: '300' });
    const silent = await raw();
    await silent.until(() => silent.closed, 3000);
    assert.equal(silent.errorOf(0)?.code, 'E_TIMEOUT');
  });
});
