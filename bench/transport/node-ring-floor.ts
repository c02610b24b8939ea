// The Node floor for shared memory: two Node processes ping-pong 16-byte records over a pair of
// single-producer/single-consumer rings in one sealed memfd (created and mapped by Cell's addon,
// handed to the child as fd 3), both sides spinning. No framing, no codec, no promise, no poller:
// what JavaScript itself costs on this machine, for the layouts a ring can have.
//   node dist/bench/transport/node-ring-floor.js <layout> <seconds>
//     layout: headtail — Cell's CSR1 layout: a record is published by storing `tail` (its own cache
//                        line), so each direction moves two lines (the record's and tail's);
//             commit   — the record's own header word publishes it (kind ≠ 0, the next header
//                        cleared first, as in CSR2), so each direction moves one line.
// Each layout is also measured with a promise per call (the `await*` fields): callers await a promise
// that a poller, re-queued as a microtask while calls are out, resolves when the reply is there. That
// is the least an awaited call can cost, against which Cell's promise-per-call rows are read.
// Prints one JSON line: {layout, medianNs, p99Ns, seqPerSec, pipelinedPerSec, awaitMedianNs,
// awaitP99Ns, awaitSeqPerSec, awaitPipelinedPerSec}.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadNative } from '../../src/shm/native.js';

const CAP = 65536;
const MASK = CAP - 1;
const HEADER = 256;
const RING = HEADER + CAP;
const RECORD = 32; // 16-byte header + 16-byte payload
const HEAD = 0; // word indices inside a ring's header
const TAIL = 16;
const STOP = 32;
const DATA = HEADER / 4;
const WINDOW = 256;
/** Where positions start: just short of 2^31, so every run crosses the int32 sign change and wraps. */
const START = 0x7fffe000;

type Layout = 'headtail' | 'commit';

/** One direction: `w` is the whole mapping as words, `base` the ring's first word. */
class Ring {
  pos = START;
  cachedHead = START;
  constructor(
    readonly w: Int32Array,
    readonly base: number,
    readonly layout: Layout,
  ) {}

  /** Producer: writes one record; false when the ring is full. Publishes now unless `defer`. */
  put(id: number, a: number, b: number, c: number, d: number, defer: boolean): boolean {
    const w = this.w;
    const room = this.layout === 'commit' ? RECORD + 16 : RECORD;
    // Positions are byte counters stored in int32 words: they wrap at 2^32, as in Cell's ring (a fast
    // pipelined run passes 2^31 bytes in a few seconds), so every difference is taken modulo 2^32.
    if (((this.pos - this.cachedHead) | 0) + room > CAP) {
      this.cachedHead = Atomics.load(w, this.base + HEAD);
      if (((this.pos - this.cachedHead) | 0) + room > CAP) return false;
    }
    const r = this.base + DATA + ((this.pos & MASK) >> 2);
    w[r] = 16;
    w[r + 1] = id;
    w[r + 3] = 0;
    w[r + 4] = a;
    w[r + 5] = b;
    w[r + 6] = c;
    w[r + 7] = d;
    this.pos = (this.pos + RECORD) | 0;
    if (this.layout === 'commit') {
      // Clear the next header's kind before publishing this one: stale bytes there never pass as a record.
      w[this.base + DATA + ((this.pos & MASK) >> 2) + 2] = 0;
      Atomics.store(w, r + 2, 1);
    } else {
      w[r + 2] = 1;
      if (!defer) Atomics.store(w, this.base + TAIL, this.pos);
    }
    return true;
  }

  /** Producer: publishes deferred records (headtail: one tail store; commit: each record published itself). */
  publish(): void {
    if (this.layout === 'headtail') Atomics.store(this.w, this.base + TAIL, this.pos);
  }

  // consumer
  read = START;
  cachedTail = START;
  /** True when the record at `read` is published. */
  ready(): boolean {
    if (this.layout === 'commit') return Atomics.load(this.w, this.base + DATA + ((this.read & MASK) >> 2) + 2) !== 0;
    if (this.cachedTail !== this.read) return true;
    this.cachedTail = Atomics.load(this.w, this.base + TAIL);
    return this.cachedTail !== this.read;
  }

  /** Consumer: the word index of the record at `read`, then advance past it (head published by `free`). */
  take(): number {
    const r = this.base + DATA + ((this.read & MASK) >> 2);
    this.read = (this.read + RECORD) | 0;
    return r;
  }

