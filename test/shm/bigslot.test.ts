import assert from 'node:assert/strict';
import { ftruncateSync, mkdtempSync, openSync, readdirSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { CellError } from '../../src/errors/index.js';
import { encodeFrame, type FrameReceiver, FrameType } from '../../src/frame/index.js';
import { ShmChannel } from '../../src/shm/channel.js';
import { loadNative, type NativeAddon } from '../../src/shm/native.js';
import { RingBuffer, ringBytesFor } from '../../src/shm/ring.js';
import { PICKUP_REQUEST_BYTES, pickUpRings, slotBytesFor } from '../../src/shm/upgrade.js';
import { KIND_BIG, RecordFrames, RingFrameSink } from '../../src/shm/wire.js';
import { Delayed } from '../integration/shm/fixtures/contract.js';
import { noSocket } from './no-socket.js';

const native = loadNative();
if (native.addon === undefined) throw new Error(`needs the native addon: ${native.reason}`);
const addon = native.addon as NativeAddon;

const CAPACITY = 4096;
const SLOT = slotBytesFor(CAPACITY);
const dir = mkdtempSync(join(tmpdir(), 'cell-bigslot-'));
const path = join(dir, 'pickup.sock');
let server: Server;
let main: Socket;
let mainFd = -1;
/** What the hostile server answers the next pickup with. */
let answer: (fd: number) => void = () => {};

function fdOf(s: Socket): number {
  return (s as unknown as { _handle: { fd: number } })._handle.fd;
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

before(async () => {
  server = createServer((s) => {
    let got = 0;
    s.on('data', (c: Buffer) => {
      got += c.length;
      if (got >= PICKUP_REQUEST_BYTES) {
        answer(fdOf(s));
        s.end();
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(path, r));
  main = connect(path);
  await new Promise<void>((r) => main.once('connect', () => r()));
  mainFd = fdOf(main);
});

after(() => {
  main.destroy();
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Ring, ring, bell, bell as the real server makes them. */
function ringFds(): number[] {
  const fds: number[] = [];
  for (let i = 0; i < 2; i++) {
    const fd = addon.memfdCreate('test-ring', ringBytesFor(CAPACITY));
    const map = addon.mmapShared(fd, ringBytesFor(CAPACITY));
    RingBuffer.initialize(map, CAPACITY);
    addon.unmapShared(map);
    fds.push(fd);
  }
  fds.push(addon.eventfdCreate(), addon.eventfdCreate());
  return fds;
}

function ok(slot?: number): Buffer {
  const b = Buffer.alloc(slot === undefined ? 6 : 10);
  b.write('OK', 0, 'latin1');
  b.writeUInt32LE(CAPACITY, 2);
  if (slot !== undefined) b.writeUInt32LE(slot, 6);
  return b;
}

/** Answers the pickup with `fds` and `payload`, then closes this side's copies of the fds. */
function serve(fds: number[], payload: Buffer): void {
  answer = (fd) => {
    try {
      addon.sendFds(fd, fds, payload);
    } finally {
      for (const f of fds) addon.closeFd(f);
    }
  };
}

const offer = { challenge: Buffer.alloc(32), ticket: Buffer.alloc(16), capacity: CAPACITY };

async function refused(asked: boolean, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(pickUpRings(path, offer, 2000, mainFd, asked), (e: CellError) => {
    assert.equal(e.code, code, e.message);
    assert.match(e.message, pattern);
    return true;
  });
}

async function noLeak(run: () => Promise<void>): Promise<void> {
  const fds = openFds();
  await run();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(openFds(), fds, 'every fd received was closed');
}

test('a well-formed slotted answer maps both slots (the one read only, read-only) and frees everything', async () => {
  await noLeak(async () => {
    serve([...ringFds(), addon.memfdCreate('s', SLOT), addon.memfdCreate('s', SLOT)], ok(SLOT));
    const pair = await pickUpRings(path, offer, 2000, mainFd, true);
    assert.equal(pair.txSlot?.byteLength, SLOT);
    assert.equal(pair.rxSlot?.byteLength, SLOT);
    pair.free();
  });
});

test('a slot file that is no memfd (no seals) is refused with E_PROTOCOL, nothing leaks', async () => {
  const file = join(dir, 'plain');
  await noLeak(async () => {
    const plain = openSync(file, 'w+');
    ftruncateSync(plain, SLOT);
    const dup = addon.memfdCreate('s', SLOT);
    serve([...ringFds(), dup, plain], ok(SLOT));
    await refused(true, 'E_PROTOCOL', /big slot refused: .*not sealed/);
  });
});

test('a slot smaller than announced is refused with E_PROTOCOL', async () => {
  await noLeak(async () => {
    serve([...ringFds(), addon.memfdCreate('s', SLOT), addon.memfdCreate('s', 4096)], ok(SLOT));
    await refused(true, 'E_PROTOCOL', /smaller than requested/);
  });
});

test('a slot announced over the frame limit is refused with E_FRAME_TOO_LARGE', async () => {
  await noLeak(async () => {
    serve([...ringFds(), addon.memfdCreate('s', 4096), addon.memfdCreate('s', 4096)], ok(64 << 20));
    await refused(true, 'E_FRAME_TOO_LARGE', /outside/);
  });
});

test('slots offered to a client that did not ask, too many fds, or slot fds without the announcement: refused', async () => {
  await noLeak(async () => {
    serve([...ringFds(), addon.memfdCreate('s', SLOT), addon.memfdCreate('s', SLOT)], ok(SLOT));
    await refused(false, 'E_SHM_AUTH', /refused the ring pickup/);
    const eight = [...ringFds(), ...[1, 2, 3, 4].map(() => addon.memfdCreate('s', SLOT))];
    serve(eight, ok(SLOT));
    await refused(true, 'E_SHM_AUTH', /refused the ring pickup/);
    serve([...ringFds(), addon.memfdCreate('s', SLOT), addon.memfdCreate('s', SLOT)], ok());
    await refused(true, 'E_SHM_AUTH', /refused the ring pickup/);
  });
});

/** A receiver that records what reaches it. */
function receiver(leases: boolean) {
  const seen: { frames: number; corrupt: CellError[]; leases: { release(): void }[] } = {
    frames: 0,
    corrupt: [],
    leases: [],
  };
  const r: FrameReceiver = {
    onFrame() {
      seen.frames++;
    },
    ringCorrupt(err: CellError) {
      seen.corrupt.push(err);
    },
  };
  if (leases) {
    r.deliverFrame = (_t, _f, _m, _id, _b, _s, _e, loan, token) => {
      seen.frames++;
      seen.leases.push({ release: () => loan.done(token) });
    };
  }
  return { r, seen };
}

function slotWith(frame: Buffer): SharedArrayBuffer {
  const sab = new SharedArrayBuffer(SLOT);
  new Uint8Array(sab).set(frame);
  return sab;
}

test('BIG records are checked: none expected, a ring payload, a length past the slot, a second one while held', () => {
  const frame = encodeFrame(FrameType.REQUEST, 1, 7, Buffer.alloc(5000, 1));
  const ring = new SharedArrayBuffer(ringBytesFor(CAPACITY));
  const cases: Array<[SharedArrayBuffer | null, number, number, RegExp]> = [
    [null, frame.length, 0, /without big slots/],
    [slotWith(frame), frame.length, 16, /16 in the ring/],
    [slotWith(frame), SLOT + 1, 0, /for a slot of/],
    [slotWith(frame), 0, 0, /empty record/],
  ];
  for (const [slot, aux, len, why] of cases) {
    const { r, seen } = receiver(true);
    new RecordFrames(ring, r, slot).onRecord(KIND_BIG, 0, aux, 256, len, 0);
    assert.equal(seen.corrupt.length, 1, String(why));
    assert.equal(seen.corrupt[0]?.code, 'E_PROTOCOL');
    assert.match(seen.corrupt[0]?.message ?? '', why);
  }
  const { r, seen } = receiver(true);
  const frames = new RecordFrames(ring, r, slotWith(frame));
  frames.onRecord(KIND_BIG, 0, frame.length, 256, 0, 0);
  assert.equal(seen.frames, 1);
  frames.onRecord(KIND_BIG, 0, frame.length, 256, 0, 1);
  assert.match(seen.corrupt[0]?.message ?? '', /still held/);
  // Once the handler's lease is released the slot may carry the next one.
  const { r: r2, seen: seen2 } = receiver(true);
  const f2 = new RecordFrames(ring, r2, slotWith(frame));
  f2.onRecord(KIND_BIG, 0, frame.length, 256, 0, 0);
  seen2.leases[0]?.release();
  f2.onRecord(KIND_BIG, 0, frame.length, 256, 0, 1);
  assert.equal(seen2.frames, 2);
  assert.equal(seen2.corrupt.length, 0);
});

test('a client decodes a BIG reply at once and releases the slot before the next one', () => {
  const frame = encodeFrame(FrameType.REPLY, 1, 7, Buffer.alloc(5000, 1));
  const { r, seen } = receiver(false);
  const frames = new RecordFrames(new SharedArrayBuffer(ringBytesFor(CAPACITY)), r, slotWith(frame));
  frames.onRecord(KIND_BIG, 0, frame.length, 256, 0, 0);
  frames.onRecord(KIND_BIG, 0, frame.length, 256, 0, 1);
  assert.equal(seen.frames, 2);
  assert.equal(seen.corrupt.length, 0);
});

test('decode copies large bytes fields out of a Buffer: the value survives the memory being reused', () => {
  const big = Delayed.encode({ id: 1, delay: 0, body: new Uint8Array(100_000).fill(7) });
  const buf = Buffer.from(big);
  const v = Delayed.decode(buf, 0, buf.length);
  buf.fill(9);
  assert.equal(v.body[50_000], 7);
});

/** A RecordFrames whose receiver keeps what it is handed: decoded (client) or a view (server handler). */
function holding(leases: boolean, slot: SharedArrayBuffer) {
  const got: { decoded: ReturnType<typeof Delayed.decode>[]; views: ReturnType<typeof Delayed.view>[] } = {
    decoded: [],
    views: [],
  };
  const r: FrameReceiver = {
    onFrame(_t, _f, _m, _id, b, s, e) {
      got.decoded.push(Delayed.decode(b, s, e - s));
    },
  };
  if (leases) {
    r.deliverFrame = (_t, _f, _m, _id, b, s, e) => {
      got.views.push(Delayed.view(b, s, e - s));
    };
  }
  return { frames: new RecordFrames(new SharedArrayBuffer(ringBytesFor(CAPACITY)), r, slot), got };
}

test('a hostile peer writing into its slot after the hand-over: a decoded reply keeps its bytes', () => {
  const body = new Uint8Array(60_000).fill(0x11);
  const frame = encodeFrame(FrameType.REPLY, 1, 7, Buffer.from(Delayed.encode({ id: 3, delay: 0, body })));
  const slot = slotWith(frame);
  const { frames, got } = holding(false, slot);
  frames.onRecord(KIND_BIG, 0, frame.length, 256, 0, 0);
  new Uint8Array(slot).fill(0xee); // the peer rewrites everything once the record is released
  const v = got.decoded[0];
  assert.equal(v?.id, 3);
  assert.equal(v?.body.length, 60_000);
  assert.ok(
    v?.body.every((x) => x === 0x11),
    'decode copied the body before the peer could change it',
  );
  assert.ok(!(v?.body.buffer instanceof SharedArrayBuffer));
});

test('a hostile peer rewriting a request in its slot while the handler holds a view: reads stay inside the request', () => {
  const body = new Uint8Array(50_000).fill(0x22);
  const frame = encodeFrame(FrameType.REQUEST, 1, 7, Buffer.from(Delayed.encode({ id: 4, delay: 0, body })));
  const slot = slotWith(frame);
  const { frames, got } = holding(true, slot);
  frames.onRecord(KIND_BIG, 0, frame.length, 256, 0, 0);
  const view = got.views[0] as ReturnType<typeof Delayed.view>;
  assert.equal(view.body.length, 50_000);
  const kept = Delayed.decode(Buffer.from(slot), 12, frame.length - 12); // copy-on-validate
  // The body's slot (offset, length) now points past the request, then at a length that leaves it.
  const u32 = new DataView(slot);
  const slotAt = 12 + 4 + 8; // frame header, struct header, id and delay
  const offset = u32.getUint32(slotAt, true);
  u32.setUint32(slotAt, frame.length + 1000, true);
  assert.throws(
    () => view.body,
    (e: CellError) => e.code === 'E_DECODE',
  );
  u32.setUint32(slotAt, offset, true);
  u32.setUint32(slotAt + 4, SLOT, true);
  assert.throws(
    () => view.body,
    (e: CellError) => e.code === 'E_DECODE',
  );
  // Rewritten in place within its bounds the handler sees the new bytes (shared memory); the copy does not.
  u32.setUint32(slotAt + 4, 50_000, true);
  new Uint8Array(slot, 12 + offset, 10).fill(0x99);
  assert.equal(view.body[0], 0x99);
  assert.equal(kept.body[0], 0x22);
});

test('a server hands the big slot back before its reply goes out: the caller may send the next big frame at once', () => {
  const capacity = 1 << 16;
  const c2s = new SharedArrayBuffer(ringBytesFor(capacity));
  const s2c = new SharedArrayBuffer(ringBytesFor(capacity));
  RingBuffer.initialize(c2s, capacity);
  RingBuffer.initialize(s2c, capacity);
  const slot = new SharedArrayBuffer(slotBytesFor(capacity));
  const peerTx = new RingBuffer(c2s);
  const tx = new RingBuffer(s2c);
  const bell = addon.eventfdCreate();
  // The handler echoes the request, then is done with it (as a Membrane answers a synchronous call).
  const receiver: FrameReceiver = {
    onFrame: () => assert.fail('a server frame without its loan'),
    deliverFrame(_type, _flags, method, id, b, s, e, loan, token) {
      sink.writeFrame(encodeFrame(FrameType.REPLY, method, id, b.subarray(s, e)));
      loan.done(token);
    },
  };
  const frames = new RecordFrames(c2s, receiver, slot);
  const channel = new ShmChannel(addon, tx, new RingBuffer(c2s), bell, frames);
  const sink = new RingFrameSink(channel, noSocket);
  frames.channel = channel;
  frames.sink = sink;
  try {
    const request = encodeFrame(FrameType.REQUEST, 0, 1, Buffer.alloc(5000, 3));
    new Uint8Array(slot).set(request);
    peerTx.reserve(KIND_BIG, 0, request.length, 0);
    const slotEnd = peerTx.reservedEnd;
    peerTx.commit();
    let slotFreeAtReply: boolean | null = null;
    const publish = tx.commitQuiet.bind(tx);
    tx.commitQuiet = () => {
      slotFreeAtReply ??= peerTx.releasedThrough(slotEnd);
      return publish();
    };
    assert.equal(channel.drain(), 1);
    assert.equal(slotFreeAtReply, true, 'the slot was free when the reply became visible');
    const peerRx = new RingBuffer(s2c);
    const t = peerRx.next();
    assert.ok(t >= 0);
    assert.equal(peerRx.payloadLength, request.length);
  } finally {
    channel.close();
    addon.closeFd(bell);
  }
});
