// One benchmark client run, in its own process:
//   node dist/bench/nats/client.js <kind> <nats url> <window> <durationMs> <warmupMs>
// Keeps <window> calls in flight for <durationMs> after a warm-up and prints {"event":"measuring"} when
// the measured phase starts, then {event:'result', kind, window, calls, seconds, rate, medianUs, p99Us,
// clientCpuUs}. Every reply is checked.
import { connect, createInbox } from '@nats-io/transport-node';
import { Synapse } from '../../src/index.js';
import { natsResolver, natsSettings } from '../../src/nats/index.js';
import { PingService } from '../transport/contract.js';

const [kind, url, windowArg, durationArg, warmupArg] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string,
];
const window = Number(windowArg);
const durationMs = Number(durationArg);
const warmupMs = Number(warmupArg);
const PAYLOAD = Buffer.from('0123456789abcdef0123456789abcdef'); // 32 bytes

const rec = { calls: 0, samples: [] as number[], measuring: false, stop: false };
/** One call in 8 is timed (two clock reads per call would count against the rate). */
const sampleMask = 7;
let elapsed = 0;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let cpuAtStart = 0;
let cpuUs = 0;
const cpuNow = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** Warm-up, then the measured phase; "measuring" tells the orchestrator to read the other processes' CPU. */
async function phases(): Promise<void> {
  await sleep(warmupMs);
  process.stdout.write(`${JSON.stringify({ event: 'measuring' })}\n`);
  cpuAtStart = cpuNow();
  rec.measuring = true;
  const t0 = performance.now();
  await sleep(durationMs);
  rec.measuring = false;
  elapsed = (performance.now() - t0) / 1000;
  cpuUs = cpuNow() - cpuAtStart;
  rec.stop = true;
}

function check(reply: unknown): void {
  const b = reply as Uint8Array;
  if (b.length !== 32 || b[0] !== 0x30 || b[31] !== 0x66) throw new Error(`${kind}: corrupted echo`);
}

async function runWindow(call: () => Promise<unknown>, verify: (reply: unknown) => void): Promise<void> {
  let seq = 0;
  const worker = async () => {
    while (!rec.stop) {
      const timed = (seq++ & sampleMask) === 0;
      const t0 = timed ? performance.now() : 0;
      verify(await call());
      if (rec.measuring) {
        rec.calls++;
        if (timed) rec.samples.push(performance.now() - t0);
      }
    }
  };
  const workers: Promise<void>[] = [];
  for (let i = 0; i < window; i++) workers.push(worker());
  await phases();
  await Promise.all(workers);
}

/**
 * The same number of calls in flight through `many`: four batches of a quarter of the window each (up
 * to 64 calls), one promise per batch, so a batch waiting for its slowest reply leaves the others going.
 */
async function runMany(many: (inputs: readonly Uint8Array[]) => Promise<Uint8Array[]>): Promise<void> {
  const size = Math.max(1, Math.min(Math.floor(window / 4), 64));
  const inputs = new Array<Uint8Array>(size).fill(PAYLOAD);
  let seq = 0;
  const worker = async () => {
    while (!rec.stop) {
      const timed = (seq++ & sampleMask) === 0;
      const t0 = timed ? performance.now() : 0;
      const replies = await many(inputs);
      for (const r of replies) check(r);
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

async function raw(): Promise<void> {
  const nc = await connect({ servers: url.replace('nats://', '') });
  await runWindow(() => nc.request('bench.raw.ping', PAYLOAD, { timeout: 30_000 }).then((m) => m.data), check);
  await nc.close();
}

/**
 * The client library alone, as lean as it gets: one subscription on an inbox wildcard, each request
 * published with its own reply subject, replies matched by id in a Map (what `nc.request` does with
 * its muxed inbox, minus its per-request timer and bookkeeping).
 */
async function rawMux(subject = 'bench.raw.ping'): Promise<void> {
  const nc = await connect({ servers: url.replace('nats://', '') });
  const inbox = `${createInbox()}.`;
  const waiting = new Map<number, (data: Uint8Array) => void>();
  nc.subscribe(`${inbox}*`, {
    callback: (_err, m) => {
      const id = +m.subject.substring(inbox.length);
      const resolve = waiting.get(id);
      if (resolve === undefined) return;
      waiting.delete(id);
      resolve(m.data);
    },
  });
  let next = 0;
  await runWindow(
    () =>
      new Promise<Uint8Array>((resolve) => {
        const id = next++;
        waiting.set(id, resolve);
        nc.publish(subject, PAYLOAD, { reply: inbox + id });
      }),
    check,
  );
  await nc.close();
}

async function cell(many: boolean): Promise<void> {
  const settings = natsSettings(url);
  const ex = await Synapse.grow(PingService, { resolvers: [natsResolver(() => settings)] });
  if (ex.$synapse.transport?.transport !== 'nats') throw new Error(`${kind}: not on NATS (${ex.$synapse.target})`);
  if (many) await runMany(ex.ping.many);
  else await runWindow(() => ex.ping(PAYLOAD), check);
  await ex.$close();
}

async function moleculer(): Promise<void> {
  const { ServiceBroker } = await import('moleculer');
  const broker = new ServiceBroker({
    nodeID: 'bench-client',
    logger: false,
    transporter: { type: 'NATS', options: { url } },
  });
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

if (kind === 'raw') await raw();
else if (kind === 'raw-mux') await rawMux();
// The lean floor's caller against a Cell server: isolates Cell's server side.
else if (kind === 'raw-mux-cell')
  await rawMux(`cell.bench.${PingService.fingerprint.toString(16).padStart(16, '0')}.ping`);
// Cell's client against a bare echo (server kind echo-cell): isolates Cell's client side.
else if (kind === 'cell-echo') await cell(false);
else if (kind === 'cell') await cell(false);
else if (kind === 'cell-many') await cell(true);
else if (kind === 'moleculer') await moleculer();
else throw new Error(`unknown client kind ${kind}`);

const sorted = rec.samples.sort((a, b) => a - b);
const q = (p: number) =>
  sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number);
process.stdout.write(
  `${JSON.stringify({ event: 'result', kind, window, calls: rec.calls, seconds: elapsed, rate: rec.calls / elapsed, medianUs: q(0.5) * 1000, p99Us: q(0.99) * 1000, clientCpuUs: cpuUs })}\n`,
);
process.exit(0);
