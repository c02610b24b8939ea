// One benchmark client run, in its own process:
//   node dist/bench/transport/client.js <kind> <address> <window> <durationMs> <warmupMs>
// Keeps <window> calls in flight for <durationMs> (after a warm-up) and prints one JSON line:
// {kind, window, calls, seconds, rate, medianUs, p99Us}.
import { fork } from 'node:child_process';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { FrameType, HEADER_SIZE, readU32, writeHeader } from '../../src/frame/index.js';
import { Synapse } from '../../src/index.js';
import { PingService } from './contract.js';
import { moleculerNode } from './moleculer.js';

const [kind, address, windowArg, durationArg, warmupArg] = process.argv.slice(2);
const window = Number(windowArg);
const durationMs = Number(durationArg);
const warmupMs = Number(warmupArg);
const PAYLOAD = Buffer.from('0123456789abcdef');

interface Recorder {
  calls: number;
  samples: number[];
  measuring: boolean;
  stop: boolean;
}

const rec: Recorder = { calls: 0, samples: [], measuring: false, stop: false };
/**
 * Sequential runs time one call in 8 and pipelined runs one in 16: two clock reads cost about a tenth of
 * a sequential shared-memory round trip, which would otherwise count against the rate. The samples
 * still number tens of thousands per second, and every 8th call is as slow as any other.
 */
const sampleMask = window === 1 ? 7 : 15;

type Call = () => Promise<unknown>;

/** `verify` checks each reply (so a caller's `await` sees the transport's own promise, not a `.then` of it). */
async function runWindow(call: Call, verify: ((reply: unknown) => void) | null = null): Promise<void> {
  await runWorkers(new Array<Call>(window).fill(call), verify);
}

/** One worker per call function, each keeping one call in flight. */
async function runWorkers(calls: Call[], verify: ((reply: unknown) => void) | null): Promise<void> {
  let seq = 0;
  const worker = async (call: Call) => {
    while (!rec.stop) {
      const timed = (seq++ & sampleMask) === 0;
      const t0 = timed ? performance.now() : 0;
      const reply = await call();
      if (verify !== null) verify(reply);
      if (rec.measuring) {
        rec.calls++;
        if (timed) rec.samples.push(performance.now() - t0);
      }
    }
  };
  const workers: Promise<void>[] = [];
  for (const call of calls) workers.push(worker(call));
  await phases();
  await Promise.all(workers);
}

async function phases(): Promise<number> {
  await sleep(warmupMs);
  rec.measuring = true;
  const t0 = performance.now();
  await sleep(durationMs);
  rec.measuring = false;
  const seconds = (performance.now() - t0) / 1000;
  rec.stop = true;
  elapsed = seconds;
  return seconds;
}

let elapsed = 0;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function check(reply: unknown): void {
  const b = reply as Uint8Array;
  if (b.length !== 16 || b[0] !== 0x30 || b[15] !== 0x66) throw new Error(`${kind}: corrupted echo`);
}

async function cell(shm: boolean, many: boolean): Promise<void> {
  const ex = await Synapse.grow(PingService, {
    resolvers: [{ name: 'bench', order: 0, resolve: () => unix() }],
    shm,
  });
  const carrier = ex.$synapse.transport;
  if (carrier?.transport !== (shm ? 'shm' : 'socket')) {
    throw new Error(`${kind}: connection is on ${carrier?.transport} (${carrier?.shmDeclined ?? 'no reason'})`);
  }
  if (many) await runMany(ex.ping.many, check);
  else await runWindow(() => ex.ping(PAYLOAD), check);
  await ex.$close();
}

/**
 * `window` connections from this one process to the cell, each with one call in flight: the cell's
 * poller serves many rings at once (and this process's poller waits on many).
 */
