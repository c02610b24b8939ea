// Consensus benchmark: commits/s and commit latency for a 3-node Raft group of local processes
// (examples/kv nodes, each with its own WAL on the same disk), at 1, 16 and 256 concurrent proposers.
//   node dist/bench/consensus/index.js [--duration seconds] [--rounds n] [--levels 1,16,256]
//     [--paths in-leader,client] [--verbose] [--json]
// Two paths are measured: proposers inside the leader process (RaftNode.propose: consensus alone),
// and clients in this process calling `put` over Cell (a Synapse call per write). When the etcd
// server is installed (Debian package etcd-server), a 3-member etcd cluster on the same disk runs in
// the same run as a peer, driven through its HTTP/JSON gateway (PUT to the leader).
// BENCH_NODE_FLAGS adds node flags to the Cell node processes; BENCH_NO_ETCD=1 skips the peer.
// --paths in-leader measures consensus alone (no client connections, so the nodes' CPU and system
// calls are those of replication only).
// CPU/commit: user + system time of the three server processes (all threads, from /proc) per commit.
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KvClient } from '../../examples/kv/client.js';
import { Kv } from '../../examples/kv/contract.js';
import { Synapse } from '../../src/index.js';

const args = process.argv.slice(2);
const flag = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? (args[i + 1] ?? def) : def;
};
const DURATION_MS = Number(flag('duration', '3')) * 1000;
const JSON_OUT = args.includes('--json');
const ROUNDS = Number(flag('rounds', '3'));
const VERBOSE = args.includes('--verbose');
const LEVELS = flag('levels', '1,16,256').split(',').map(Number);
const PATHS = flag('paths', 'in-leader,client').split(',');
/** The levels to measure on a Cell path ('in-leader' or 'client'): none when --paths leaves it out. */
const levelsOf = (path: string): number[] => (PATHS.includes(path) ? LEVELS : []);
const VALUE_BYTES = 64;
/** Extra flags for the node processes (e.g. GC tuning), space-separated. */
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean);
const NODE = fileURLToPath(new URL('../../examples/kv/node.js', import.meta.url));
const ETCD = '/usr/bin/etcd';

interface Row {
  system: string;
  path: string;
  proposers: number;
  commitsPerS: number;
  p50ms: number;
  p99ms: number;
  /** fdatasyncs per commit: on the leader, and summed over the three nodes. */
  leaderFsyncsPerCommit: number;
  clusterFsyncsPerCommit: number;
  /** CPU time (user + system) of the three server processes per commit, µs: on a shared machine the
   * latency moves with the neighbours' load, the work per commit much less. */
  cpuUsPerCommit: number;
}

const rows: Row[] = [];
const children: ChildProcess[] = [];
const root = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'cell-bench-consensus-'));
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

/** BENCH_NODE_LOG=dir: each server's output also goes to dir/<n>.log (with BENCH_NODE_FLAGS=--trace-gc, say). */
const NODE_LOG = process.env.BENCH_NODE_LOG;

