// The trader: `node dist/examples/market-bench/trader.js <concurrency> <ping|batch|bytes> [size]
//   [--duration seconds] [--window calls-in-flight-per-connection] [--many n] [--json]`
// Each of <concurrency> tasks has its own connection (Synapse) and keeps <window> calls in flight.
//   ping   sends {seq} and checks the echo; with --many n each of the <window> lanes sends runs of n
//          pings through `ex.ping.many` (n calls in the exchange, one promise per run; the round
//          trip is the run's);
//   batch  sends a vec of <size> real orders per call; reports calls/s and orders/s separately;
//   bytes  sends <size> random bytes per call; the exchange returns their CRC-32, which is checked.
// Prints one line per second (rate, median and p99 round trip) and a summary; exits 1 on any
// integrity failure.
import { randomFillSync } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { Synapse } from '../../src/index.js';
import { Exchange } from './contract.js';

const argv = process.argv.slice(2);
const flags = new Map<string, string>();
const positional: string[] = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a.startsWith('--')) {
    const [k, v] = a.slice(2).split('=');
    if (v !== undefined) flags.set(k, v);
    else if (k === 'json') flags.set(k, '1');
    else flags.set(k, argv[++i] ?? '');
  } else positional.push(a);
}
if (positional.length === 0) {
  console.log(
    'usage: trader <concurrency> <ping|batch|bytes> [size] [--duration s] [--window n] [--many n] [--json]\n' +
      'running: trader 1 ping --duration 5',
  );
}
const concurrency = Math.max(1, Number(positional[0] ?? 1));
const mode = (['ping', 'batch', 'bytes'].includes(positional[1]) ? positional[1] : 'ping') as
  | 'ping'
  | 'batch'
  | 'bytes';
const size = Math.max(1, Number(positional[2] ?? (mode === 'bytes' ? 4096 : 100)));
const durationS = Number(flags.get('duration') ?? 5);
const window = Math.max(1, Number(flags.get('window') ?? 1));
/** ping only: each lane sends runs of this many pings through `ex.ping.many` (one promise per run). */
const many = mode === 'ping' ? Math.max(0, Number(flags.get('many') ?? 0)) : 0;

/** Round-trip samples (µs) of the current second and of the whole run. */
let second: number[] = [];
const all: number[] = [];
let calls = 0;
let callsThisSecond = 0;
let failures = 0;
let errors = 0;
let running = true;
const firstError: string[] = [];

const SYMBOLS = ['AAPL', 'MSFT', 'NVDA', 'TSLA', 'AMZN'];
function makeBatch(n: number) {
  const orders = [];
  for (let i = 0; i < n; i++) {
    orders.push({
      symbol: SYMBOLS[i % SYMBOLS.length],
      amount: 1 + (i % 50),
      price: 10_000 + i,
      side: i % 2 === 0 ? ({ tag: 'Buy' } as const) : ({ tag: 'Sell' } as const),
    });
  }
  return { orders };
}

/** The carrier each connection ended up on: 'shm', or 'socket (why shared memory was declined)'. */
const transports = new Set<string>();

