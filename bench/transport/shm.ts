// Shared-memory transport benchmark: sequential ping (median, p99, msgs/s) and pipelined throughput
// over shm, beside the same link on its Unix socket and a raw framed socket echo (the floor), plus a C
// reference (two processes spinning on a shared ring: the machine's physical limit) and the CPU an idle
// upgraded connection costs. Run: node dist/bench/transport/shm.js   (BENCH_SECONDS, IDLE_SECONDS)
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { cpus, release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { ShmClient } from '../../test/support/shm-link.js';

const here = dirname(fileURLToPath(import.meta.url));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const IDLE_SECONDS = Number(process.env.IDLE_SECONDS ?? 10);
const PAYLOAD = Buffer.alloc(16, 7);
const WINDOW = 256;

export interface Row {
  name: string;
  medianUs?: number;
  p99Us?: number;
  perSec: number;
}

function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] as number;
}

async function sequential(name: string, call: () => Promise<unknown>): Promise<Row> {
  const warmEnd = performance.now() + 300;
  while (performance.now() < warmEnd) await call();
  const samples = new Float64Array(20_000_000);
  let n = 0;
  const start = performance.now();
  const end = start + SECONDS * 1000;
  let t0 = start;
  for (;;) {
    await call();
    const t1 = performance.now();
    samples[n++] = t1 - t0;
    t0 = t1;
    if (t1 >= end || n === samples.length) break;
  }
  const sorted = samples.subarray(0, n).sort();
  return {
    name,
    medianUs: quantile(sorted, 0.5) * 1000,
    p99Us: quantile(sorted, 0.99) * 1000,
    perSec: n / ((t0 - start) / 1000),
  };
}

async function pipelined(name: string, call: () => Promise<unknown>): Promise<Row> {
  let done = 0;
  const run = async (ms: number) => {
    const end = performance.now() + ms;
    const inflight: Promise<unknown>[] = [];
    while (performance.now() < end) {
      for (let i = 0; i < WINDOW; i++) inflight.push(call());
      await Promise.all(inflight);
      done += inflight.length;
      inflight.length = 0;
    }
  };
  await run(300);
  done = 0;
  const start = performance.now();
  await run(SECONDS * 1000);
  return { name, perSec: done / ((performance.now() - start) / 1000) };
}

/** A raw client for the floor: same framing, one outstanding request, no request table. */
async function rawClient(path: string): Promise<{ call: () => Promise<unknown>; socket: Socket }> {
  const socket = createConnection(path);
  await new Promise((r) => socket.once('connect', r));
  socket.setNoDelay(true);
  const frame = Buffer.alloc(13 + PAYLOAD.length);
  frame.writeUInt32LE(9 + PAYLOAD.length, 0);
  frame[4] = 1;
  const want = frame.length;
  let got = 0;
  const waiters: Array<() => void> = [];
  socket.on('data', (chunk: Buffer) => {
    got += chunk.length;
    while (got >= want && waiters.length > 0) {
      got -= want;
      (waiters.shift() as () => void)();
    }
  });
  return {
    socket,
    call: () =>
      new Promise<void>((resolve) => {
        waiters.push(resolve);
        socket.write(frame);
      }),
  };
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime (fields 14, 15)
}

function cReference(dir: string): Row[] {
  const src = join(here, 'c-ring-reference.c');
  const bin = join(dir, 'c-ring-reference');
  const cc = spawnSync('cc', ['-O2', '-o', bin, src], { encoding: 'utf8' });
  if (cc.status !== 0) {
    console.error(`C reference not built: ${cc.stderr || cc.error?.message}`);
    return [];
  }
  const r = spawnSync(bin, [String(SECONDS)], { encoding: 'utf8' });
  const j = JSON.parse(r.stdout) as { medianNs: number; p99Ns: number; seqPerSec: number; pipelinedPerSec: number };
  return [
    {
      name: 'C reference, spinning ring (sequential)',
      medianUs: j.medianNs / 1000,
      p99Us: j.p99Ns / 1000,
      perSec: j.seqPerSec,
    },
    { name: 'C reference, spinning ring (pipelined)', perSec: j.pipelinedPerSec },
  ];
}