function spawnReady(cmd: string, argv: string[], env: NodeJS.ProcessEnv, ready: RegExp): Promise<ChildProcess> {
  const child = spawn(cmd, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const log = NODE_LOG ? createWriteStream(join(NODE_LOG, `${children.length}.log`)) : null;
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${cmd} not ready in 20 s:\n${out.slice(-2000)}`)), 20_000);
    let started = false;
    const on = (d: Buffer) => {
      log?.write(d);
      // Only the tail is kept once started: a long run's output is not held in memory.
      out = started ? (out + d).slice(-2000) : out + d;
      if (!started && ready.test(out)) {
        started = true;
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout?.on('data', on);
    child.stderr?.on('data', on);
    child.on('exit', (code) => reject(new Error(`${cmd} exited ${code}:\n${out.slice(-2000)}`)));
  });
}

/** CPU time (user + system, all threads) the processes used so far, in ms (Linux, USER_HZ = 100). */
function cpuMs(procs: readonly ChildProcess[]): number {
  let ticks = 0;
  for (const p of procs) {
    const f = readFileSync(`/proc/${p.pid}/stat`, 'utf8').split(') ')[1].split(' ');
    ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks * 10;
}

function quantiles(lat: number[]): { p50: number; p99: number } {
  lat.sort((a, b) => a - b);
  const q = (p: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : 0);
  return { p50: q(0.5), p99: q(0.99) };
}

/** Runs `n` workers calling `op` until the deadline; returns commits/s and latency quantiles (ms). */
async function drive(n: number, op: (w: number, i: number) => Promise<void>) {
  const lat: number[] = [];
  const t0 = performance.now();
  const end = t0 + DURATION_MS;
  let errors = 0;
  await Promise.all(
    Array.from({ length: n }, async (_, w) => {
      for (let i = 0; performance.now() < end; i++) {
        const s = performance.now();
        try {
          await op(w, i);
          lat.push(performance.now() - s);
        } catch {
          errors++;
          if (errors > 100) throw new Error('too many failed writes');
        }
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  return { commits: lat.length, rate: lat.length / secs, ...quantiles(lat) };
}

type Measure = () => Promise<void>;

async function setupCell(): Promise<{ measures: Measure[]; stop: () => Promise<void> }> {
  const env = { ...process.env, CELL_SOCKET_DIR: join(root, 's'), CELL_HOME: join(root, 'h') };
  process.env.CELL_SOCKET_DIR = env.CELL_SOCKET_DIR;
  process.env.CELL_HOME = env.CELL_HOME;
  const procs: ChildProcess[] = [];
  for (const id of [1, 2, 3]) {
    procs.push(
      await spawnReady(
        process.execPath,
        [
          ...NODE_FLAGS,
          NODE,
          '--id',
          String(id),
          '--peers',
          '1,2,3',
          '--dir',
          join(root, `cell${id}`),
          '--snapshot-every',
          '200000',
        ],
        env,
        /ready/,
      ),
    );
  }
  const admin = await Promise.all([1, 2, 3].map((id) => Synapse.grow(Kv, { name: `kv-${id}`, timeoutMs: 60_000 })));
  const stats = () => Promise.all(admin.map((a) => a.stats(undefined)));
  const findLeader = async () => {
    const end = Date.now() + 10_000;
    while (Date.now() < end) {
      const s = await stats();
      const l = s.find((x) => x.leader === x.id)?.id ?? 0;
      if (l) return l;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('no leader elected in 10 s');
  };
  let leader = await findLeader();
  const measures: Measure[] = [];

  for (const n of levelsOf('in-leader'))
    measures.push(async () => {
      let before = await stats();
      let cpu0 = cpuMs(procs);
      let r = await admin[leader - 1].bench({ concurrency: n, durationMs: DURATION_MS, valueBytes: VALUE_BYTES });
      for (let retry = 0; r.status !== 0 && retry < 3; retry++) {
        // Leadership moved (a stalled process on a busy machine): measure again on the new leader.
        leader = await findLeader();
        if (!JSON_OUT) console.log(`  (leader changed during the run; measuring again on node ${leader})`);
        before = await stats();
        cpu0 = cpuMs(procs);
        r = await admin[leader - 1].bench({ concurrency: n, durationMs: DURATION_MS, valueBytes: VALUE_BYTES });
      }
      const cpu = cpuMs(procs) - cpu0;
      const after = await stats();
      if (r.status !== 0) throw new Error(`bench on leader ${leader} failed (status ${r.status})`);
      const cluster = after.reduce((s, x, i) => s + x.syncs - before[i].syncs, 0);
      rows.push({
        system: 'cell',
        path: 'in-leader propose',
        proposers: n,
        commitsPerS: r.commits / r.seconds,
        p50ms: r.p50us / 1000,
        p99ms: r.p99us / 1000,
        leaderFsyncsPerCommit: r.leaderSyncs / r.commits,
        clusterFsyncsPerCommit: cluster / r.commits,
        cpuUsPerCommit: (cpu * 1000) / r.commits,
      });
      report(rows[rows.length - 1]);
    });

  // Over the socket: the shared-memory poller costs latency when cores are oversubscribed (CONSENSUS.md).
  const client = new KvClient({
    nodes: { 1: 'kv-1', 2: 'kv-2', 3: 'kv-3' },
    deadlineMs: 30_000,
    callTimeoutMs: 30_000,
    shm: process.env.CELL_RAFT_SHM === '1',
  });
  const value = 'v'.repeat(VALUE_BYTES);
  for (const n of levelsOf('client'))
    measures.push(async () => {
      const before = await stats();
      const cpu0 = cpuMs(procs);
      const r = await drive(n, (w, i) => client.put(`c${w}-${i % 1000}`, value));
      const cpu = cpuMs(procs) - cpu0;
      const after = await stats();
      rows.push({
        system: 'cell',
        path: 'client put over Cell',
        proposers: n,
        commitsPerS: r.rate,
        p50ms: r.p50,
        p99ms: r.p99,
        leaderFsyncsPerCommit: Math.max(...after.map((x, i) => x.syncs - before[i].syncs)) / r.commits,
        clusterFsyncsPerCommit: after.reduce((s, x, i) => s + x.syncs - before[i].syncs, 0) / r.commits,
        cpuUsPerCommit: (cpu * 1000) / r.commits,
      });
      report(rows[rows.length - 1]);
    });
  const stop = async () => {
    await client.close();
    await Promise.all(admin.map((a) => a.$close()));
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => (p.exitCode === null ? new Promise((r) => p.once('exit', r)) : null)));
  };
  return { measures, stop };
}

function http(agent: Agent, port: number, path: string, body: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: 'POST', agent, headers: { 'content-type': 'application/json' } },
      (res) => {
        let out = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          out += d;
        });
        res.on('end', () =>
          res.statusCode === 200 ? resolve(out) : reject(new Error(`etcd ${path}: ${res.statusCode} ${out}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function getMetric(port: number, name: string): Promise<number> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let out = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        out += d;
      });
      res.on('end', () => {
        const m = out.match(new RegExp(`^${name} (\\S+)$`, 'm'));
        resolve(m ? Number(m[1]) : Number.NaN);
      });
    })
      .on('error', reject)
      .end();
  });
}

