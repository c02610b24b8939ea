// Axon benchmark: a cell on one network-namespace "host" called from another over the veth/bridge
// lab, against a hand-written TLS 1.3 echo with the same framing (the floor). Prints RTT median/p99
// and pipelined msgs/s for both, measured in the same run. BENCH_SECONDS (default 3) per phase.
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
  const results: Result[] = [];

  const plainServer = lab.spawn(0, PEER, ['server-plain'], env(0));
  const plainPort = (await plainServer.waitLine<{ event: string; port: number }>((m) => m.event === 'ready')).port;
  const plainClient = lab.spawn(1, PEER, ['client-plain', `${lab.address(0)}:${plainPort}`], env(1));
  results.push(
    await plainClient.waitLine<Result & { event: string }>((m) => m.event === 'result', 120_000, 'plain result'),
  );
  await plainServer.kill();

  const cellServer = lab.spawn(0, PEER, ['server-cell'], env(0));
  await cellServer.waitLine((m) => m.event === 'ready');
  const cellClient = lab.spawn(1, PEER, ['client-cell'], env(1));
  results.push(
    await cellClient.waitLine<Result & { event: string }>((m) => m.event === 'result', 120_000, 'cell result'),
  );
  await cellServer.kill();

  const membrane = lab.spawn(0, PEER, ['server-membrane'], {
    ...env(0),
    CELL_LAN: '1',
    CELL_SOCKET_DIR: join(homes[0] as string, 'run'),
  });
  await membrane.waitLine((m) => m.event === 'ready');
  const synapse = lab.spawn(1, PEER, ['client-synapse'], {
    ...env(1),
    CELL_LAN: '1',
    CELL_SOCKET_DIR: join(homes[1] as string, 'run'),
  });
  results.push(
    await synapse.waitLine<Result & { event: string }>((m) => m.event === 'result', 120_000, 'synapse result'),
  );
  await membrane.kill();

  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  console.log(
    `Axon benchmark — ${cpu}, Linux ${release()}, node ${process.version}; two namespaces over veth + bridge; 32-byte payload`,
  );
  console.log('| path | RTT median µs | RTT p99 µs | pipelined msgs/s (window) |');
  console.log('|---|---:|---:|---:|');
  for (const r of results) {
    console.log(
      `| ${r.label} | ${r.rttMedianUs.toFixed(1)} | ${r.rttP99Us.toFixed(1)} | ${Math.round(r.pipelinedPerSec).toLocaleString('en-US')} (${r.window}) |`,
    );
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
