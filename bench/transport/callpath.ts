// The shared-memory call path of one side, on one thread, without the other process: CPU time per
// call, which a shared machine's load hardly moves (a round trip between two processes there is
// decided by the scheduler). Each side runs the real code over a ring pair in this process; the
// other side is a few lines that answer or ask right away.
//   node dist/bench/transport/callpath.js client|server [calls]
//     client — Synapse's ClientConnection: call(), the ring sink, the poller's tick, the reply's
//              drain and decode, the awaited promise (one call in flight, as a sequential caller).
//     server — a Membrane's ServerSession: the drain of one request, dispatch, handler, reply.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { getHeapStatistics } from 'node:v8';
import {
  DEFAULT_MAX_FRAME,
  encodeFrame,
  encodeHandshake,
  FrameType,
  HEADER_SIZE,
  PROTOCOL_VERSION,
  readU32,
  writeHeader,
} from '../../src/frame/index.js';
import { Membrane } from '../../src/index.js';
import { ShmChannel } from '../../src/shm/channel.js';
import type { NativeAddon } from '../../src/shm/native.js';
import { RingBuffer, ringBytesFor } from '../../src/shm/ring.js';
import { KIND_FRAMES, RecordFrames, RingFrameSink, type StreamSink } from '../../src/shm/wire.js';
import { ClientConnection } from '../../src/synapse/connection.js';
import { PingService } from './contract.js';

const [side = 'client', callsArg = '1000000', batchArg = '1'] = process.argv.slice(2);
const calls = Number(callsArg);
/** Requests in flight together: > 1 measures the pipelined path (many() on the client, one drain of them all on the server). */
const batch = Number(batchArg);
const PAYLOAD = Buffer.from('0123456789abcdef');
const def = PingService.byId[0] as (typeof PingService.byId)[number];

/** The channel's doorbell never rings here: the stub side wakes the poller itself (see ring()). */
let bell: () => void = () => {};
const addon = {
  FdWatcher: class {
    constructor(_fd: number, onReadable: () => void) {
      bell = onReadable;
    }
    close(): void {}
  },
  trimShared: () => 0,
} as unknown as NativeAddon;

function rings(): { c2s: SharedArrayBuffer; s2c: SharedArrayBuffer } {
  const capacity = 1 << 20;
  const c2s = new SharedArrayBuffer(ringBytesFor(capacity));
  const s2c = new SharedArrayBuffer(ringBytesFor(capacity));
  RingBuffer.initialize(c2s, capacity);
  RingBuffer.initialize(s2c, capacity);
  return { c2s, s2c };
}

const noSocket: StreamSink = {
  buf: Buffer.alloc(1 << 16),
  reserve: () => 0,
  commit: () => {},
  flush: () => {},
  writeFrame: () => {},
};

/** Publishes what `tx` holds and wakes a consumer that went to sleep meanwhile. */
function publish(tx: RingBuffer): void {
  if (tx.commitQuiet()) bell();
}

/** HELLO and WELCOME of the ping contract (both sides of the harness send the same one). */
function pingHandshake(): Buffer {
  return encodeHandshake({
    version: PROTOCOL_VERSION,
    fingerprint: PingService.fingerprint,
    name: PingService.name,
    maxFrame: DEFAULT_MAX_FRAME,
    maxInFlight: 0,
    pid: process.pid,
  });
}