export async function runShmBench(): Promise<{
  rows: Row[];
  idle: { serverPct: number; clientPct: number; seconds: number };
}> {
  const dir = mkdtempSync(join(tmpdir(), 'cell-shm-bench-'));
  const env = { ...process.env, CELL_HOME: dir };
  process.env.CELL_HOME = dir;
  const linkPath = join(dir, 'link.sock');
  const rawPath = join(dir, 'raw.sock');
  const child = spawn(process.execPath, [join(here, 'shm-echo-server.js'), linkPath, rawPath], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout?.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`echo server exited with ${code}`)));
    });
    const rows: Row[] = [];
    const shm = await ShmClient.connect(linkPath);
    if (shm.transport !== 'shm') throw new Error(`shm upgrade failed: ${shm.shmDeclined}`);
    const uds = await ShmClient.connect(linkPath, { shm: 'off' });
    const raw = await rawClient(rawPath);
    rows.push(await sequential('shm (sequential)', () => shm.call(1, PAYLOAD)));
    rows.push(await sequential('same link over UDS (sequential)', () => uds.call(1, PAYLOAD)));
    rows.push(await sequential('raw UDS echo floor (sequential)', raw.call));
    rows.push(await pipelined(`shm (pipelined, window ${WINDOW})`, () => shm.call(1, PAYLOAD)));
    rows.push(await pipelined(`same link over UDS (pipelined, window ${WINDOW})`, () => uds.call(1, PAYLOAD)));
    uds.close();
    raw.socket.destroy();
    rows.push(...cReference(dir));

    // Idle: the shm connection stays open and quiet; both processes should sleep.
    await new Promise((r) => setTimeout(r, 200));
    const hz = 100;
    const s0 = cpuTicks(child.pid as number);
    const c0 = cpuTicks(process.pid);
    await new Promise((r) => setTimeout(r, IDLE_SECONDS * 1000));
    const serverPct = ((cpuTicks(child.pid as number) - s0) / hz / IDLE_SECONDS) * 100;
    const clientPct = ((cpuTicks(process.pid) - c0) / hz / IDLE_SECONDS) * 100;
    await shm.call(1, PAYLOAD); // still alive after sleeping
    shm.close();
    return { rows, idle: { serverPct, clientPct, seconds: IDLE_SECONDS } };
  } finally {
    child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

export function printRows(rows: Row[]): void {
  const f = (n: number | undefined, d = 2) => (n === undefined ? '' : n.toFixed(d));
  console.log('| transport | median µs | p99 µs | msgs/s |');
  console.log('|---|---:|---:|---:|');
  for (const r of rows)
    console.log(`| ${r.name} | ${f(r.medianUs)} | ${f(r.p99Us)} | ${Math.round(r.perSec).toLocaleString('en-US')} |`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(
    `CPU: ${cpus()[0]?.model} ×${cpus().length}; kernel ${release()}; node ${process.version}; ${SECONDS} s per row`,
  );
  const { rows, idle } = await runShmBench();
  printRows(rows);
  const get = (name: string) => rows.find((r) => r.name.startsWith(name));
  const shmSeq = get('shm (sequential)');
  const udsSeq = get('same link over UDS (sequential)');
  const floor = get('raw UDS echo floor');
  const cref = get('C reference, spinning ring (sequential)');
  if (shmSeq && udsSeq && floor) {
    console.log(
      `shm vs UDS: median ×${((udsSeq.medianUs as number) / (shmSeq.medianUs as number)).toFixed(1)} faster, ` +
        `vs raw UDS floor ×${((floor.medianUs as number) / (shmSeq.medianUs as number)).toFixed(1)}` +
        (cref
          ? `; C reference is ×${((shmSeq.medianUs as number) / (cref.medianUs as number)).toFixed(1)} faster than shm`
          : ''),
    );
  }
  console.log(
    `idle upgraded connection over ${idle.seconds} s: server ${idle.serverPct.toFixed(2)} % CPU, client ${idle.clientPct.toFixed(2)} % CPU`,
  );
}
