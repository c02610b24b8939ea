import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CellError } from '../../src/errors/index.js';
import { ignoreCrowding, type RecordSink, ShmChannel } from '../../src/shm/channel.js';
import { loadNative, type NativeAddon } from '../../src/shm/native.js';
import { RingBuffer, ringBytesFor } from '../../src/shm/ring.js';
import { KIND_FRAMES, RingFrameSink } from '../../src/shm/wire.js';
import { noSocket } from './no-socket.js';

const native = loadNative();
const addon = native.addon as NativeAddon;
if (addon === undefined) throw new Error(`native addon unavailable: ${native.reason}`);

function ringPair(capacity = 1 << 16) {
  const a = new SharedArrayBuffer(ringBytesFor(capacity));
  const b = new SharedArrayBuffer(ringBytesFor(capacity));
  RingBuffer.initialize(a, capacity);
  RingBuffer.initialize(b, capacity);
  // peerTx produces into our rx; peerRx consumes our tx.
  return { peerTx: new RingBuffer(a), rx: new RingBuffer(a), tx: new RingBuffer(b), peerRx: new RingBuffer(b) };
}

const quiet: RecordSink = {
  onRecord: () => {},
  onCorrupt: (err: CellError) => {
    throw err;
  },
  beginDrain: () => {},
  endDrain: () => {},
};

function setup() {
  const rings = ringPair();
  const bell = addon.eventfdCreate();
  const channel = new ShmChannel(addon, rings.tx, rings.rx, bell, quiet);
  const sink = new RingFrameSink(channel, noSocket);
  const frame = (n: number, soon = false) => {
    const o = sink.reserve(16);
    sink.buf.fill(n, o, o + 16);
    if (soon) sink.commitSoon(o + 16);
    else sink.commit(o + 16);
  };
  /**
   * The first byte of each 16-byte frame the peer can read now, releasing their records (frames
   * committed before one publication share a record).
   */
  const read = () => {
    const got: number[] = [];
    const peer = rings.peerRx;
    for (let t = peer.next(); t >= 0; t = peer.next()) {
      for (let o = 0; o < peer.payloadLength; o += 16) got.push(peer.bytes[peer.payloadOffset + o] as number);
      peer.release(t);
    }
    return got;
  };
  const done = () => {
    channel.close();
    addon.closeFd(bell);
  };
  return { ...rings, channel, sink, frame, read, done };
}

test('commitSoon holds frames until a microtask later and publishes them as one run', async () => {
  const { sink, frame, read, done } = setup();
  try {
    frame(1, true);
    frame(2, true);
    frame(3, true);
    assert.deepEqual(read(), [], 'nothing visible in the same synchronous run');
    await Promise.resolve();
    await Promise.resolve();
    assert.deepEqual(read(), [1, 2, 3]);
    // An immediate commit publishes the held frames before it, in order.
    frame(4, true);
    frame(5);
    assert.deepEqual(read(), [4, 5]);
    // A reservation abandoned by a writer that threw is never published by the deferred publication.
    frame(6, true);
    sink.reserve(16);
    await Promise.resolve();
    await Promise.resolve();
    assert.deepEqual(read(), [6]);
    frame(7);
    assert.deepEqual(read(), [7]);
  } finally {
    done();
  }
});

test('while corked, commitSoon frames wait for uncork', async () => {
  const { sink, frame, read, done } = setup();
  try {
    sink.cork();
    frame(1, true);
    await Promise.resolve();
    await Promise.resolve();
    assert.deepEqual(read(), [], 'the deferred publication leaves a corked sink alone');
    frame(2);
    sink.uncork();
    assert.deepEqual(read(), [1, 2]);
  } finally {
    done();
  }
});

test('a drain holds its replies while another request waits, and publishes the last one at commit', () => {
  const { sink, frame, read, peerTx, rx, done } = setup();
  try {
    assert.ok(peerTx.write(KIND_FRAMES, 0, 0, new Uint8Array(16)));
    assert.ok(peerTx.write(KIND_FRAMES, 0, 0, new Uint8Array(16)));
    peerTx.commit();
    sink.draining = true;
    const first = rx.next();
    frame(1);
    assert.deepEqual(read(), [], 'held: the next request is already in the ring');
    rx.release(first);
    rx.release(rx.next());
    frame(2);
    assert.deepEqual(read(), [1, 2], 'no request left waiting: out at commit, before the drain ends');
    sink.endDrain();
    assert.deepEqual(read(), []);
  } finally {
    done();
  }
});

test('a poller that always finds records still lets timers and immediates run', async (t) => {
  // The peer answers every record at once, inside the drain that delivered the previous one: the
  // chain of ticks never runs dry, so only its own turns give the event loop a chance.
  ignoreCrowding(true);
  t.after(() => ignoreCrowding(false));
  const rings = ringPair();
  const bell = addon.eventfdCreate();
  const CAP = 2_000_000;
  let delivered = 0;
  const feed = () => {
    if (delivered >= CAP) return;
    rings.peerTx.write(KIND_FRAMES, 0, 0, new Uint8Array(16));
    rings.peerTx.commit();
  };
  const channel = new ShmChannel(addon, rings.tx, rings.rx, bell, {
    ...quiet,
    onRecord: (_k, _r, _a, _o, _l, token) => {
      delivered++;
      channel.release(token);
      feed();
    },
  });
  t.after(() => {
    channel.close();
    addon.closeFd(bell);
  });
  let atTimer = -1;
  let atImmediate = -1;
  const fired = new Promise<void>((resolve) => {
    setTimeout(() => {
      atTimer = delivered;
      resolve();
    }, 1);
  });
  setImmediate(() => {
    atImmediate = delivered;
  });
  feed();
  channel.expect();
  await fired;
  assert.ok(atImmediate >= 0 && atImmediate < CAP, `the immediate ran after ${atImmediate} records`);
  assert.ok(atTimer > 0 && atTimer < CAP, `the 1 ms timer ran after ${atTimer} of ${CAP} records`);
});

test('the replies a drain holds back share one record; a corked run of requests keeps one record per frame', () => {
  const { sink, frame, peerTx, rx, peerRx, done } = setup();
  const records = () => {
    const sizes: number[] = [];
    for (let t = peerRx.next(); t >= 0; t = peerRx.next()) {
      sizes.push(peerRx.payloadLength);
      peerRx.release(t);
    }
    return sizes;
  };
  try {
    for (let i = 0; i < 3; i++) assert.ok(peerTx.write(KIND_FRAMES, 0, 0, new Uint8Array(16)));
    peerTx.commit();
    sink.draining = true;
    for (let i = 1; i <= 3; i++) {
      const t = rx.next();
      frame(i);
      rx.release(t);
    }
    sink.endDrain();
    assert.deepEqual(records(), [48], 'three replies, one record');
    sink.cork();
    frame(4);
    frame(5);
    sink.uncork();
    assert.deepEqual(records(), [16, 16]);
  } finally {
    done();
  }
});