async function task(id: number): Promise<void> {
  const ex = await Synapse.grow(Exchange, { waitMs: 5000 });
  const carrier = ex.$synapse.transport;
  transports.add(
    carrier === null
      ? 'none'
      : carrier.transport === 'shm'
        ? 'shm'
        : `socket (${carrier.shmDeclined ?? 'no reason given'})`,
  );
  const batch = mode === 'batch' ? makeBatch(size) : null;
  const payload = mode === 'bytes' ? new Uint8Array(size) : null;
  let seq = id * 1_000_000_000;
  const lane = async () => {
    const pings = new Array<{ seq: number }>(many);
    while (running) {
      const t0 = performance.now();
      try {
        if (many > 0) {
          const first = seq + 1;
          for (let i = 0; i < many; i++) pings[i] = { seq: ++seq };
          const echoes = await ex.ping.many(pings);
          for (let i = 0; i < many; i++) {
            if (echoes[i] !== first + i) fail(`ping ${first + i} (run of ${many}) came back as ${echoes[i]}`);
          }
        } else if (mode === 'ping') {
          const s = ++seq;
          const echo = await ex.ping({ seq: s });
          if (echo !== s) fail(`ping ${s} came back as ${echo}`);
        } else if (mode === 'batch') {
          const ack = await ex.submit_batch(batch!);
          if (ack.accepted !== size) fail(`batch of ${size} orders acknowledged ${ack.accepted}`);
        } else {
          randomFillSync(payload!);
          const want = crc32(payload!);
          const got = await ex.ingest_data(payload!);
          if (got.length !== size || got.crc32 !== want) fail(`crc32 ${got.crc32} != ${want} (length ${got.length})`);
        }
      } catch (err) {
        errors++;
        if (firstError.length === 0) firstError.push(String((err as Error).message ?? err));
        if (!running) break;
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      const us = (performance.now() - t0) * 1000;
      second.push(us);
      calls += many > 0 ? many : 1;
      callsThisSecond += many > 0 ? many : 1;
    }
  };
  await Promise.all(Array.from({ length: window }, lane));
  await ex.$close();
}

function fail(why: string): void {
  failures++;
  if (failures <= 5) console.error(`INTEGRITY FAILURE: ${why}`);
}

function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function fmtUs(us: number): string {
  return us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(1)} µs`;
}

function fmtRate(r: number): string {
  return r >= 1e6 ? `${(r / 1e6).toFixed(2)} M` : r >= 1e3 ? `${(r / 1e3).toFixed(1)} k` : r.toFixed(0);
}

function perCall(rate: number): string {
  if (mode === 'batch') return ` | orders/s ${fmtRate(rate * size)}`;
  if (mode === 'bytes') return ` | ${((rate * size) / 1e6).toFixed(1)} MB/s`;
  return '';
}

const label =
  mode === 'ping'
    ? many > 0
      ? `ping (integrity-checked echo), ${concurrency} conn × ${window} runs of many(${many}) in flight`
      : `ping (integrity-checked echo), ${concurrency} conn × ${window} in flight`
    : mode === 'batch'
      ? `batch of ${size} orders, ${concurrency} conn × ${window} in flight`
      : `bytes ${size} B random + crc32, ${concurrency} conn × ${window} in flight`;
console.log(`trader: ${label}, ${durationS} s`);

const tasks = Array.from({ length: concurrency }, (_, i) => task(i));
const started = performance.now();
let last = started;
let tick = 0;
const reporter = setInterval(() => {
  const now = performance.now();
  const dt = (now - last) / 1000;
  last = now;
  tick++;
  const s = Float64Array.from(second).sort();
  for (const x of second) all.push(x);
  second = [];
  const rate = callsThisSecond / dt;
  callsThisSecond = 0;
  console.log(
    `[${String(tick).padStart(3)}s] ${mode.padEnd(5)} ${mode === 'ping' ? 'QPS' : 'RPS'} ${fmtRate(rate).padStart(8)}${perCall(rate)} | RTT median ${fmtUs(quantile(s, 0.5))} p99 ${fmtUs(quantile(s, 0.99))}${mode === 'ping' ? ' | verified' : ''}`,
  );
}, 1000);

await new Promise((r) => setTimeout(r, durationS * 1000));
running = false;
clearInterval(reporter);
for (const x of second) all.push(x);
const elapsed = (performance.now() - started) / 1000;
await Promise.all(tasks).catch((err) => {
  errors++;
  firstError.push(String(err?.message ?? err));
});
const sorted = Float64Array.from(all).sort();
const summary = {
  mode,
  concurrency,
  window,
  size: mode === 'ping' ? 0 : size,
  seconds: Number(elapsed.toFixed(2)),
  calls,
  callsPerSecond: Math.round(calls / elapsed),
  ordersPerSecond: mode === 'batch' ? Math.round((calls * size) / elapsed) : 0,
  megabytesPerSecond: mode === 'bytes' ? Number(((calls * size) / elapsed / 1e6).toFixed(1)) : 0,
  medianUs: Number(quantile(sorted, 0.5).toFixed(1)),
  p99Us: Number(quantile(sorted, 0.99).toFixed(1)),
  integrityFailures: failures,
  errors,
  transport: [...transports].join(', '),
};
console.log(
  `summary: ${fmtRate(summary.callsPerSecond)} calls/s${perCall(summary.callsPerSecond)}, RTT median ${fmtUs(summary.medianUs)} p99 ${fmtUs(summary.p99Us)}, ${calls} calls, ${failures} integrity failures, ${errors} errors${firstError.length > 0 ? ` (first: ${firstError[0]})` : ''}; transport: ${summary.transport}`,
);
if (flags.has('json')) console.log(`SUMMARY ${JSON.stringify(summary)}`);
process.exit(failures > 0 || calls === 0 ? 1 : 0);
