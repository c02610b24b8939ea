// Transport benchmark: Cell over shared memory and over a Unix socket against a hand-written `net`
// echo with the same framing (the floor), @grpc/grpc-js over unix:, zeromq over ipc:// and Node's
// child-process IPC; plus a C program ping-ponging over a shared ring with both sides spinning (the
// machine's physical limit for shared memory), the same in Node on a sealed memfd in two ring
// layouts (the Node floor, node-ring-floor.ts) and the CPU an idle shm connection costs.
// Servers and clients run in separate processes; every peer is measured in the same run.
//   node dist/bench/transport/index.js [--duration ms] [--warmup ms] [--repeat n] [--only cell-shm,cell-shm-conns,cell,floor,c-ring,node-ring,...]
//                                      [--idle-seconds s] (0 skips the idle measurement)
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const flag = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const durationMs = Number(flag('duration', '2000'));
const repeat = Math.max(1, Number(flag('repeat', '3')));
const warmupMs = Number(flag('warmup', '500'));
const only = flag('only', '')
  .split(',')
  .filter((s) => s !== '');

/** The 1-minute load average at the start (the machine may be shared: it says how noisy a run was). */
const loadAtStart = loadavg()[0] as number;
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
/** `many` keeps the same number of calls in flight in batches of up to 64 (one promise per batch). */
const MANY_WINDOWS = [16, 256, 4096];
/** `cell-shm-conns`: the "in flight" column is the number of connections, each with one call in flight. */
const CONNS = [1, 4, 16, 64];
const peers: Peer[] = [
  { kind: 'cell-shm', label: 'Cell (shm)', address: join(dir, 'cell-shm.sock'), windows: WINDOWS },
  {
    kind: 'cell-shm-many',
    label: 'Cell (shm), many()',
    address: join(dir, 'cell-shm-many.sock'),
    windows: MANY_WINDOWS,
  },
  {
    kind: 'cell-shm-conns',
    label: 'Cell (shm), N connections × 1 in flight',
    address: join(dir, 'cell-shm-conns.sock'),
    windows: CONNS,
  },
  { kind: 'cell', label: 'Cell (UDS)', address: join(dir, 'cell.sock'), windows: WINDOWS },
  { kind: 'cell-many', label: 'Cell (UDS), many()', address: join(dir, 'cell-many.sock'), windows: MANY_WINDOWS },
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
  {
    kind: 'moleculer',
    label: 'Moleculer (TCP transporter, loopback)',
    // "<server port>:<client port>": Moleculer's brokerless transporter speaks TCP only.
    address: moleculerPorts(),
    windows: WINDOWS,
  },
];

/** Two free-looking loopback ports for the Moleculer nodes (random, so parallel runs don't collide). */
function moleculerPorts(): string {
  const base = 20_000 + Math.floor(Math.random() * 20_000) * 2;
  return `${base}:${base + 1}`;
}

interface Result {
  kind: string;
  window: number;
  calls: number;
  seconds: number;
  rate: number;
  medianUs: number;
  p99Us: number;
}

