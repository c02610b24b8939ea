// Transport benchmark: Cell over a Unix socket against a hand-written `net` echo with the same
// framing (the floor), @grpc/grpc-js over unix:, zeromq over ipc:// and Node's child-process IPC.
// Servers and clients run in separate processes; every peer is measured in the same run.
//   node dist/bench/transport/index.js [--duration ms] [--warmup ms] [--only cell,floor,...]
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const flag = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const durationMs = Number(flag('duration', '2000'));
const warmupMs = Number(flag('warmup', '500'));
const only = flag('only', '')
  .split(',')
  .filter((s) => s !== '');

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'cell-bench-'));

interface Peer {
  kind: string;
  label: string;
  address: string;
  windows: number[];
  /** The client forks its own server (child-process IPC). */
  selfHosted?: boolean;
}

const WINDOWS = [1, 16, 256, 4096];
const peers: Peer[] = [
  { kind: 'cell', label: 'Cell (UDS)', address: join(dir, 'cell.sock'), windows: WINDOWS },
  { kind: 'floor', label: 'net echo, same framing (floor)', address: join(dir, 'floor.sock'), windows: WINDOWS },
  { kind: 'grpc', label: '@grpc/grpc-js unary (unix:)', address: join(dir, 'grpc.sock'), windows: WINDOWS },
  { kind: 'zmq-rep', label: 'zeromq REQ/REP (ipc://)', address: `ipc://${join(dir, 'zrep')}`, windows: [1] },
  {
    kind: 'zmq-router',
    label: 'zeromq DEALER/ROUTER (ipc://)',
    address: `ipc://${join(dir, 'zrouter')}`,
    windows: WINDOWS,
  },
  { kind: 'ipc', label: 'child_process IPC (JSON)', address: '', windows: WINDOWS, selfHosted: true },
];

interface Result {
  kind: string;
  window: number;
  calls: number;
  seconds: number;
  rate: number;
  medianUs: number;
  p99Us: number;
}

function startServer(p: Peer): Promise<ChildProcess> {
  const child = spawn(process.execPath, [here('./servers.js'), p.kind, p.address], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('ready')) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`${p.kind} server exited with ${code}`)));
  });
}

function runClient(p: Peer, window: number): Result {
  const r = spawnSync(
    process.execPath,
    [here('./client.js'), p.kind, p.address, String(window), String(durationMs), String(warmupMs)],
    { encoding: 'utf8', timeout: durationMs + warmupMs + 30_000 },
  );
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as Result;
  } catch {
    throw new Error(`${p.kind} window ${window} failed: ${r.stderr || r.stdout}`);
  }
}

const results = new Map<string, Result>();
const failures: string[] = [];
for (const p of peers) {
  if (only.length > 0 && !only.includes(p.kind)) continue;
  let server: ChildProcess | null = null;
  try {
    if (!p.selfHosted) server = await startServer(p);
    for (const w of p.windows) {
      const r = runClient(p, w);
      results.set(`${p.kind}/${w}`, r);
      console.error(
        `${p.label.padEnd(34)} window ${String(w).padStart(4)}: ${fmtRate(r.rate)} msg/s, median ${r.medianUs.toFixed(1)} µs, p99 ${r.p99Us.toFixed(1)} µs`,
      );
    }
  } catch (err) {
    failures.push(`${p.label}: ${(err as Error).message.split('\n')[0]}`);
    console.error(`${p.label}: failed: ${(err as Error).message}`);
  } finally {
    server?.kill('SIGTERM');
  }
}
rmSync(dir, { recursive: true, force: true });

function fmtRate(r: number): string {
  return r >= 1e6 ? `${(r / 1e6).toFixed(2)} M` : r >= 1e3 ? `${(r / 1e3).toFixed(1)} k` : r.toFixed(0);
}

const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU';
const cores = spawnSync('nproc', { encoding: 'utf8' }).stdout.trim();
console.log(`\n### Transport (${durationMs} ms per row after ${warmupMs} ms warm-up, 16-byte payloads)\n`);
console.log(`Machine: ${cpu}, ${cores} cores, Linux ${release()}, Node ${process.version}.\n`);
console.log(
  '| transport | in flight | msgs/s | median RTT µs | p99 RTT µs | Cell ÷ peer (msgs/s) | peer ÷ Cell (median RTT) |',
);
console.log('|---|---:|---:|---:|---:|---:|---:|');
for (const p of peers) {
  for (const w of p.windows) {
    const r = results.get(`${p.kind}/${w}`);
    if (r === undefined) continue;
    const c = results.get(`cell/${w}`);
    const tput = c && p.kind !== 'cell' ? (c.rate / r.rate).toFixed(2) : '';
    const lat = c && p.kind !== 'cell' ? (r.medianUs / c.medianUs).toFixed(2) : '';
    console.log(
      `| ${p.label} | ${w} | ${fmtRate(r.rate)} | ${r.medianUs.toFixed(1)} | ${r.p99Us.toFixed(1)} | ${tput} | ${lat} |`,
    );
  }
}
const cellSeq = results.get('cell/1');
const floorSeq = results.get('floor/1');
if (cellSeq && floorSeq) {
  console.log(
    `\nSequential median RTT: Cell ${cellSeq.medianUs.toFixed(1)} µs = ${(cellSeq.medianUs / floorSeq.medianUs).toFixed(2)}× the floor (${floorSeq.medianUs.toFixed(1)} µs).`,
  );
}
const best = Math.max(...WINDOWS.map((w) => results.get(`cell/${w}`)?.rate ?? 0));
console.log(`Cell's best pipelined rate: ${fmtRate(best)} msg/s.`);
if (failures.length > 0) console.log(`\nNot measured: ${failures.join('; ')}`);
