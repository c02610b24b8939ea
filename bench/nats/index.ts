// NATS benchmark: one nats-server on loopback, and against it, in one run:
//   raw       the NATS client library alone (@nats-io/transport-node `nc.request`, a queue
//             subscription echoing the payload): the floor for anything built on that client;
//   raw-mux   the same client, as lean as it gets: one inbox subscription, publish with a reply subject,
//             replies matched by id (what Cell's carrier does, without Cell);
//   cell      a Membrane serving on NATS, a Synapse calling through the NATS resolver (a promise per call);
//   cell-many the same, the window of calls sent through `many` (four batches of a quarter of it);
//   moleculer Moleculer 0.15 with its NATS transporter (the `nats` 2.x client it requires).
// Sequential (window 1) and pipelined (windows 16 and 64); each figure is the median of interleaved
// rounds. Besides rates and round trips it reports CPU time per call of the client, the server and
// nats-server, read over the measured phase only: on a machine shared with other work, CPU per call
// is what the load disturbs least.
// Then glue.ts: Cell's own CPU per call on that path, measured in one process over a stand-in for NATS.
//   node dist/bench/nats/index.js [--duration ms] [--warmup ms] [--rounds n] [--windows 1,16,64] [--only raw,cell,…] [--glue 0]
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const flag = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? (args[i + 1] as string) : dflt;
};
const durationMs = Number(flag('duration', '2000'));
const warmupMs = Number(flag('warmup', '700'));
const rounds = Math.max(1, Number(flag('rounds', '3')));
const windows = flag('windows', '1,16,64').split(',').map(Number);
const only = flag('only', '')
  .split(',')
  .filter((s) => s !== '');

const NATS_SERVER = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find((p) =>
  existsSync(p),
);
if (NATS_SERVER === undefined) {
  console.error('bench/nats needs nats-server (apt-get install nats-server; `node scripts/setup.mjs` installs it).');
  process.exit(1);
}

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'cell-bench-nats-'));
const loadAtStart = loadavg()[0] as number;

interface Peer {
  kind: string;
  server: string;
  label: string;
}
const peers: Peer[] = [
  { kind: 'raw', server: 'raw', label: 'NATS client alone: `nc.request` (floor)' },
  { kind: 'raw-mux', server: 'raw', label: 'NATS client alone: one inbox, replies matched by id (lean floor)' },
  { kind: 'cell', server: 'cell', label: 'Cell over NATS' },
  { kind: 'cell-echo', server: 'echo-cell', label: 'Cell client → bare echo (client side alone)' },
  { kind: 'raw-mux-cell', server: 'cell', label: 'lean caller → Cell server (server side alone)' },
  { kind: 'cell-many', server: 'cell', label: 'Cell over NATS, many()' },
  { kind: 'moleculer', server: 'moleculer', label: 'Moleculer, NATS transporter' },
].filter((p) => only.length === 0 || only.includes(p.kind));

interface Run {
  rate: number;
  medianUs: number;
  p99Us: number;
  clientCpu: number;
  serverCpu: number;
  natsCpu: number;
}

/** Lines of a child's stdout, awaited one predicate at a time. */
function lines(child: ChildProcess): (pred: (l: string) => boolean, what: string, ms?: number) => Promise<string> {
  const seen: string[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout! }).on('line', (l) => {
    seen.push(l);
    for (const w of waiters) w();
  });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  let from = 0;
  return (pred, what, ms = 60_000) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; stderr: ${err}`));
      }, ms);
      const check = () => {
        for (; from < seen.length; from++) {
          const l = seen[from] as string;
          if (pred(l)) {
            from++;
            clearTimeout(timer);
            waiters.delete(check);
            resolve(l);
            return;
          }
        }
      };
      waiters.add(check);
      check();
    });
}

/** utime + stime of a process, in µs (clock ticks of 10 ms; enough over a two-second phase). */
function procCpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

async function startNats(): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(NATS_SERVER as string, ['-a', '127.0.0.1', '-p', '-1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const port = await new Promise<number>((resolve, reject) => {
    const onData = (d: Buffer) => {
      log += d.toString();
      const m = /Listening for client connections on [^\s]+:(\d+)/.exec(log);
      if (m !== null && log.includes('Server is ready')) resolve(Number(m[1]));
    };
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    proc.once('exit', () => reject(new Error(`nats-server exited:\n${log}`)));
  });
  return { proc, url: `nats://127.0.0.1:${port}` };
}

