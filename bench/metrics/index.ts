// Cost of the Membrane's per-request metrics: Histogram.record and ServiceMetrics.begin+end, against
// a bare counter increment and a performance.now() pair (the clock the Membrane reads anyway).
// Run: node dist/bench/metrics/index.js
import { cpus } from 'node:os';
import { Histogram, ServiceMetrics } from '../../src/metrics/index.js';

const N = 5_000_000;
const ROUNDS = 7;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** ns per operation, median of ROUNDS rounds of N operations. */
function measure(name: string, body: (n: number) => number): number {
  body(N); // warm up
  const times: number[] = [];
  let sink = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    sink += body(N);
    times.push(Number(process.hrtime.bigint() - t0) / N);
  }
  const ns = median(times);
  console.log(`${name.padEnd(44)} ${ns.toFixed(2).padStart(7)} ns/op  (sink ${sink % 7})`);
  return ns;
}

// Latencies spread like a busy service: mostly microseconds, a tail into milliseconds.
const samples = new Float64Array(4096);
for (let i = 0; i < samples.length; i++) samples[i] = Math.floor(2_000 * Math.exp(Math.random() * 8));

console.log(`cpu: ${cpus()[0]?.model}; node ${process.version}; ${N} ops x ${ROUNDS} rounds`);
const counter = measure('counter increment (floor)', (n) => {
  const o = { c: 0 };
  for (let i = 0; i < n; i++) o.c++;
  return o.c;
});
const record = measure('Histogram.record', (n) => {
  const h = new Histogram();
  for (let i = 0; i < n; i++) h.record(samples[i & 4095]);
  return h.count;
});
const both = measure('ServiceMetrics.begin + end', (n) => {
  const m = new ServiceMetrics('bench', ['a', 'b', 'c']);
  for (let i = 0; i < n; i++) {
    m.begin(i % 3, 64);
    m.end(i % 3, samples[i & 4095], 32, false);
  }
  return m.byId[0].requests;
});
const clock = measure('2 x performance.now()', (n) => {
  let s = 0;
  for (let i = 0; i < n; i++) s += performance.now() - performance.now();
  return s;
});
const h = new Histogram();
for (let i = 0; i < 1_000_000; i++) h.record(samples[i & 4095]);
const calls = 20_000;
const pcts: number[] = [];
let psink = 0;
for (let r = 0; r < ROUNDS; r++) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) psink += h.percentile(0.99);
  pcts.push(Number(process.hrtime.bigint() - t0) / calls);
}
const p = median(pcts);
console.log(
  `${'Histogram.percentile(0.99), 1 M values'.padEnd(44)} ${(p / 1000).toFixed(2).padStart(7)} µs/op  (sink ${psink % 7})`,
);
console.log(
  `\nsummary: record ${record.toFixed(1)} ns, begin+end ${both.toFixed(1)} ns, clock pair ${clock.toFixed(1)} ns, counter ${counter.toFixed(2)} ns, percentile ${(p / 1000).toFixed(2)} µs`,
);
