import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { encodeFrame, FrameDecoder, FrameType, HEADER_SIZE, writeHeader } from '../../src/frame/index.js';
import type { FrameSink } from '../../src/frame/writer.js';
import { Membrane } from '../../src/index.js';
import type { ServerSession } from '../../src/membrane/index.js';
import { protein, t } from '../../src/protein/index.js';
import { rpc, service } from '../../src/service/index.js';
import { Synapse } from '../../src/synapse/index.js';

const Num = protein('Num', { n: t.u32 });
const Svc = service('adder', { inc: rpc(Num, t.u32), later: rpc(Num, t.u32) });

/** A FrameSink over plain memory, as a shared-memory ring would provide. */
class MemorySink implements FrameSink {
  buf = Buffer.alloc(1 << 16);
  end = 0;
  reserve(size: number): number {
    assert.ok(this.end + size <= this.buf.length);
    return this.end;
  }
  commit(end: number): void {
    this.end = end;
  }
  flush(): void {}
}

test('control frames reach the registered handler; after switchCarrier the session serves frames from another carrier', async (ctx) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-session-'));
  ctx.after(() => rmSync(dir, { recursive: true, force: true }));
  let resolveLater: (() => void) | null = null;
  const membrane = new Membrane(Svc, {
    inc: (v) => v.n + 1,
    later: (v) => new Promise<number>((r) => (resolveLater = () => r(v.n * 2))),
  });
  let socketSession: ServerSession | null = null;
  membrane.onControlFrame(0x1e, (session, _flags, _method, requestId, bytes, start, end) => {
    socketSession = session;
    assert.ok(session.transport.carrier instanceof Socket);
    // answer with an "ack" control frame echoing the payload
    session.writeCold(encodeFrame(0x1f, 0, requestId, bytes.subarray(start, end)));
  });
  assert.throws(() => membrane.onControlFrame(0x20, () => {}), /control frame types/);
  assert.throws(() => membrane.onControlFrame(0x1e, () => {}), /already has a handler/);
  const path = join(dir, 'a.sock');
  const server = createServer({ allowHalfOpen: true }, (s) => membrane.serveStream(s));
  await new Promise<void>((r) => server.listen(path, r));
  ctx.after(() => server.close());

  const stream = connect({ path, allowHalfOpen: true });
  await new Promise((r) => stream.once('connect', r));
  const ex = await Synapse.attach(Svc, stream);
  ctx.after(() => ex.$close());
  assert.equal(await ex.inc({ n: 41 }), 42);
  const conn = await ex.$synapse.connection();
  const ack = new Promise<string>((resolve) => {
    conn.onControlFrame = (type, _f, _m, id, bytes, start, end) =>
      resolve(`${type.toString(16)}:${id}:${bytes.toString('utf8', start, end)}`);
  });
  conn.sendFrame(encodeFrame(0x1e, 0, 7, Buffer.from('upgrade?')));
  assert.equal(await ack, '1f:7:upgrade?');
  assert.ok(socketSession !== null);

  // The shared-memory upgrade hands the session a new sink: the peer's frames now arrive through
  // another carrier, with borrowed memory and a release hook, and the replies go out through it.
  const sink = new MemorySink();
  const ring = socketSession as ServerSession;
  ring.switchCarrier(sink, 'shm');
  assert.equal(ring.isOpen, true);
  assert.equal(ring.transportStatus.transport, 'shm');
  const slot = Buffer.alloc(64);
  const payload = Num.encode({ n: 9 });
  writeHeader(slot, 0, payload.length, FrameType.REQUEST, Svc.methods.later.id, 5);
  slot.set(payload, HEADER_SIZE);
  let released = 0;
  const loan = {
    done(token: number) {
      assert.equal(token, 77);
      released++;
    },
  };
  ring.deliverFrame(
    FrameType.REQUEST,
    0,
    Svc.methods.later.id,
    5,
    slot,
    HEADER_SIZE,
    HEADER_SIZE + payload.length,
    loan,
    77,
  );
  assert.equal(released, 0, 'the slot stays borrowed while the handler runs');
  resolveLater!();
  await new Promise((r) => setImmediate(r));
  assert.equal(released, 1);
  const replies: Array<[number, number, number]> = [];
  new FrameDecoder({
    onFrame(type, _f, _m, id, bytes, start, end) {
      replies.push([type, id, t.u32.decode(bytes, start, end - start)]);
    },
  }).push(sink.buf.subarray(0, sink.end));
  assert.deepEqual(replies, [[FrameType.REPLY, 5, 18]]);
});

test('a handler declared with its input alone gets no context; one that declares ctx gets it, sync or async', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-session-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const seen: unknown[] = [];
  let release: (() => void) | null = null;
  const membrane = new Membrane(Svc, {
    inc: function (v) {
      // biome-ignore lint/complexity/noArguments: `arguments` shows what the handler got beyond its declared input
      seen.push(arguments[1]);
      if (v.n === 0) throw new Error('zero');
      return v.n + 1;
    },
    later: (v, ctx) => {
      seen.push(ctx.requestId);
      return new Promise<number>((r) => (release = () => r(v.n * 2)));
    },
  });
  const path = join(dir, 'b.sock');
  const server = createServer({ allowHalfOpen: true }, (s) => membrane.serveStream(s));
  await new Promise<void>((r) => server.listen(path, r));
  t.after(() => server.close());
  const stream = connect({ path, allowHalfOpen: true });
  await new Promise((r) => stream.once('connect', r));
  const ex = await Synapse.attach(Svc, stream);
  t.after(() => ex.$close());
  assert.equal(await ex.inc({ n: 1 }), 2);
  await assert.rejects(ex.inc({ n: 0 }), /zero/);
  const pending = ex.later({ n: 4 });
  while (release === null) await new Promise((r) => setImmediate(r));
  assert.equal(((await ex.$metrics()) as { inFlight: number }).inFlight, 1);
  (release as () => void)();
  assert.equal(await pending, 8);
  assert.deepEqual(seen.slice(0, 2), [undefined, undefined]);
  assert.equal(typeof seen[2], 'number');
  const m = membrane.calls.snapshot().methods;
  assert.deepEqual(
    m.map((x) => [x.method, x.requests, x.errors, x.latency.count]),
    [
      ['inc', 2, 1, 2],
      ['later', 1, 0, 1],
    ],
  );
});