  free(): void {
    Atomics.store(this.w, this.base + HEAD, this.read);
  }
}

function rings(sab: SharedArrayBuffer, layout: Layout, server: boolean): { tx: Ring; rx: Ring } {
  const w = new Int32Array(sab);
  const c2s = new Ring(w, 0, layout);
  const s2c = new Ring(w, RING / 4, layout);
  return server ? { tx: s2c, rx: c2s } : { tx: c2s, rx: s2c };
}

function serve(sab: SharedArrayBuffer, layout: Layout): void {
  const { tx, rx } = rings(sab, layout, true);
  const w = tx.w;
  let idle = 0;
  let looks = 0;
  const parent = process.ppid;
  for (;;) {
    if (!rx.ready()) {
      if (++idle === 4096) {
        idle = 0;
        if (Atomics.load(w, STOP) !== 0) return;
        // A measuring side that died without STOP (a crash, a kill) must not leave this one spinning.
        if (++looks === 256) {
          looks = 0;
          if (process.ppid !== parent) return;
        }
      }
      continue;
    }
    // Answer everything that is there, publish the replies once, give the space back once.
    let n = 0;
    do {
      const r = rx.take();
      while (
        !tx.put(
          w[r + 1] as number,
          w[r + 4] as number,
          w[r + 5] as number,
          w[r + 6] as number,
          w[r + 7] as number,
          true,
        )
      ) {
        tx.publish();
        rx.free();
      }
      n++;
    } while (n < WINDOW && rx.ready());
    tx.publish();
    rx.free();
  }
}

interface Latency {
  medianNs: number;
  p99Ns: number;
  perSec: number;
}

/** Median and p99 of the timed calls (ms), and the rate of all calls over `elapsed` ms. */
function latency(samples: number[], calls: number, elapsed: number): Latency {
  samples.sort((a, b) => a - b);
  return {
    medianNs: (samples[samples.length >> 1] as number) * 1e6,
    p99Ns: (samples[Math.floor(samples.length * 0.99)] as number) * 1e6,
    perSec: calls / (elapsed / 1000),
  };
}

function sequential(tx: Ring, rx: Ring, seconds: number): Latency {
  const w = tx.w;
  const call = (i: number): void => {
    tx.put(i, i, 2, 3, 4, false);
    while (!rx.ready()) {}
    const r = rx.take();
    if (w[r + 1] !== i || w[r + 4] !== i) throw new Error('floor: echo mismatch');
    rx.free();
  };
  const warm = performance.now() + 300;
  let i = 0;
  while (performance.now() < warm) call(i++);
  // One call in 8 is timed, as in Cell's client: two clock reads would be a tenth of the round trip.
  const samples: number[] = [];
  const start = performance.now();
  const end = start + seconds * 1000;
  let calls = 0;
  for (;;) {
    const t0 = performance.now();
    call(i++);
    samples.push(performance.now() - t0);
    for (let k = 0; k < 7; k++) call(i++);
    calls += 8;
    if (performance.now() >= end) break;
  }
  const elapsed = performance.now() - start;
  return latency(samples, calls, elapsed);
}

function pipelined(tx: Ring, rx: Ring, seconds: number): number {
  const w = tx.w;
  let sent = 0;
  let got = 0;
  const run = (ms: number): void => {
    const end = performance.now() + ms;
    let checks = 0;
    for (;;) {
      let burst = 0;
      while (sent - got < WINDOW && tx.put(sent, sent, 2, 3, 4, true)) {
        sent++;
        burst++;
      }
      if (burst > 0) tx.publish();
      let n = 0;
      while (rx.ready()) {
        const r = rx.take();
        if (w[r + 1] !== got) throw new Error('floor: reply out of order');
        got++;
        n++;
      }
      if (n > 0) rx.free();
      if ((++checks & 255) === 0 && performance.now() >= end) break;
    }
  };
  run(300);
  const from = got;
  const start = performance.now();
  run(seconds * 1000);
  const elapsed = performance.now() - start;
  const done = got - from;
  // drain what is still in flight so the server is quiet before it stops
  while (got < sent) {
    while (!rx.ready()) {}
    rx.take();
    got++;
  }
  rx.free();
  return done / (elapsed / 1000);
}