async function client(): Promise<number> {
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, done) {
      if (chunk[4] === FrameType.HELLO) {
        const welcome = pingHandshake();
        setImmediate(() => this.push(encodeFrame(FrameType.WELCOME, 0, 0, welcome)));
      }
      done();
    },
  });
  const conn = await ClientConnection.open(stream, {
    cell: 'bench',
    service: PingService,
    fingerprint: PingService.fingerprint,
    timeoutMs: 30_000,
    maxFrameSize: DEFAULT_MAX_FRAME,
    shm: false,
  });
  const { c2s, s2c } = rings();
  const frames = new RecordFrames(s2c, conn);
  const channel = new ShmChannel(addon, new RingBuffer(c2s), new RingBuffer(s2c), -1, frames);
  frames.channel = channel;
  frames.sink = new RingFrameSink(channel, conn.sink);
  conn.sink = frames.sink;
  // The cell: echoes each request straight back.
  const rx = new RingBuffer(c2s);
  const tx = new RingBuffer(s2c);
  const answer = () => {
    for (let t = rx.next(); t >= 0; t = rx.next()) {
      // A record holds one frame or several (requests committed before one publication share one).
      const end = rx.payloadOffset + rx.payloadLength;
      for (let o = rx.payloadOffset; o < end; ) {
        const length = readU32(rx.bytes, o) + 4;
        const r = tx.reserve(KIND_FRAMES, 0, 0, length);
        writeHeader(tx.bytes, r, length - HEADER_SIZE, FrameType.REPLY, def.id, readU32(rx.bytes, o + 8));
        tx.bytes.copyWithin(r + HEADER_SIZE, o + HEADER_SIZE, o + length);
        o += length;
      }
      rx.release(t);
    }
    publish(tx);
  };
  const inputs = new Array<Buffer>(batch).fill(PAYLOAD);
  const run = async (n: number) => {
    if (batch > 1) {
      for (let i = 0; i < n; i += batch) {
        const replies = conn.callMany(def, inputs, undefined);
        answer();
        await replies;
      }
      return;
    }
    for (let i = 0; i < n; i++) {
      const reply = conn.call(def, PAYLOAD, undefined);
      answer();
      await reply;
    }
  };
  await run(100_000);
  const heap = usedHeap();
  const cpu = process.cpuUsage();
  await run(calls);
  const used = process.cpuUsage(cpu);
  heapBytes = usedHeap() - heap;
  channel.close();
  return used.user + used.system;
}

async function server(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'cell-callpath-'));
  process.env.CELL_HOME = dir;
  const membrane = await Membrane.bind(PingService, { ping: (p) => p }, { socketPath: join(dir, 'cell.sock') });
  const session = membrane.openSession(noSocket, { end() {}, destroy() {}, carrier: null });
  const hello = pingHandshake();
  session.onFrame(FrameType.HELLO, 0, 0, 0, hello, 0, hello.length, true);
  const { c2s, s2c } = rings();
  const frames = new RecordFrames(c2s, session);
  const channel = new ShmChannel(addon, new RingBuffer(s2c), new RingBuffer(c2s), -1, frames);
  frames.channel = channel;
  frames.sink = new RingFrameSink(channel, noSocket);
  session.switchCarrier(frames.sink, 'shm');
  // The caller: one request, the cell's drain (called directly, as its poller would), the reply.
  const tx = new RingBuffer(c2s);
  const rx = new RingBuffer(s2c);
  const size = def.input.sizeOf(PAYLOAD);
  // `batch` requests published together, one drain for them all (a pipelining caller).
  const once = (first: number) => {
    for (let id = first; id < first + batch; id++) {
      const o = tx.reserve(KIND_FRAMES, 0, 0, HEADER_SIZE + size);
      def.input.encodeInto(PAYLOAD, tx.bytes, writeHeader(tx.bytes, o, size, FrameType.REQUEST, def.id, id));
    }
    publish(tx);
    let drained = 0;
    for (let n = channel.drain(); n > 0; n = channel.drain()) drained += n;
    if (drained !== batch) throw new Error('the requests were not drained');
    for (let left = batch; left > 0; ) {
      const t = rx.next();
      if (t < 0) throw new Error('no reply');
      const end = rx.payloadOffset + rx.payloadLength;
      for (let o = rx.payloadOffset; o < end; o += readU32(rx.bytes, o) + 4) left--;
      rx.release(t);
    }
  };
  for (let i = 1; i <= 100_000; i += batch) once(i);
  const heap = usedHeap();
  const cpu = process.cpuUsage();
  for (let i = 1; i <= calls; i += batch) once(i);
  const used = process.cpuUsage(cpu);
  heapBytes = usedHeap() - heap;
  channel.close();
  await membrane.close();
  rmSync(dir, { recursive: true, force: true });
  return used.user + used.system;
}

/**
 * Heap growth over the measured calls: the bytes allocated per call when no collection ran in
 * between, so read it from a run with a young generation large enough to hold them all
 * (`node --max-semi-space-size=1024 dist/bench/transport/callpath.js client 200000`).
 */
let heapBytes = 0;
function usedHeap(): number {
  return getHeapStatistics().used_heap_size;
}

const micros = side === 'server' ? await server() : await client();
console.log(
  JSON.stringify({
    side,
    calls,
    batch,
    cpuNsPerCall: Math.round((micros * 1000) / calls),
    heapBytesPerCall: Math.round(heapBytes / calls),
  }),
);
process.exit(0);