async function measure(peer: Peer, window: number, natsPid: number, url: string): Promise<Run> {
  const server = spawn(process.execPath, [here('./server.js'), peer.server, url, dir], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const serverLine = lines(server);
  try {
    await serverLine((l) => l === 'ready', `${peer.kind} server`);
    const client = spawn(
      process.execPath,
      [here('./client.js'), peer.kind, url, String(window), String(durationMs), String(warmupMs)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const clientLine = lines(client);
    await clientLine((l) => l.includes('"measuring"'), `${peer.kind} warm-up`);
    server.stdin?.write('cpu\n');
    const natsAtStart = procCpuUs(natsPid);
    const serverAtStart = (JSON.parse(await serverLine((l) => l.includes('cpuUs'), 'server cpu')) as { cpuUs: number })
      .cpuUs;
    const result = JSON.parse(
      await clientLine((l) => l.includes('"result"'), `${peer.kind} result`, durationMs * 5 + 60_000),
    ) as {
      calls: number;
      rate: number;
      medianUs: number;
      p99Us: number;
      clientCpuUs: number;
    };
    const natsAtEnd = procCpuUs(natsPid);
    server.stdin?.write('cpu\n');
    const serverAtEnd = (JSON.parse(await serverLine((l) => l.includes('cpuUs'), 'server cpu')) as { cpuUs: number })
      .cpuUs;
    const calls = Math.max(1, result.calls);
    return {
      rate: result.rate,
      medianUs: result.medianUs,
      p99Us: result.p99Us,
      clientCpu: result.clientCpuUs / calls,
      serverCpu: (serverAtEnd - serverAtStart) / calls,
      natsCpu: (natsAtEnd - natsAtStart) / calls,
    };
  } finally {
    server.kill('SIGTERM');
    await new Promise((r) => {
      if (server.exitCode !== null) r(null);
      else server.once('exit', r);
    });
  }
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] as number;

const nats = await startNats();
try {
  const runs = new Map<string, Run[]>();
  const key = (p: Peer, w: number) => `${p.kind}/${w}`;
  for (let round = 0; round < rounds; round++) {
    for (const w of windows) {
      for (const p of peers) {
        if (p.kind === 'cell-many' && w < 16) continue; // many() needs a window to fill
        const r = await measure(p, w, nats.proc.pid as number, nats.url);
        const list = runs.get(key(p, w)) ?? [];
        list.push(r);
        runs.set(key(p, w), list);
        process.stderr.write(
          `  round ${round + 1} ${p.kind} w=${w}: ${Math.round(r.rate)}/s median ${r.medianUs.toFixed(0)} µs\n`,
        );
      }
    }
  }
  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  const cores = readFileSync('/proc/cpuinfo', 'utf8').match(/^processor/gm)?.length ?? 0;
  const version = /version (\S+)/.exec(readFileSync('/proc/version', 'utf8'))?.[1] ?? release();
  console.log(
    `NATS benchmark — ${cpu} (${cores} cores), Linux ${version}, node ${process.version}, one nats-server on loopback; 32-byte payload; ${durationMs} ms per run after ${warmupMs} ms warm-up; median of ${rounds} interleaved rounds; 1-min load average ${loadAtStart.toFixed(1)} at start, ${(loadavg()[0] as number).toFixed(1)} at end`,
  );
  const agg = (p: Peer, w: number): Run | null => {
    const rs = runs.get(key(p, w));
    if (rs === undefined) return null;
    return {
      rate: median(rs.map((r) => r.rate)),
      medianUs: median(rs.map((r) => r.medianUs)),
      p99Us: median(rs.map((r) => r.p99Us)),
      clientCpu: median(rs.map((r) => r.clientCpu)),
      serverCpu: median(rs.map((r) => r.serverCpu)),
      natsCpu: median(rs.map((r) => r.natsCpu)),
    };
  };
  console.log('| path | window | calls/s | RTT median µs | RTT p99 µs | CPU µs/call client + server + nats-server |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const w of windows) {
    for (const p of peers) {
      const r = agg(p, w);
      if (r === null) continue;
      const total = r.clientCpu + r.serverCpu + r.natsCpu;
      console.log(
        `| ${p.label} | ${w} | ${Math.round(r.rate).toLocaleString('en-US')} | ${r.medianUs.toFixed(0)} | ${r.p99Us.toFixed(0)} | ${r.clientCpu.toFixed(1)} + ${r.serverCpu.toFixed(1)} + ${r.natsCpu.toFixed(1)} = ${total.toFixed(1)} |`,
      );
    }
  }
  const find = (kind: string) => peers.find((p) => p.kind === kind);
  const floors = [find('raw'), find('raw-mux')].filter((p): p is Peer => p !== undefined);
  const mol = find('moleculer');
  for (const kind of ['cell', 'cell-many']) {
    const c = find(kind);
    if (c === undefined) continue;
    for (const w of windows) {
      if (kind === 'cell-many' && w === 1) continue;
      const cell = agg(c, w) as Run;
      const parts: string[] = [];
      const cpu = (r: Run) => r.clientCpu + r.serverCpu;
      for (const f of floors) {
        const r = agg(f, w) as Run;
        parts.push(
          `vs ${f.kind}: calls/s ${(cell.rate / r.rate).toFixed(2)}×, RTT median ${(r.medianUs / cell.medianUs).toFixed(2)}× (target ≥ 0.9), client+server CPU/call ${(cpu(r) / cpu(cell)).toFixed(2)}×`,
        );
      }
      if (mol !== undefined) {
        const m = agg(mol, w) as Run;
        parts.push(
          `vs Moleculer: calls/s ${(cell.rate / m.rate).toFixed(2)}×, RTT median ${(m.medianUs / cell.medianUs).toFixed(2)}× (target ≥ 3), client+server CPU/call ${(cpu(m) / cpu(cell)).toFixed(2)}×`,
        );
      }
      console.log(`${c.label}, window ${w} — ${parts.join('; ')}`);
    }
  }
  await glue();
} finally {
  nats.proc.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}

/** Cell's own CPU per call on the NATS path, over a stand-in connection in one process (glue.ts). */
async function glue(): Promise<void> {
  if (flag('glue', '1') === '0') return;
  const variants = ['floor', 'cell-client', 'cell-server', 'cell'];
  const results = new Map<string, Array<{ rate: number; cpuUs: number }>>();
  for (let round = 0; round < Math.max(3, rounds); round++) {
    for (const w of [1, 64]) {
      for (const v of variants) {
        const out = await new Promise<string>((resolve, reject) => {
          const child = spawn(process.execPath, [here('./glue.js'), v, String(w), String(w === 1 ? 30_000 : 100_000)], {
            stdio: ['ignore', 'pipe', 'inherit'],
          });
          let text = '';
          child.stdout?.on('data', (d: Buffer) => {
            text += d.toString();
          });
          child.once('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`glue ${v} exited ${code}`))));
        });
        const r = JSON.parse(out) as { rate: number; cpuUs: number };
        const k = `${v}/${w}`;
        results.set(k, [...(results.get(k) ?? []), r]);
      }
    }
  }
  console.log(
    '\nCell on the NATS path without NATS (one process, a stand-in connection; glue.ts): CPU per call, median of the rounds',
  );
  console.log('| variant | window | calls/s | CPU µs/call | Cell adds µs/call |');
  console.log('|---|---:|---:|---:|---:|');
  for (const w of [1, 64]) {
    const floorCpu = median((results.get(`floor/${w}`) ?? []).map((r) => r.cpuUs));
    for (const v of variants) {
      const rs = results.get(`${v}/${w}`) ?? [];
      const cpuUs = median(rs.map((r) => r.cpuUs));
      console.log(
        `| ${v} | ${w} | ${Math.round(median(rs.map((r) => r.rate))).toLocaleString('en-US')} | ${cpuUs.toFixed(2)} | ${v === 'floor' ? '' : (cpuUs - floorCpu).toFixed(2)} |`,
      );
    }
  }
}