/**
 * Calls that each await a promise: `workers` callers with one call in flight each; a poller (one
 * microtask, queued again while calls are out, so resolved callers run before its next look) takes
 * the replies and resolves their callers. One call in 8 is timed, as in sequential().
 */
async function awaited(tx: Ring, rx: Ring, workers: number, ms: number): Promise<Latency> {
  const w = tx.w;
  const waiting: ((id: number) => void)[] = [];
  let out = 0;
  let polling = false;
  const poll = (): void => {
    while (rx.ready()) {
      const r = rx.take();
      const id = w[r + 1] as number;
      rx.free();
      out--;
      (waiting[id & (WINDOW - 1)] as (id: number) => void)(id);
    }
    if (out > 0) queueMicrotask(poll);
    else polling = false;
  };
  const call = (id: number): Promise<number> => {
    while (!tx.put(id, id, 2, 3, 4, false)) {}
    out++;
    const p = new Promise<number>((resolve) => {
      waiting[id & (WINDOW - 1)] = resolve;
    });
    if (!polling) {
      polling = true;
      queueMicrotask(poll);
    }
    return p;
  };
  // The callers never leave the microtask queue, so no timer can fire: timed calls read the clock
  // and end the run themselves.
  const start = performance.now() + 300;
  const end = start + ms;
  const samples: number[] = [];
  let calls = 0;
  let measuring = false;
  let stop = false;
  let stoppedAt = 0;
  const worker = async (slot: number): Promise<void> => {
    for (let n = 0; !stop; n++) {
      const id = (n * WINDOW + slot) | 0;
      const timed = (n & 7) === 0;
      const t0 = timed ? performance.now() : 0;
      if ((await call(id)) !== id) throw new Error('floor: awaited reply out of order');
      if (measuring) calls++;
      if (!timed) continue;
      const now = performance.now();
      if (measuring) samples.push(now - t0);
      else if (now >= start) measuring = true;
      if (now >= end && !stop) {
        stop = true;
        stoppedAt = now;
      }
    }
  };
  await Promise.all(Array.from({ length: workers }, (_, slot) => worker(slot)));
  const elapsed = stoppedAt - start;
  return latency(samples, calls, elapsed);
}

async function main(): Promise<void> {
  const [mode, layoutArg] = process.argv.slice(2);
  const native = loadNative();
  if (native.addon === undefined) throw new Error(native.reason);
  const addon = native.addon;
  if (mode === '--serve') {
    const sab = addon.mmapShared(3, 2 * RING);
    addon.closeFd(3);
    serve(sab, layoutArg as Layout);
    return;
  }
  const layout = mode as Layout;
  if (layout !== 'headtail' && layout !== 'commit') throw new Error(`unknown layout ${layout}`);
  const seconds = Number(layoutArg ?? 2);
  const fd = addon.memfdCreate('cell-floor', 2 * RING);
  const sab = addon.mmapShared(fd, 2 * RING);
  const words = new Int32Array(sab);
  for (const base of [0, RING / 4]) {
    words[base + HEAD] = START;
    words[base + TAIL] = START;
  }
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve', layout], {
    stdio: ['ignore', 'inherit', 'inherit', fd],
  });
  addon.closeFd(fd);
  const exited = new Promise((r) => child.once('exit', r));
  const { tx, rx } = rings(sab, layout, false);
  let seq: Latency;
  let pipe: number;
  let seqAwait: Latency;
  let pipeAwait: Latency;
  try {
    seq = sequential(tx, rx, seconds);
    pipe = pipelined(tx, rx, seconds);
    seqAwait = await awaited(tx, rx, 1, seconds * 1000);
    pipeAwait = await awaited(tx, rx, WINDOW, seconds * 1000);
  } finally {
    // Whatever happened, the spinning echo stops (and is killed if it does not look at STOP).
    Atomics.store(tx.w, STOP, 1);
    const kill = setTimeout(() => child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(kill);
  }
  console.log(
    JSON.stringify({
      layout,
      medianNs: seq.medianNs,
      p99Ns: seq.p99Ns,
      seqPerSec: seq.perSec,
      pipelinedPerSec: pipe,
      awaitMedianNs: seqAwait.medianNs,
      awaitP99Ns: seqAwait.p99Ns,
      awaitSeqPerSec: seqAwait.perSec,
      awaitPipelinedPerSec: pipeAwait.perSec,
    }),
  );
}

await main();
