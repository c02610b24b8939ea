import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CellError } from '../../src/errors/index.js';
import { encodeFrame, type FrameLoan, type FrameReceiver, FrameType } from '../../src/frame/index.js';
import { type RecordSink, ShmChannel } from '../../src/shm/channel.js';
import { loadNative, type NativeAddon } from '../../src/shm/native.js';
import { RingBuffer, ringBytesFor } from '../../src/shm/ring.js';
import { KIND_FRAMES, RecordFrames, RingFrameSink, type StreamSink } from '../../src/shm/wire.js';

const native = loadNative();
const addon = native.addon as NativeAddon;
if (addon === undefined) throw new Error(`native addon unavailable: ${native.reason}`);

function ringPair(capacity = 1 << 16): { peerTx: RingBuffer; tx: RingBuffer; rx: RingBuffer } {
  const a = new SharedArrayBuffer(ringBytesFor(capacity));
  const b = new SharedArrayBuffer(ringBytesFor(capacity));
  RingBuffer.initialize(a, capacity);
  RingBuffer.initialize(b, capacity);
  return { peerTx: new RingBuffer(a), rx: new RingBuffer(a), tx: new RingBuffer(b) };
}

/** Records what the channel delivers, and which drain (begin/end bracket) each record came in. */
class Recorder implements RecordSink {
  channel: ShmChannel | null = null;
  readonly seen: Array<{ reqId: number; drain: number }> = [];
  drains = 0;
  open = false;
  onRecord(_kind: number, reqId: number, _aux: number, _offset: number, _length: number, token: number): void {
    assert.ok(this.open, 'a record outside a begin/end bracket');
    this.seen.push({ reqId, drain: this.drains });
    this.channel?.release(token);
  }
  onCorrupt(err: CellError): void {
    throw err;
  }
  beginDrain(): void {
    assert.equal(this.open, false);
    this.open = true;
    this.drains++;
  }
  endDrain(): void {
    assert.equal(this.open, true);
    this.open = false;
  }
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

test('the poller delivers a backlog in order, in bounded drains bracketed by begin/end', async () => {
  const { peerTx, tx, rx } = ringPair();
  const bell = addon.eventfdCreate();
  const sink = new Recorder();
  const channel = new ShmChannel(addon, tx, rx, bell, sink);
  sink.channel = channel;
  try {
    const payload = new Uint8Array(8);
    for (let i = 1; i <= 100; i++) assert.ok(peerTx.write(0x46, i, 0, payload));
    peerTx.commit();
    await until(() => sink.seen.length === 100, '100 records');
    assert.deepEqual(
      sink.seen.map((s) => s.reqId),
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
    const perDrain = new Map<number, number>();
    for (const s of sink.seen) perDrain.set(s.drain, (perDrain.get(s.drain) ?? 0) + 1);
    assert.ok(perDrain.size >= 4, `100 records in ${perDrain.size} drains`);
    for (const n of perDrain.values()) assert.ok(n <= 32, `a drain delivered ${n} records`);
    assert.equal(sink.open, false);
    assert.equal(rx.unreleased, 0);
    // Everything was released, so the producer can fill the ring again.
    assert.ok(peerTx.write(0x46, 101, 0, new Uint8Array(peerTx.maxPayload)));
  } finally {
    channel.close();
    addon.closeFd(bell);
  }
});

test('a record committed while the channel sleeps rings the doorbell and is delivered', async () => {
  const { peerTx, tx, rx } = ringPair();
  const bell = addon.eventfdCreate();
  const sink = new Recorder();
  const channel = new ShmChannel(addon, tx, rx, bell, sink);
  sink.channel = channel;
  const ring = (sab: SharedArrayBuffer) => {
    void sab;
    addon.eventfdSignal(bell);
  };
  const producer = new RingBuffer(peerTx.sab, ring);
  try {
    await until(() => channel.sleeps > 0, 'the channel to fall asleep');
    assert.ok(producer.write(0x46, 7, 0, new Uint8Array(4)));
    producer.commit();
    await until(() => sink.seen.length === 1, 'the record');
    assert.equal(sink.seen[0]?.reqId, 7);
    assert.ok(channel.wakeups >= 1, 'woken by the doorbell');
  } finally {
    channel.close();
    addon.closeFd(bell);
  }
});

test('a corked ring sink publishes its run of frames with one tail store at uncork', () => {
  const { tx, rx } = ringPair();
  const bell = addon.eventfdCreate();
  const channel = new ShmChannel(addon, tx, rx, bell, new Recorder());
  const socketWrites: Uint8Array[] = [];
  const socket: StreamSink = {
    buf: Buffer.alloc(1 << 16),
    reserve: () => 0,
    commit: (end) => socketWrites.push(new Uint8Array(end)),
    flush: () => {},
    writeFrame: (f) => socketWrites.push(f),
  };
  const sink = new RingFrameSink(channel, socket);
  // The peer's view of our tx ring.
  const peer = new RingBuffer(tx.sab);
  const tail = () => new Int32Array(tx.sab, 0, 32)[16];
  const frame = (n: number) => {
    const o = sink.reserve(16);
    sink.buf.fill(n, o, o + 16);
    sink.commit(o + 16);
  };
  try {
    frame(1);
    assert.equal(peer.hasData(), true, 'an uncorked frame goes out at once');
    peer.release(peer.next());
    const before = tail();
    sink.cork();
    sink.cork(); // nests
    frame(2);
    frame(3);
    frame(4);
    sink.uncork();
    assert.equal(tail(), before, 'still held: one uncork of two');
    assert.equal(peer.hasData(), false);
    sink.uncork();
    assert.equal(tail(), before + 3 * 32, 'three records published together');
    const got: number[] = [];
    for (let t = peer.next(); t >= 0; t = peer.next()) {
      for (let o = 0; o < peer.payloadLength; o += 16) got.push(peer.bytes[peer.payloadOffset + o] as number);
      peer.release(t);
    }
    assert.deepEqual(got, [2, 3, 4]);
    sink.uncork(); // unbalanced: harmless
    assert.equal(socketWrites.length, 0);
  } finally {
    channel.close();
    addon.closeFd(bell);
  }
});

test('rings the peer let go (zeroed by its punch) read as E_CONNECTION_LOST, on either direction', async () => {
  for (const side of ['rx', 'tx'] as const) {
    const { peerTx, tx, rx } = ringPair();
    const bell = addon.eventfdCreate();
    const errors: CellError[] = [];
    const sink = new Recorder();
    sink.onCorrupt = (err) => {
      errors.push(err);
    };
    const channel = new ShmChannel(addon, tx, rx, bell, sink);
    sink.channel = channel;
    try {
      // Traffic both ways first, so positions are past zero: ours past a whole ring's worth.
      for (let i = 1; i <= 3; i++) {
        assert.ok(peerTx.write(1, i, 0, new Uint8Array(40)));
        peerTx.commit();
      }
      await until(() => sink.seen.length === 3, 'the first records');
      const peerRx = new RingBuffer(tx.sab);
      for (let i = 0; i < 100; i++) {
        assert.equal(channel.send(1, i, 0, new Uint8Array(1000)), true);
        const t = peerRx.next();
        assert.ok(t >= 0);
        peerRx.release(t);
      }
      // What the server's punch does to a ring: every byte, header included, reads as zero.
      new Uint8Array(side === 'rx' ? rx.sab : tx.sab).fill(0);
      if (side === 'rx') {
        channel.expect(); // the poller looks at the rx ring again
      } else {
        // The stale head it caches lets a few records through (into a ring nobody reads); the
        // first look at the real head sees it behind by more than a ring.
        let o = 0;
        for (let i = 0; i < 10 && o >= 0; i++) {
          o = channel.reserve(1, 9, 0, tx.maxPayload);
          if (o >= 0) channel.commit();
        }
        assert.equal(o, -1, 'the sender falls back to the socket');
      }
      await until(() => errors.length === 1, `the ${side} side noticing`);
      assert.equal(errors[0]?.code, 'E_CONNECTION_LOST', String(errors[0]));
      assert.equal(channel.closed, true);
    } finally {
      channel.close();
      addon.closeFd(bell);
    }
  }
});

test('a record of several requests is freed when the last of them is done, in any order, however records interleave', () => {
  const ring = new SharedArrayBuffer(ringBytesFor(4096));
  const bytes = Buffer.from(ring);
  const lent: Array<[token: number, loan: FrameLoan]> = [];
  const receiver: FrameReceiver = {
    onFrame: () => assert.fail('a server frame without its loan'),
    deliverFrame: (_t, _f, _m, _id, _b, _s, _e, loan, token) => {
      lent.push([token, loan]);
    },
  };
  const frames = new RecordFrames(ring, receiver);
  const freed: number[] = [];
  frames.channel = { release: (token: number) => freed.push(token) } as unknown as ShmChannel;
  /** Writes `n` request frames at `at` as one record's payload and delivers it as record `token`. */
  const record = (at: number, n: number, token: number) => {
    let o = at;
    for (let i = 0; i < n; i++) {
      const f = encodeFrame(FrameType.REQUEST, 0, token * 10 + i, Buffer.alloc(4, i));
      bytes.set(f, o);
      o += f.length;
    }
    frames.onRecord(KIND_FRAMES, 0, 0, at, o - at, token);
  };
  const done = (token: number, count: number) => {
    for (const [t, loan] of lent.filter(([t]) => t === token).slice(0, count)) {
      loan.done(t);
      lent.splice(
        lent.findIndex(([x, l]) => x === t && l === loan),
        1,
      );
    }
  };
  record(256, 3, 1);
  done(1, 2);
  assert.deepEqual(freed, [], 'one of three still out');
  record(512, 2, 2); // a second shared record while the first is still held
  record(768, 1, 3);
  done(3, 1);
  assert.deepEqual(freed, [3], 'a record of one frame is freed at once');
  done(2, 1);
  done(1, 1);
  assert.deepEqual(freed, [3, 1]);
  done(2, 1);
  assert.deepEqual(freed, [3, 1, 2]);
  assert.equal(lent.length, 0);
});