async function cellConns(): Promise<void> {
  const exs = [];
  for (let i = 0; i < window; i++) {
    const ex = await Synapse.grow(PingService, {
      resolvers: [{ name: 'bench', order: 0, resolve: () => unix() }],
      shm: true,
    });
    if (ex.$synapse.transport?.transport !== 'shm') {
      throw new Error(`${kind}: connection ${i} is on ${ex.$synapse.transport?.transport}`);
    }
    exs.push(ex);
  }
  await runWorkers(
    exs.map((ex) => () => ex.ping(PAYLOAD)),
    check,
  );
  for (const ex of exs) await ex.$close();
}

/**
 * The same window of calls in flight, sent through `many`: batches of up to MANY_BATCH requests, each
 * its own call in the cell, with one promise per batch. Every call counts; the latency samples are
 * batch round trips.
 */
const MANY_BATCH = 64;
async function runMany(
  many: (inputs: readonly Uint8Array[]) => Promise<Uint8Array[]>,
  verify: (reply: unknown) => void,
): Promise<void> {
  const size = Math.min(window, MANY_BATCH);
  const inputs = new Array<Uint8Array>(size).fill(PAYLOAD);
  let seq = 0;
  const worker = async () => {
    while (!rec.stop) {
      const timed = (seq++ & sampleMask) === 0;
      const t0 = timed ? performance.now() : 0;
      const replies = await many(inputs);
      for (let i = 0; i < replies.length; i++) verify(replies[i]);
      if (rec.measuring) {
        rec.calls += replies.length;
        if (timed) rec.samples.push(performance.now() - t0);
      }
    }
  };
  const workers: Promise<void>[] = [];
  for (let i = 0; i < Math.max(1, Math.floor(window / size)); i++) workers.push(worker());
  await phases();
  await Promise.all(workers);
}

function unix() {
  return {
    describe: address,
    connect: () =>
      new Promise<import('node:stream').Duplex>((resolve, reject) => {
        const s = connect(address);
        s.once('error', reject);
        s.once('connect', () => resolve(s));
      }),
  };
}

/** The floor client: raw frames, FIFO replies, one write per received chunk, no promises per call. */
async function floor(): Promise<void> {
  const frameSize = HEADER_SIZE + 16;
  const template = Buffer.allocUnsafe(frameSize);
  writeHeader(template, 0, 16, FrameType.REQUEST, 0, 1);
  PAYLOAD.copy(template, HEADER_SIZE);
  const socket = connect(address);
  await new Promise((r) => socket.once('connect', r));
  // Send times of frames in flight, FIFO (the echo answers in order).
  const times = new Float64Array(1 << 16);
  let head = 0;
  let tail = 0;
  let stash: Buffer | null = null;
  let timedFrames = 0;
  const send = (n: number) => {
    const b = Buffer.allocUnsafe(n * frameSize);
    for (let i = 0; i < n; i++) template.copy(b, i * frameSize);
    const now = performance.now();
    for (let i = 0; i < n; i++) times[tail++ & 0xffff] = now;
    socket.write(b);
  };
  socket.on('data', (chunk: Buffer) => {
    let buf = chunk;
    if (stash !== null) {
      buf = Buffer.concat([stash, chunk]);
      stash = null;
    }
    let off = 0;
    let n = 0;
    const now = performance.now();
    while (buf.length - off >= HEADER_SIZE) {
      const total = readU32(buf, off) + 4;
      if (buf.length - off < total) break;
      if (buf[off + HEADER_SIZE] !== 0x30) throw new Error('floor: corrupted echo');
      const sent = times[head++ & 0xffff];
      if (rec.measuring) {
        rec.calls++;
        if ((timedFrames++ & sampleMask) === 0) rec.samples.push(now - sent);
      }
      off += total;
      n++;
    }
    if (off < buf.length) stash = Buffer.from(buf.subarray(off));
    if (!rec.stop && n > 0) send(n);
  });
  send(window);
  await phases();
  socket.destroy();
}

