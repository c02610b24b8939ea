// What a fresh connection costs a caller: Synapse.grow (find the socket, connect, HELLO/WELCOME —
// with the identity check of docs/PROTOCOL.md § 2.3.1 — and the shared-memory upgrade) plus the
// first call, then $close. The cell runs in its own process; the caller repeats the whole sequence
// and reports the median and p90 of the wall time, with shared memory and on the socket alone,
// interleaved, and the CPU time both processes spent per sequence (on a busy machine the wall time
// mostly measures the scheduler; the CPU time is what the sequence itself costs).
//   node dist/bench/handshake/index.js [--rounds 300]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Membrane } from '../../src/index.js';
import { t } from '../../src/protein/index.js';
import { rpc, service } from '../../src/service/index.js';
import { Synapse } from '../../src/synapse/index.js';

const Ping = service('hsbench', { ping: rpc(t.u32, t.u32) });

if (process.argv[2] === '--cell') {
  await Membrane.bind(Ping, { ping: (n) => n + 1 });
  process.stdout.write('ready\n');
} else {
  const at = process.argv.indexOf('--rounds');
  const rounds = at > 0 ? Number(process.argv[at + 1]) : 300;
  const dir = mkdtempSync(join(tmpdir(), 'cell-hs-bench-'));
  const env = { ...process.env, CELL_HOME: join(dir, 'home'), CELL_SOCKET_DIR: join(dir, 'run'), CELL_LAN: '0' };
  Object.assign(process.env, env);
  delete process.env.CELL_UMBILICAL;
  const cell = spawn(process.execPath, [fileURLToPath(import.meta.url), '--cell'], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    cell.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) resolve();
    });
    cell.once('exit', (code) => reject(new Error(`cell exited with ${code}`)));
  });
  const modes = [
    { name: 'grow + first call + close, shm', shm: true },
    { name: 'grow + first call + close, socket only', shm: false },
  ];
  const samples = modes.map(() => [] as number[]);
  const cpu = modes.map(() => [] as number[]);
  const cellCpu = modes.map(() => 0);
  /** The cell's user + system CPU time in µs (/proc/<pid>/stat, clock ticks of 10 ms). */
  const cellTime = () => {
    const stat = readFileSync(`/proc/${cell.pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10_000;
  };
  let transport = '';
  try {
    for (let r = -10; r < rounds; r++) {
      for (let m = 0; m < modes.length; m++) {
        const c0 = process.cpuUsage();
        const k0 = cellTime();
        const t0 = performance.now();
        const c = await Synapse.grow(Ping, { shm: modes[m]?.shm });
        if ((await c.ping(r + 10)) !== r + 11) throw new Error('wrong answer');
        const t1 = performance.now();
        const c1 = process.cpuUsage(c0);
        const k1 = cellTime();
        if (m === 0) transport = JSON.stringify(c.$synapse.transport);
        await c.$close();
        if (r >= 0) {
          samples[m]?.push((t1 - t0) * 1000);
          cpu[m]?.push(c1.user + c1.system);
          cellCpu[m] = (cellCpu[m] ?? 0) + (k1 - k0);
        }
      }
    }
  } finally {
    cell.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
  const q = (xs: number[], p: number) =>
    [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? 0;
  console.log(`${rounds} rounds per row; transport status of the shm row: ${transport}`);
  console.log('| sequence | wall median µs | wall p90 µs | caller CPU median µs | cell CPU mean µs |');
  console.log('|---|---:|---:|---:|---:|');
  modes.forEach((m, i) => {
    const xs = samples[i] ?? [];
    const ys = cpu[i] ?? [];
    const cellMean = (cellCpu[i] ?? 0) / rounds;
    console.log(
      `| ${m.name} | ${q(xs, 0.5).toFixed(0)} | ${q(xs, 0.9).toFixed(0)} | ${q(ys, 0.5).toFixed(0)} | ${cellMean.toFixed(0)} |`,
    );
  });
}
