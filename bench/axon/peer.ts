// One side of the Axon benchmark, run inside a network namespace:
//   server-membrane / client-synapse   the real cell server and typed client over Axon
//   server-cell   Axon alone with the plain framing (mutual TLS 1.3, pheromones, in-flight accounting)
//   server-plain  a hand-written TLS 1.3 echo with the same framing (server-auth only): the floor
//   client-cell | client-plain <host:port>   measures RTT and pipelined throughput, prints JSON

import tls from 'node:tls';
import { RemoteCell } from '../../src/axon/client.js';
import { loadMeshIdentity } from '../../src/axon/identity/index.js';
import { Pheromones } from '../../src/axon/pheromones/index.js';
import type { MeshAttachment } from '../../src/axon/register.js';
import { serveCellOnMesh } from '../../src/axon/server.js';
import { Membrane } from '../../src/index.js';
import { t } from '../../src/protein/index.js';
import { rpc, service } from '../../src/service/index.js';
import { Synapse } from '../../src/synapse/index.js';
import { encodeFrame, FramedChannel, FrameReader, serveFrames } from '../../test/support/framed.js';

const EchoService = service('echo', { echo: rpc(t.bytes, t.bytes) });

const mode = process.argv[2];
const address = process.env.CELL_LAN_ADDRESS as string;
const seconds = Number(process.env.BENCH_SECONDS ?? 2);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 64);
const out = (m: unknown) => process.stdout.write(`${JSON.stringify(m)}\n`);

interface Caller {
  call(payload: Uint8Array): Promise<Buffer>;
}

async function measure(label: string, caller: Caller) {
  const payload = Buffer.alloc(32, 7);
  // Warm-up: connection, JIT, TLS session.
  for (let i = 0; i < 2_000; i++) await caller.call(payload);
  const samples: number[] = [];
  let end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    const t0 = process.hrtime.bigint();
    await caller.call(payload);
    samples.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  samples.sort((a, b) => a - b);
  const median = samples[Math.floor(samples.length / 2)] as number;
  const p99 = samples[Math.floor(samples.length * 0.99)] as number;
  let done = 0;
  end = Date.now() + seconds * 1000;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: WINDOW }, async () => {
      while (Date.now() < end) {
        await caller.call(payload);
        done++;
      }
    }),
  );
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  out({
    event: 'result',
    label,
    rttMedianUs: median,
    rttP99Us: p99,
    rttSamples: samples.length,
    pipelinedPerSec: done / elapsed,
    window: WINDOW,
  });
}

if (mode === 'server-cell') {
  const identity = loadMeshIdentity();
  const pheromones = await Pheromones.start({ identity, interfaceAddress: address, intervalMs: 500 });
  let inFlight = 0;
  const mesh = await serveCellOnMesh({
    identity,
    name: 'echo',
    fingerprint: 1n,
    address,
    pheromones,
    load: () => inFlight,
    onSocket: (s) => serveFrames(s, (p) => p, { onStart: () => inFlight++, onEnd: () => inFlight-- }),
  });
  out({ event: 'ready', port: mesh.port });
} else if (mode === 'server-membrane') {
  // The real cell server: Membrane, § 2 frames and handshake, served over Axon because CELL_LAN=1.
  const m = await Membrane.bind(EchoService, { echo: (bytes) => bytes.slice() }, { lan: true });
  out({ event: 'ready', port: (m.attachment('mesh') as MeshAttachment | undefined)?.port });
} else if (mode === 'client-synapse') {
  // The real typed client, finding the cell through the Axon resolver (CELL_LAN=1).
  const client = await Synapse.grow(EchoService, { waitMs: 10_000, timeoutMs: 10_000 });
  await measure('cell-membrane-synapse', { call: (p) => client.echo(p) as Promise<Buffer> });
  await client.$close();
  process.exit(0);
} else if (mode === 'server-plain') {
  const identity = loadMeshIdentity();
  const server = tls.createServer({ key: identity.keyPem, cert: identity.certPem, minVersion: 'TLSv1.3' }, (socket) => {
    socket.setNoDelay(true);
    const reader = new FrameReader((id, payload) => socket.write(encodeFrame(id, payload)));
    socket.on('data', (c: Buffer) => reader.push(c));
    socket.on('error', () => {});
  });
  server.listen(0, address, () => out({ event: 'ready', port: (server.address() as { port: number }).port }));
} else if (mode === 'client-cell') {
  const identity = loadMeshIdentity();
  const pheromones = await Pheromones.start({ identity, interfaceAddress: address, intervalMs: 500 });
  const remote = new RemoteCell<Uint8Array, Buffer>({
    identity,
    name: 'echo',
    pheromones,
    open: async (socket) => new FramedChannel(socket, 'echo'),
  });
  await measure('cell-axon', { call: (p) => remote.call(p, 10_000) });
  remote.close();
  await pheromones.close();
  process.exit(0);
} else if (mode === 'client-plain') {
  const [host, port] = (process.argv[3] as string).split(':');
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ host, port: Number(port), minVersion: 'TLSv1.3', rejectUnauthorized: false }, () =>
      resolve(s),
    );
    s.once('error', reject);
  });
  socket.setNoDelay(true);
  const ch = new FramedChannel(socket, 'plain');
  await measure('plain-tls', { call: (p) => ch.call(p, 10_000) });
  ch.close();
  process.exit(0);
}
