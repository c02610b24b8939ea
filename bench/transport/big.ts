// Big messages: sequential request/reply of 64 KiB and 1 MiB payloads to one Cell, over the socket,
// over shared memory as an older client sees it (frames over a quarter of the ring take the socket)
// and over shared memory with big slots (docs/PROTOCOL.md § 3.3.2); all in the same run, the modes
// interleaved round by round so a noisy neighbour hits them alike.
//   node dist/bench/transport/big.js [--duration ms] [--repeat n]
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Synapse, unixConnector } from '../../src/synapse/index.js';
import { PingService } from './contract.js';

const args = process.argv.slice(2);
const flag = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? (args[i + 1] as string) : dflt;
};
const durationMs = Number(flag('duration', '1500'));
const repeat = Math.max(1, Number(flag('repeat', '3')));
const loadAtStart = loadavg()[0] as number;
const dir = mkdtempSync(join(tmpdir(), 'cell-bench-big-'));
const address = join(dir, 'cell.sock');

const MODES = [
  { name: 'socket', shm: false, slots: false },
  { name: 'shm, no big slots (before)', shm: true, slots: false },
  { name: 'shm, big slots', shm: true, slots: true },
] as const;
const SIZES = [64 << 10, 1 << 20];

async function startServer(): Promise<ChildProcess> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./servers.js', import.meta.url)), 'cell', address], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d) => {
      out += d;
      if (out.includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return child;
}

async function grow(shm: boolean, slots: boolean) {
  if (!slots) process.env.CELL_SHM_BIG_SLOTS = '0';
  try {
    const ex = await Synapse.grow(PingService, {
      resolvers: [
        {
          name: 'bench',
          order: 0,
          resolve: () => unixConnector(address),
        },
      ],
      shm,
    });
    if (ex.$synapse.transport?.transport !== (shm ? 'shm' : 'socket')) {
      throw new Error(`connection is on ${ex.$synapse.transport?.transport} (${ex.$synapse.transport?.shmDeclined})`);
    }
    return ex;
  } finally {
    delete process.env.CELL_SHM_BIG_SLOTS;
  }
}

/** Sequential calls for durationMs: round trips per second and the median round trip (µs). */
async function measure(call: (p: Uint8Array) => Promise<Uint8Array>, size: number) {
  const payload = new Uint8Array(size).fill(0x5a);
  payload[size - 1] = 0x66;
  for (let i = 0; i < 20; i++) await call(payload);
  const rtts: number[] = [];
  const start = performance.now();
  let now = start;
  while (now - start < durationMs) {
    const t0 = performance.now();
    const r = await call(payload);
    now = performance.now();
    if (r.length !== size || r[size - 1] !== 0x66) throw new Error('corrupted echo');
    rtts.push(now - t0);
  }
  rtts.sort((a, b) => a - b);
  return { rate: rtts.length / ((now - start) / 1000), medianUs: (rtts[rtts.length >> 1] as number) * 1000 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;

const server = await startServer();
try {
  const results = new Map<string, { rate: number[]; medianUs: number[] }>();
  for (let round = 0; round < repeat; round++) {
    for (const size of SIZES) {
      for (const m of MODES) {
        const ex = await grow(m.shm, m.slots);
        const r = await measure((p) => ex.ping(p) as Promise<Uint8Array>, size);
        await ex.$close();
        const key = `${size}/${m.name}`;
        const acc = results.get(key) ?? { rate: [], medianUs: [] };
        acc.rate.push(r.rate);
        acc.medianUs.push(r.medianUs);
        results.set(key, acc);
      }
    }
  }
  console.log(
    `Big messages, sequential request/reply, ${repeat} rounds × ${durationMs} ms per row; Linux ${release()}, load ${loadAtStart.toFixed(2)} at start`,
  );
  console.log('| payload | transport | calls/s | one way MB/s | median RTT µs | × socket (MB/s) | runs: calls/s |');
  console.log('|---|---|--:|--:|--:|--:|---|');
  for (const size of SIZES) {
    const sock = median((results.get(`${size}/socket`) as { rate: number[] }).rate);
    for (const m of MODES) {
      const r = results.get(`${size}/${m.name}`) as { rate: number[]; medianUs: number[] };
      const rate = median(r.rate);
      console.log(
        `| ${size >> 10} KiB | ${m.name} | ${rate.toFixed(0)} | ${((rate * size) / 1e6).toFixed(0)} | ${median(r.medianUs).toFixed(0)} | ${(rate / sock).toFixed(2)} | ${r.rate.map((x) => x.toFixed(0)).join(', ')} |`,
      );
    }
  }
} finally {
  server.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
