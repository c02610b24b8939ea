// The echo servers of the transport benchmark, one per transport, each run in its own process:
//   node dist/bench/transport/servers.js <kind> <address>
// Prints "ready" on stdout once it accepts connections. Every server echoes a 16-byte payload.
import { createServer } from 'node:net';
import { FrameType, HEADER_SIZE, readU32 } from '../../src/frame/index.js';
import { Membrane } from '../../src/index.js';
import { PingService } from './contract.js';
import { moleculerNode } from './moleculer.js';

const [kind, address] = process.argv.slice(2);

async function main(): Promise<void> {
  switch (kind) {
    case 'cell':
      await Membrane.bind(PingService, { ping: (payload) => payload }, { socketPath: address, handleSignals: true });
      break;
    case 'cell-shm':
    case 'cell-many':
    case 'cell-shm-many':
    case 'cell-shm-conns':
      // The same Membrane; its callers upgrade to the shared-memory rings.
      await Membrane.bind(PingService, { ping: (payload) => payload }, { socketPath: address, handleSignals: true });
      break;
    case 'floor':
      await floorServer(address);
      break;
    case 'grpc':
      await grpcServer(address);
      break;
    case 'zmq-rep':
      await zmqRep(address);
      return;
    case 'zmq-router':
      await zmqRouter(address);
      return;
    case 'moleculer':
      await moleculerServer(address);
      break;
    case 'ipc':
      ipcServer();
      process.send!('ready');
      return;
    default:
      throw new Error(`unknown server kind ${kind}`);
  }
  process.stdout.write('ready\n');
}

/**
 * The floor: a hand-written `net` echo using the same 12-byte frame header, parsing frames in place
 * and answering every frame of a chunk with one write. No dispatch, no codec, no promises.
 */
function floorServer(path: string): Promise<void> {
  const server = createServer((socket) => {
    let stash: Buffer | null = null;
    socket.on('data', (chunk: Buffer) => {
      let buf = chunk;
      if (stash !== null) {
        buf = Buffer.concat([stash, chunk]);
        stash = null;
      }
      let off = 0;
      let end = 0;
      while (buf.length - off >= HEADER_SIZE) {
        const total = readU32(buf, off) + 4;
        if (buf.length - off < total) break;
        buf[off + 4] = FrameType.REPLY;
        off += total;
        end = off;
      }
      if (end > 0) socket.write(buf.subarray(0, end));
      if (off < buf.length) stash = Buffer.from(buf.subarray(off));
    });
    socket.on('error', () => {});
  });
  process.on('SIGTERM', () => process.exit(0));
  return new Promise((resolve) => server.listen(path, resolve));
}

async function grpcServer(path: string): Promise<void> {
  const grpc = await import('@grpc/grpc-js');
  const server = new grpc.Server();
  const identity = (b: Buffer) => b;
  server.addService(
    {
      ping: {
        path: '/bench.Echo/Ping',
        requestStream: false,
        responseStream: false,
        requestSerialize: identity,
        requestDeserialize: identity,
        responseSerialize: identity,
        responseDeserialize: identity,
      },
    },
    {
      ping: (call: { request: Buffer }, cb: (err: null, reply: Buffer) => void) => cb(null, call.request),
    },
  );
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix:${path}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  process.on('SIGTERM', () => process.exit(0));
}

async function zmqRep(addr: string): Promise<void> {
  const zmq = await import('zeromq');
  const sock = new zmq.Reply();
  await sock.bind(addr);
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => process.exit(0));
  for await (const [msg] of sock) await sock.send(msg);
}

async function zmqRouter(addr: string): Promise<void> {
  const zmq = await import('zeromq');
  const sock = new zmq.Router({ sendHighWaterMark: 100_000, receiveHighWaterMark: 100_000 });
  await sock.bind(addr);
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => process.exit(0));
  for await (const [peer, msg] of sock) await sock.send([peer, msg]);
}

/** Node's child-process IPC (the client forks this process): echo each message back. */
function ipcServer(): void {
  process.on('message', (m) => process.send!(m));
  process.on('disconnect', () => process.exit(0));
}

await main();

/** Moleculer: one service whose action echoes its params (see moleculer.ts for the transport). */
async function moleculerServer(address: string): Promise<void> {
  const broker = await moleculerNode(address, 'server');
  broker.createService({ name: 'bench', actions: { ping: (ctx) => ctx.params } });
  await broker.start();
  process.on('SIGTERM', () => void broker.stop().then(() => process.exit(0)));
}