async function grpc(): Promise<void> {
  const g = await import('@grpc/grpc-js');
  const client = new g.Client(`unix:${address}`, g.credentials.createInsecure());
  const identity = (b: Buffer) => b;
  const call = () =>
    new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest('/bench.Echo/Ping', identity, identity, PAYLOAD, (err, reply) =>
        err ? reject(err) : resolve(reply as Buffer),
      ),
    );
  await call();
  await runWindow(call, check);
  client.close();
}

async function zmqReq(): Promise<void> {
  const zmq = await import('zeromq');
  const sock = new zmq.Request();
  sock.connect(address);
  await runWindow(async () => {
    await sock.send(PAYLOAD);
    const [reply] = await sock.receive();
    check(reply);
  });
  sock.close();
}

/** DEALER ↔ ROUTER: replies come back in order, so a FIFO of resolvers correlates them. */
async function zmqDealer(): Promise<void> {
  const zmq = await import('zeromq');
  const sock = new zmq.Dealer({ sendHighWaterMark: 100_000, receiveHighWaterMark: 100_000 });
  sock.connect(address);
  const waiting: Array<(b: Buffer) => void> = [];
  let wHead = 0;
  const outbox: Buffer[] = [];
  let sending = false;
  // zeromq allows one send() at a time per socket: queue and drain.
  const pump = async () => {
    sending = true;
    while (outbox.length > 0) await sock.send(outbox.shift()!);
    sending = false;
  };
  (async () => {
    for await (const [msg] of sock) {
      const r = waiting[wHead];
      waiting[wHead++] = undefined as never;
      r(msg);
    }
  })().catch(() => {});
  await runWindow(
    () =>
      new Promise<void>((resolve) => {
        waiting.push((b) => {
          check(b);
          resolve();
        });
        outbox.push(PAYLOAD);
        if (!sending) void pump();
      }),
  );
  sock.close();
}

/** Moleculer: `broker.call` per request (a promise each, like a Synapse call); JSON over TCP loopback. */
async function moleculer(): Promise<void> {
  const broker = await moleculerNode(address, 'client');
  await broker.start();
  await broker.waitForServices('bench', 10_000);
  const text = PAYLOAD.toString('latin1');
  const params = { p: text };
  await runWindow(
    () => broker.call('bench.ping', params),
    (reply) => {
      if ((reply as { p: string }).p !== text) throw new Error('moleculer: corrupted echo');
    },
  );
  await broker.stop();
}

async function ipc(): Promise<void> {
  const child = fork(fileURLToPath(new URL('./servers.js', import.meta.url)), ['ipc', ''], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  await new Promise((r) => child.once('message', r));
  const pending = new Map<number, () => void>();
  let next = 0;
  const text = PAYLOAD.toString('latin1');
  child.on('message', (m: { i: number; p: string }) => {
    if (m.p !== text) throw new Error('ipc: corrupted echo');
    const r = pending.get(m.i)!;
    pending.delete(m.i);
    r();
  });
  await runWindow(
    () =>
      new Promise<void>((resolve) => {
        const i = next++;
        pending.set(i, resolve);
        child.send({ i, p: text });
      }),
  );
  child.disconnect();
}

const runners: Record<string, () => Promise<void>> = {
  cell: () => cell(false, false),
  'cell-shm': () => cell(true, false),
  'cell-many': () => cell(false, true),
  'cell-shm-many': () => cell(true, true),
  'cell-shm-conns': cellConns,
  floor,
  grpc,
  'zmq-rep': zmqReq,
  'zmq-router': zmqDealer,
  ipc,
  moleculer,
};

await runners[kind]();
rec.samples.sort((a, b) => a - b);
const q = (p: number) => rec.samples[Math.min(rec.samples.length - 1, Math.floor(p * rec.samples.length))] ?? 0;
process.stdout.write(
  `${JSON.stringify({
    kind,
    window,
    calls: rec.calls,
    seconds: elapsed,
    rate: rec.calls / elapsed,
    medianUs: q(0.5) * 1000,
    p99Us: q(0.99) * 1000,
  })}\n`,
);
process.exit(0);