async function setupEtcd(): Promise<{ measures: Measure[]; stop: () => Promise<void> }> {
  const base = 20000 + (process.pid % 2000) * 10;
  const names = ['e1', 'e2', 'e3'];
  const cluster = names.map((n, i) => `${n}=http://127.0.0.1:${base + 2 * i + 1}`).join(',');
  const procs: ChildProcess[] = [];
  for (let i = 0; i < 3; i++) {
    const client = base + 2 * i;
    const peer = base + 2 * i + 1;
    procs.push(
      await spawnReady(
        ETCD,
        [
          '--name',
          names[i],
          '--data-dir',
          join(root, `etcd${i}`),
          '--listen-client-urls',
          `http://127.0.0.1:${client}`,
          '--advertise-client-urls',
          `http://127.0.0.1:${client}`,
          '--listen-peer-urls',
          `http://127.0.0.1:${peer}`,
          '--initial-advertise-peer-urls',
          `http://127.0.0.1:${peer}`,
          '--initial-cluster',
          cluster,
          '--initial-cluster-state',
          'new',
          '--initial-cluster-token',
          'cell-bench',
          '--log-level',
          'info',
        ],
        { ...process.env, ETCD_UNSUPPORTED_ARCH: process.arch === 'x64' ? '' : process.arch },
        i === 2 ? /ready to serve client requests|serving client traffic/ : /./,
      ),
    );
  }
  const agent = new Agent({ keepAlive: true, maxSockets: 512 });
  // Wait for a leader, then write to it (as etcd's own "leader only" benchmark does).
  let leaderPort = 0;
  const end = Date.now() + 20_000;
  while (!leaderPort && Date.now() < end) {
    for (let i = 0; i < 3 && !leaderPort; i++) {
      try {
        const s = JSON.parse(await http(agent, base + 2 * i, '/v3/maintenance/status', '{}'));
        if (s.leader && s.leader === s.header?.member_id) leaderPort = base + 2 * i;
      } catch {
        // not up yet
      }
    }
    if (!leaderPort) await new Promise((r) => setTimeout(r, 100));
  }
  if (!leaderPort) throw new Error('etcd elected no leader in 20 s');
  const value = Buffer.from('v'.repeat(VALUE_BYTES)).toString('base64');
  const fsyncs = async () => {
    let total = 0;
    for (let i = 0; i < 3; i++) total += await getMetric(base + 2 * i, 'etcd_disk_wal_fsync_duration_seconds_count');
    return { total, leader: await getMetric(leaderPort, 'etcd_disk_wal_fsync_duration_seconds_count') };
  };
  const measures: Measure[] = [];
  for (const n of LEVELS)
    measures.push(async () => {
      const before = await fsyncs();
      const cpu0 = cpuMs(procs);
      const r = await drive(n, (w, i) =>
        http(
          agent,
          leaderPort,
          '/v3/kv/put',
          `{"key":"${Buffer.from(`c${w}-${i % 1000}`).toString('base64')}","value":"${value}"}`,
        ).then(() => {}),
      );
      const cpu = cpuMs(procs) - cpu0;
      const after = await fsyncs();
      rows.push({
        system: 'etcd 3.4',
        path: 'HTTP/JSON put to leader',
        proposers: n,
        commitsPerS: r.rate,
        p50ms: r.p50,
        p99ms: r.p99,
        leaderFsyncsPerCommit: (after.leader - before.leader) / r.commits,
        clusterFsyncsPerCommit: (after.total - before.total) / r.commits,
        cpuUsPerCommit: (cpu * 1000) / r.commits,
      });
      report(rows[rows.length - 1]);
    });
  const stop = async () => {
    agent.destroy();
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => (p.exitCode === null ? new Promise((r) => p.once('exit', r)) : null)));
  };
  return { measures, stop };
}