function startServer(p: Peer, address: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [here('./servers.js'), p.kind, address], {
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

function runClient(p: Peer, address: string, window: number): Result {
  const r = spawnSync(
    process.execPath,
    [here('./client.js'), p.kind, address, String(window), String(durationMs), String(warmupMs)],
    { encoding: 'utf8', timeout: durationMs + warmupMs + 30_000 },
  );
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as Result;
  } catch {
    const why = r.error?.message ?? (r.signal !== null ? `killed by ${r.signal}` : `exit code ${r.status}`);
    throw new Error(`window ${window} failed (${why}) ${(r.stderr || r.stdout).trim().split('\n')[0] ?? ''}`);
  }
}

const results = new Map<string, Result>();
/** Every repetition's result, by row, for the spread shown next to the medians. */
const samples = new Map<string, Result[]>();
const failures: string[] = [];

/**
 * Cell and the floor are measured `repeat` times, alternating, and each row reports the median
 * repetition: on a shared machine one unlucky window would otherwise decide the headline ratio.
 */
const repeated = (p: Peer) => p.kind.startsWith('cell') || p.kind === 'floor';
const schedule: Peer[] = [];
for (let rep = 0; rep < repeat; rep++) {
  for (const p of peers) if (repeated(p)) schedule.push(p);
}
for (const p of peers) if (!repeated(p)) schedule.push(p);

for (const [n, p] of schedule.entries()) {
  if (only.length > 0 && !only.includes(p.kind)) continue;
  let server: ChildProcess | null = null;
  // A fresh address per server: a killed peer may leave its socket file behind.
  const address = p.address === '' || p.kind === 'moleculer' ? p.address : p.address.replace(/(\.sock)?$/, `-${n}$1`);
  try {
    if (!p.selfHosted) server = await startServer(p, address);
    for (const w of p.windows) {
      try {
        const r = runClient(p, address, w);
        const key = `${p.kind}/${w}`;
        if (!samples.has(key)) samples.set(key, []);
        samples.get(key)!.push(r);
        console.error(
          `${p.label.padEnd(34)} window ${String(w).padStart(4)}: ${fmtRate(r.rate)} msg/s, median ${r.medianUs.toFixed(1)} µs, p99 ${r.p99Us.toFixed(1)} µs`,
        );
      } catch (err) {
        failures.push(`${p.label}: ${(err as Error).message}`);
        console.error(`${p.label}: ${(err as Error).message}`);
      }
    }
  } catch (err) {
    failures.push(`${p.label}: ${(err as Error).message.split('\n')[0]}`);
    console.error(`${p.label}: failed: ${(err as Error).message}`);
  } finally {
    if (server !== null) {
      const exited = new Promise((r) => server!.once('exit', r));
      server.kill('SIGTERM');
      await exited;
    }
  }
}
for (const [key, list] of samples) {
  const mid = (f: (r: Result) => number) => list.map(f).sort((a, b) => a - b)[Math.floor(list.length / 2)];
  results.set(key, {
    ...list[0],
    rate: mid((r) => r.rate),
    medianUs: mid((r) => r.medianUs),
    p99Us: mid((r) => r.p99Us),
  });
}

// The C reference: two processes, one shared ring pair, both spinning. Compiled here with cc.
interface CReference {
  medianNs: number;
  p99Ns: number;
  seqPerSec: number;
  pipelinedPerSec: number;
}
let cref: CReference | null = null;
if (only.length === 0 || only.includes('c-ring')) {
  const bin = join(dir, 'c-ring-reference');
  const cc = spawnSync('cc', ['-O2', '-o', bin, here('./c-ring-reference.c')], { encoding: 'utf8' });
  if (cc.status !== 0) failures.push(`C reference: cc failed (${(cc.stderr || cc.error?.message || '').trim()})`);
  else {
    const r = spawnSync(bin, [String(durationMs / 1000)], { encoding: 'utf8', timeout: durationMs * 3 + 30_000 });
    try {
      cref = JSON.parse(r.stdout) as CReference;
      console.error(
        `C reference, spinning shared ring       : ${fmtRate(cref.seqPerSec)} msg/s sequential, median ${(cref.medianNs / 1000).toFixed(2)} µs`,
      );
    } catch {
      failures.push(`C reference: ${r.stderr || r.stdout}`);
    }
  }
}

// The Node floor: two Node processes spinning on a sealed memfd ring, no framing, codec or promise;
// once with Cell's head/tail layout and once with records that publish themselves (CSR2).
interface NodeFloor {
  layout: string;
  medianNs: number;
  p99Ns: number;
  seqPerSec: number;
  pipelinedPerSec: number;
  /** The same with a promise per call that the caller awaits (the least an awaited call costs). */
  awaitMedianNs: number;
  awaitP99Ns: number;
  awaitSeqPerSec: number;
  awaitPipelinedPerSec: number;
}
const nodeFloors: NodeFloor[] = [];
if (only.length === 0 || only.includes('node-ring')) {
  for (const layout of ['headtail', 'commit']) {
    const r = spawnSync(process.execPath, [here('./node-ring-floor.js'), layout, String(durationMs / 1000)], {
      encoding: 'utf8',
      timeout: durationMs * 3 + 30_000,
    });
    try {
      const f = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as NodeFloor;
      nodeFloors.push(f);
      console.error(
        `Node floor (${layout.padEnd(8)}), spinning ring : ${fmtRate(f.seqPerSec)} msg/s sequential, median ${(f.medianNs / 1000).toFixed(2)} µs; ${fmtRate(f.pipelinedPerSec)} msg/s pipelined`,
      );
    } catch {
      failures.push(`Node floor (${layout}): ${(r.stderr || r.stdout || r.error?.message || '').trim()}`);
    }
  }
}

// Idle: one upgraded connection that makes no calls; both processes should sleep on their futexes.
const idleSeconds = Number(flag('idle-seconds', '10'));
let idle: { server: number; client: number } | null = null;
if (idleSeconds > 0 && (only.length === 0 || only.includes('idle'))) {
  const p = peers[0] as Peer;
  const address = p.address.replace(/(\.sock)?$/, '-idle$1');
  const server = await startServer(p, address);
  try {
    const r = spawnSync(
      process.execPath,
      [here('./idle-client.js'), address, String(idleSeconds), String(server.pid)],
      {
        encoding: 'utf8',
        timeout: idleSeconds * 1000 + 30_000,
      },
    );
    idle = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as { server: number; client: number };
    console.error(
      `idle shm connection over ${idleSeconds} s: cell ${idle.server.toFixed(2)} % CPU, caller ${idle.client.toFixed(2)} % CPU`,
    );
  } catch (err) {
    failures.push(`idle CPU: ${(err as Error).message}`);
  } finally {
    server.kill('SIGTERM');
  }
}
rmSync(dir, { recursive: true, force: true });

function fmtRate(r: number): string {
  return r >= 1e6 ? `${(r / 1e6).toFixed(2)} M` : r >= 1e3 ? `${(r / 1e3).toFixed(1)} k` : r.toFixed(0);
}

const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU';
const cores = spawnSync('nproc', { encoding: 'utf8' }).stdout.trim();
console.log(
  `\n### Transport (${durationMs} ms per row after ${warmupMs} ms warm-up, 16-byte payloads; Cell and floor: median of ${repeat} alternating runs)\n`,
);
console.log(
  `Machine: ${cpu}, ${cores} cores, Linux ${release()}, Node ${process.version}; load average (1 min) ${loadAtStart.toFixed(2)} at the start, ${(loadavg()[0] as number).toFixed(2)} at the end.\n`,
);
console.log(
  '| transport | in flight | msgs/s | median RTT µs | p99 RTT µs | Cell ÷ peer (msgs/s) | peer ÷ Cell (median RTT) | runs: msgs/s range |',
);
console.log('|---|---:|---:|---:|---:|---:|---:|---|');
for (const p of peers) {
  for (const w of p.windows) {
    const r = results.get(`${p.kind}/${w}`);
    if (r === undefined) continue;
    // Peers are compared with Cell over the same kind of carrier: the socket. Cell's other rows (shm,
    // many) are compared with Cell's socket row (how much the rings or the shared promise gain).
    const c = results.get(`cell/${w}`);
    const vsShm = p.kind.startsWith('cell-');
    const tput = c && p.kind !== 'cell' ? (vsShm ? r.rate / c.rate : c.rate / r.rate).toFixed(2) : '';
    const lat = c && p.kind !== 'cell' ? (vsShm ? c.medianUs / r.medianUs : r.medianUs / c.medianUs).toFixed(2) : '';
    const runs = samples.get(`${p.kind}/${w}`) ?? [];
    const rates = runs.map((x) => x.rate).sort((a, b) => a - b);
    const spread = runs.length > 1 ? `${runs.length}: ${fmtRate(rates[0])}–${fmtRate(rates[rates.length - 1])}` : '1';
    console.log(
      `| ${p.label} | ${w} | ${fmtRate(r.rate)} | ${r.medianUs.toFixed(1)} | ${r.p99Us.toFixed(1)} | ${tput} | ${lat} | ${spread} |`,
    );
  }
}
if (cref !== null) {
  console.log(
    `| C reference: 2 processes spinning on a shared ring (physical limit) | 1 | ${fmtRate(cref.seqPerSec)} | ${(cref.medianNs / 1000).toFixed(2)} | ${(cref.p99Ns / 1000).toFixed(2)} | | |`,
  );
  console.log(`| C reference (pipelined) | 512 | ${fmtRate(cref.pipelinedPerSec)} | | | | |`);
}
const floorLabel: Record<string, string> = {
  headtail: 'Node floor: 2 Node processes spinning on a sealed memfd ring, head/tail layout (CSR1)',
  commit: 'Node floor: the same, records publish themselves (one line per direction, CSR2)',
};
for (const f of nodeFloors) {
  const label = floorLabel[f.layout] ?? f.layout;
  console.log(
    `| ${label} | 1 | ${fmtRate(f.seqPerSec)} | ${(f.medianNs / 1000).toFixed(2)} | ${(f.p99Ns / 1000).toFixed(2)} | | |`,
  );
  console.log(`| ${label} (pipelined) | 256 | ${fmtRate(f.pipelinedPerSec)} | | | | |`);
  console.log(
    `| ${label}, an awaited promise per call | 1 | ${fmtRate(f.awaitSeqPerSec)} | ${(f.awaitMedianNs / 1000).toFixed(2)} | ${(f.awaitP99Ns / 1000).toFixed(2)} | | |`,
  );
  console.log(
    `| ${label}, an awaited promise per call (pipelined) | 256 | ${fmtRate(f.awaitPipelinedPerSec)} | | | | |`,
  );
}
console.log(
  '\nRatios: peers vs Cell (UDS); the other Cell rows (shm, many()) vs Cell (UDS) — > 1 means the first is better.',
);
const shmSeq = results.get('cell-shm/1');
if (shmSeq && cref !== null) {
  console.log(
    `Shared memory, sequential: median ${shmSeq.medianUs.toFixed(2)} µs, p99 ${shmSeq.p99Us.toFixed(2)} µs, ${fmtRate(shmSeq.rate)} msg/s; the C spinning reference is ${(shmSeq.medianUs / (cref.medianNs / 1000)).toFixed(1)}× faster (median).`,
  );
}
if (nodeFloors.length > 0) {
  // Cell ÷ Node floor ÷ C ring: how far Cell is from what JavaScript can do, and JavaScript from C.
  const fastest = nodeFloors.reduce((a, b) => (b.medianNs < a.medianNs ? b : a));
  const fastestPipe = nodeFloors.reduce((a, b) => (b.pipelinedPerSec > a.pipelinedPerSec ? b : a));
  const cNs = cref?.medianNs;
  if (shmSeq) {
    console.log(
      `Shared memory, sequential median: Cell ${shmSeq.medianUs.toFixed(2)} µs ÷ Node floor (${fastest.layout}) ${(fastest.medianNs / 1000).toFixed(2)} µs = ${(shmSeq.medianUs / (fastest.medianNs / 1000)).toFixed(2)}× (target ≤ 1.5×)` +
        (cNs === undefined
          ? ''
          : `; Node floor ÷ C ring ${(cNs / 1000).toFixed(2)} µs = ${(fastest.medianNs / cNs).toFixed(2)}×; Cell ÷ C ring = ${(shmSeq.medianUs / (cNs / 1000)).toFixed(2)}×`) +
        `; Cell p99 ÷ median = ${(shmSeq.p99Us / shmSeq.medianUs).toFixed(2)} (target ≤ 3).`,
    );
    const awaitedFloor = nodeFloors.reduce((a, b) => (b.awaitMedianNs < a.awaitMedianNs ? b : a));
    console.log(
      `Shared memory, sequential median against the floor with an awaited promise per call (${awaitedFloor.layout}, ${(awaitedFloor.awaitMedianNs / 1000).toFixed(2)} µs): Cell = ${(shmSeq.medianUs / (awaitedFloor.awaitMedianNs / 1000)).toFixed(2)}×.`,
    );
  }
  const pick = (kind: string) => Math.max(...[16, 256, 4096].map((w) => results.get(`${kind}/${w}`)?.rate ?? 0));
  const many = pick('cell-shm-many');
  const promise = pick('cell-shm');
  console.log(
    `Shared memory, pipelined: Node floor (${fastestPipe.layout}) ${fmtRate(fastestPipe.pipelinedPerSec)} msg/s; Cell many() ${fmtRate(many)} = ${(many / fastestPipe.pipelinedPerSec).toFixed(2)}× (target ≥ 0.4×), a promise per call ${fmtRate(promise)} = ${(promise / fastestPipe.pipelinedPerSec).toFixed(2)}× (target ≥ 0.25×)` +
      (cref === null ? '.' : `; C ring ${fmtRate(cref.pipelinedPerSec)}.`),
  );
  const awaitedPipe = nodeFloors.reduce((a, b) => (b.awaitPipelinedPerSec > a.awaitPipelinedPerSec ? b : a));
  console.log(
    `Shared memory, pipelined against the floor with an awaited promise per call (${awaitedPipe.layout}, ${fmtRate(awaitedPipe.awaitPipelinedPerSec)} msg/s, ${(awaitedPipe.awaitPipelinedPerSec / fastestPipe.pipelinedPerSec).toFixed(2)}× of the floor without): Cell, a promise per call = ${(promise / awaitedPipe.awaitPipelinedPerSec).toFixed(2)}×; many() = ${(many / awaitedPipe.awaitPipelinedPerSec).toFixed(2)}×.`,
  );
}
const c4 = results.get('cell-shm-conns/4');
const c64 = results.get('cell-shm-conns/64');
if (c4 && c64) {
  console.log(
    `Shared memory, connections × 1 in flight: 64 → ${fmtRate(c64.rate)} msg/s = ${(c64.rate / c4.rate).toFixed(2)}× of 4 (${fmtRate(c4.rate)}; target ≥ 0.8×), p99 at 64 ${c64.p99Us.toFixed(1)} µs (target ≤ 200 µs).`,
  );
}
if (idle !== null) {
  console.log(
    `Idle shm connection over ${idleSeconds} s (/proc/<pid>/stat utime+stime): cell ${idle.server.toFixed(2)} % CPU, caller ${idle.client.toFixed(2)} % CPU.`,
  );
}
const cellSeq = results.get('cell/1');
const floorSeq = results.get('floor/1');
if (cellSeq && floorSeq) {
  console.log(
    `\nSequential median RTT: Cell ${cellSeq.medianUs.toFixed(1)} µs = ${(cellSeq.medianUs / floorSeq.medianUs).toFixed(2)}× the floor (${floorSeq.medianUs.toFixed(1)} µs).`,
  );
}
const bestOf = (kind: string) => Math.max(...WINDOWS.map((w) => results.get(`${kind}/${w}`)?.rate ?? 0));
console.log(`Cell's best pipelined rate over the socket: ${fmtRate(bestOf('cell'))} msg/s.`);
console.log(
  `Pipelined over shared memory (target ≥ 5 M msg/s): a promise per call ${fmtRate(bestOf('cell-shm'))} msg/s; many() ${fmtRate(bestOf('cell-shm-many'))} msg/s.`,
);
if (failures.length > 0) console.log(`\nNot measured: ${failures.join('; ')}`);
