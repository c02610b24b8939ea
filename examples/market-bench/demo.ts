// `npm run demo`: starts the exchange cell as its own process, runs the trader through ping, batch
// and bytes modes for a few seconds each, prints the results and exits (non-zero on any integrity
// failure), stopping the exchange and removing its private socket directory.
//   node dist/examples/market-bench/demo.js [--seconds n]
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const secondsFlag = process.argv.indexOf('--seconds');
const seconds = secondsFlag >= 0 ? Number(process.argv[secondsFlag + 1]) : 3;

const ownDir = process.env.CELL_SOCKET_DIR === undefined;
const socketDir = process.env.CELL_SOCKET_DIR ?? mkdtempSync(join(tmpdir(), 'cell-demo-'));
const env = { ...process.env, CELL_SOCKET_DIR: socketDir };

interface Summary {
  mode: string;
  concurrency: number;
  window: number;
  size: number;
  calls: number;
  callsPerSecond: number;
  ordersPerSecond: number;
  megabytesPerSecond: number;
  medianUs: number;
  p99Us: number;
  integrityFailures: number;
  errors: number;
  transport: string;
}

const RUNS: Array<{ title: string; args: string[] }> = [
  { title: 'ping, 1 connection, 1 in flight (sequential round trips)', args: ['1', 'ping'] },
  { title: 'ping, 4 connections × 64 in flight (pipelined)', args: ['4', 'ping', '--window', '64'] },
  {
    title: 'ping, 1 connection × 4 runs of many(64) in flight (pipelined, a promise per run)',
    args: ['1', 'ping', '--window', '4', '--many', '64'],
  },
  { title: 'batch of 100 real orders, 2 connections × 8 in flight', args: ['2', 'batch', '100', '--window', '8'] },
  {
    title: 'bytes: 64 KiB random payloads + crc32, 2 connections × 4 in flight',
    args: ['2', 'bytes', '65536', '--window', '4'],
  },
];

let exchange: ChildProcess | null = null;

function cleanup(): void {
  if (exchange !== null && exchange.exitCode === null && exchange.signalCode === null) exchange.kill('SIGKILL');
  if (ownDir) rmSync(socketDir, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}

function startExchange(): Promise<ChildProcess> {
  const child = spawn(process.execPath, [here('./exchange.js')], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('exchange ready')) {
        process.stdout.write(out);
        resolve(child);
      }
    });
    child.once('exit', (code) => reject(new Error(`the exchange exited early with code ${code}`)));
  });
}

function runTrader(args: string[]): Promise<{ code: number | null; summary: Summary | null }> {
  const child = spawn(process.execPath, [here('./trader.js'), ...args, '--duration', String(seconds), '--json'], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let summary: Summary | null = null;
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.startsWith('SUMMARY ')) summary = JSON.parse(line.slice(8)) as Summary;
      else console.log(`  ${line}`);
      nl = buf.indexOf('\n');
    }
  });
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, summary })));
}

function fmtRate(r: number): string {
  return r >= 1e6 ? `${(r / 1e6).toFixed(2)} M` : r >= 1e3 ? `${(r / 1e3).toFixed(1)} k` : String(r);
}

const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU';
console.log(`Cell market benchmark — ${cpu}, Linux ${release()}, Node ${process.version}`);
console.log(`sockets in ${socketDir}\n`);

let ok = true;
const rows: string[] = [];
try {
  exchange = await startExchange();
  for (const run of RUNS) {
    console.log(`\n▶ ${run.title}`);
    const { code, summary } = await runTrader(run.args);
    if (code !== 0 || summary === null) {
      ok = false;
      console.log(`  ✗ trader exited with code ${code}`);
      continue;
    }
    const s = summary as Summary;
    if (s.integrityFailures > 0) ok = false;
    const extra =
      s.mode === 'batch'
        ? `${fmtRate(s.ordersPerSecond)} orders/s`
        : s.mode === 'bytes'
          ? `${s.megabytesPerSecond} MB/s`
          : 'every echo verified';
    rows.push(
      `| ${run.title} | ${s.transport} | ${fmtRate(s.callsPerSecond)} | ${extra} | ${s.medianUs} | ${s.p99Us} | ${s.integrityFailures} |`,
    );
  }
  exchange.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => exchange!.once('exit', (c) => r(c)));
  if (code !== 0) console.log(`the exchange exited with code ${code} after SIGTERM`);
} catch (err) {
  ok = false;
  console.error(`demo failed: ${(err as Error).message}`);
}

console.log('\n| run | transport | calls/s | throughput | median RTT µs | p99 RTT µs | integrity failures |');
console.log('|---|---|---:|---|---:|---:|---:|');
for (const r of rows) console.log(r);
console.log(ok ? '\nAll integrity checks passed.' : '\nFAILED: see above.');
process.exitCode = ok ? 0 : 1;