function report(r: Row, force = false): void {
  if (JSON_OUT || (!force && !VERBOSE)) return;
  console.log(
    `${r.system.padEnd(9)} ${r.path.padEnd(24)} ${String(r.proposers).padStart(4)} proposers: ${Math.round(r.commitsPerS).toString().padStart(7)} commits/s  p50 ${r.p50ms.toFixed(2).padStart(6)} ms  p99 ${r.p99ms.toFixed(2).padStart(6)} ms  fsyncs/commit leader ${r.leaderFsyncsPerCommit.toFixed(3)} cluster ${r.clusterFsyncsPerCommit.toFixed(3)}  CPU/commit ${r.cpuUsPerCommit.toFixed(1).padStart(6)} µs`,
  );
}

const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? cpus()[0]?.model;
if (!JSON_OUT) {
  console.log(`consensus bench: 3 local nodes, ${VALUE_BYTES}-byte values, ${DURATION_MS / 1000} s per point`);
  console.log(
    `machine: ${cpu}, ${cpus().length} cores, kernel ${release()}, node ${process.version}; data under ${root}`,
  );
}
const cell = await setupCell();
const etcd = existsSync(ETCD) && !process.env.BENCH_NO_ETCD ? await setupEtcd() : null;
if (!etcd && !JSON_OUT)
  console.log(
    `etcd peer skipped: ${process.env.BENCH_NO_ETCD ? 'BENCH_NO_ETCD is set' : `${ETCD} not installed (Debian package etcd-server)`}`,
  );
// Rounds interleave the systems so a noisy neighbour hits both alike; the summary takes medians.
for (let round = 1; round <= ROUNDS; round++) {
  if (!JSON_OUT) console.log(`-- round ${round}/${ROUNDS}`);
  for (const m of cell.measures) await m();
  if (etcd) for (const m of etcd.measures) await m();
}
await cell.stop();
await etcd?.stop();

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
};
const summary: Row[] = [];
for (const key of [...new Set(rows.map((r) => `${r.system}|${r.path}|${r.proposers}`))]) {
  const rs = rows.filter((r) => `${r.system}|${r.path}|${r.proposers}` === key);
  summary.push({
    system: rs[0].system,
    path: rs[0].path,
    proposers: rs[0].proposers,
    commitsPerS: median(rs.map((r) => r.commitsPerS)),
    p50ms: median(rs.map((r) => r.p50ms)),
    p99ms: median(rs.map((r) => r.p99ms)),
    leaderFsyncsPerCommit: median(rs.map((r) => r.leaderFsyncsPerCommit)),
    clusterFsyncsPerCommit: median(rs.map((r) => r.clusterFsyncsPerCommit)),
    cpuUsPerCommit: median(rs.map((r) => r.cpuUsPerCommit)),
  });
}
if (JSON_OUT)
  console.log(
    JSON.stringify({ cpu, kernel: release(), node: process.version, rounds: ROUNDS, summary, rows }, null, 2),
  );
else {
  console.log(`\nmedians over ${ROUNDS} rounds:`);
  for (const r of summary) report(r, true);
  console.log(
    '\nratios (cell client put / etcd put, same run; p99 and CPU/commit as etcd / cell, so > 1 is better for cell):',
  );
  for (const n of LEVELS) {
    const c = summary.find((r) => r.system === 'cell' && r.path.startsWith('client') && r.proposers === n);
    const e = summary.find((r) => r.system.startsWith('etcd') && r.proposers === n);
    if (c && e)
      console.log(
        `  ${String(n).padStart(4)} proposers: throughput ×${(c.commitsPerS / e.commitsPerS).toFixed(2)}, p99 ×${(e.p99ms / c.p99ms).toFixed(2)}, CPU/commit ×${(e.cpuUsPerCommit / c.cpuUsPerCommit).toFixed(2)}`,
      );
  }
}
process.exit(0);
