// Axon benchmark: a cell on one network-namespace "host" called from another over the veth/bridge
// lab, against a hand-written TLS 1.3 echo with the same framing (the floor). Prints RTT median/p99
// and pipelined msgs/s for each, measured in the same run. BENCH_SECONDS (default 2) per phase,
// BENCH_ROUNDS (default 3) interleaved rounds.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createJoinRequest, initMesh, installJoinBundle, signJoinRequest } from '../../src/axon/identity/index.js';
import { NetnsLab, netnsAvailable } from '../../test/integration/axon/netns.js';

interface Result {
  label: string;
  rttMedianUs: number;
  rttP99Us: number;
  rttSamples: number;
  pipelinedPerSec: number;
  window: number;
}

if (!netnsAvailable()) {
  console.error('bench/axon needs root and `ip netns` (iproute2).');
  process.exit(1);
}
const PEER = join(dirname(fileURLToPath(import.meta.url)), 'peer.js');
const dir = mkdtempSync(join(tmpdir(), 'cell-bench-axon-'));
const lab = NetnsLab.create(2);
try {
  const homes = [join(dir, 'alpha'), join(dir, 'beta')];
  await initMesh({ home: homes[0], hostName: 'alpha' });
  const req = await createJoinRequest({ home: homes[1], hostName: 'beta' });
  installJoinBundle((await signJoinRequest(req.csrPem, { home: homes[0] })).bundlePem, { home: homes[1] });
  const env = (h: number) => ({ CELL_HOME: homes[h] as string, CELL_LAN_ADDRESS: lab.address(h) });
  const runEnv = (h: number) => ({ ...env(h), CELL_LAN: '1', CELL_SOCKET_DIR: join(homes[h] as string, 'run') });

  async function plainTls(): Promise<Result> {
    const server = lab.spawn(0, PEER, ['server-plain'], env(0));
    const port = (await server.waitLine<{ event: string; port: number }>((m) => m.event === 'ready')).port;
    const client = lab.spawn(1, PEER, ['client-plain', `${lab.address(0)}:${port}`], env(1));
    const r = await client.waitLine<Result & { event: string }>((m) => m.event === 'result', 120_000, 'plain result');
    await server.kill();
    return r;
  }
  async function cellAxon(): Promise<Result> {
    const server = lab.spawn(0, PEER, ['server-cell'], env(0));
    await server.waitLine((m) => m.event === 'ready');
    const client = lab.spawn(1, PEER, ['client-cell'], env(1));
    const r = await client.waitLine<Result & { event: string }>((m) => m.event === 'result', 120_000, 'cell result');
    await server.kill();
    return r;
  }
  async function membraneSynapse(): Promise<Result> {
    const server = lab.spawn(0, PEER, ['server-membrane'], runEnv(0));
    await server.waitLine((m) => m.event === 'ready');
    const client = lab.spawn(1, PEER, ['client-synapse'], runEnv(1));
    const r = await client.waitLine<Result & { event: string }>((m) => m.event === 'result', 120_000, 'synapse result');
    await server.kill();
    return r;
  }

  // Interleaved rounds, so a burst of noise on this shared machine hits every path alike; each
  // reported figure is the median over the rounds.
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  const runs: Result[][] = [[], [], []];
  for (let round = 0; round < rounds; round++) {
    runs[0]!.push(await plainTls());
    runs[1]!.push(await cellAxon());
    runs[2]!.push(await membraneSynapse());
  }
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] as number;
  const results: Result[] = runs.map((rs) => ({
    label: (rs[0] as Result).label,
    rttMedianUs: median(rs.map((r) => r.rttMedianUs)),
    rttP99Us: median(rs.map((r) => r.rttP99Us)),
    rttSamples: rs.reduce((n, r) => n + r.rttSamples, 0),
    pipelinedPerSec: median(rs.map((r) => r.pipelinedPerSec)),
    window: (rs[0] as Result).window,
  }));

  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  console.log(
    `Axon benchmark — ${cpu}, Linux ${release()}, node ${process.version}; two namespaces over veth + bridge; 32-byte payload; median of ${rounds} interleaved rounds`,
  );
  console.log('| path | RTT median µs | RTT p99 µs | pipelined msgs/s (window) |');
  console.log('|---|---:|---:|---:|');
  for (const r of results) {
    console.log(
      `| ${r.label} | ${r.rttMedianUs.toFixed(1)} | ${r.rttP99Us.toFixed(1)} | ${Math.round(r.pipelinedPerSec).toLocaleString('en-US')} (${r.window}) |`,
    );
  }
  for (const rs of runs) {
    const each = rs.map(
      (r) => `${r.rttMedianUs.toFixed(1)}/${r.rttP99Us.toFixed(1)} µs ${Math.round(r.pipelinedPerSec / 1000)}k/s`,
    );
    console.log(`  rounds of ${(rs[0] as Result).label}: ${each.join('; ')}`);
  }
  const plain = results[0] as Result;
  for (const cell of results.slice(1)) {
    const time = (x: number, y: number) => (x / y).toFixed(2);
    console.log(
      `${cell.label} vs plain-tls (peer ÷ Cell for time, Cell ÷ peer for msgs/s): RTT median ${time(plain.rttMedianUs, cell.rttMedianUs)}, p99 ${time(plain.rttP99Us, cell.rttP99Us)}, msgs/s ${time(cell.pipelinedPerSec, plain.pipelinedPerSec)}`,
    );
  }
} finally {
  await lab.destroy();
  rmSync(dir, { recursive: true, force: true });
}
