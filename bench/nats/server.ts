// One benchmark server, in its own process, connected to the benchmark's nats-server:
//   node dist/bench/nats/server.js <kind> <nats url> <socket dir>
// Prints "ready", then its CPU time ({"cpuUs"}) for every line it reads on stdin.
// raw: the client library alone (a queue subscription answering each request with its payload);
// cell: a Membrane serving the echo contract on NATS; moleculer: a broker with the NATS transporter.
import { connect } from '@nats-io/transport-node';
import { Membrane } from '../../src/index.js';
import { registerNats } from '../../src/nats/index.js';
import { PingService } from '../transport/contract.js';

const [kind, url, socketDir] = process.argv.slice(2) as [string, string, string];

async function main(): Promise<void> {
  switch (kind) {
    case 'raw': {
      const nc = await connect({ servers: url.replace('nats://', '') });
      nc.subscribe('bench.raw.ping', {
        queue: 'q',
        callback: (_err, m) => {
          m.respond(m.data);
        },
      });
      await nc.flush();
      process.on('SIGTERM', () => void nc.close().then(() => process.exit(0)));
      break;
    }
    case 'echo-cell': {
      // A bare echo on the cell's subject, found through a static $SRV.INFO answer: isolates Cell's client.
      const nc = await connect({ servers: url.replace('nats://', '') });
      const fp = PingService.fingerprint.toString(16).padStart(16, '0');
      const subject = `cell.bench.${fp}`;
      const info = JSON.stringify({
        type: 'io.nats.micro.v1.info_response',
        name: 'bench',
        id: 'echo',
        version: '0.0.0',
        metadata: {
          'cell.fingerprint': `0x${fp}`,
          'cell.subject': subject,
          'cell.service': 'bench',
          'cell.genome': JSON.stringify(PingService.genome),
        },
        endpoints: [{ name: 'ping', subject: `${subject}.ping`, queue_group: 'q' }],
      });
      nc.subscribe(`${subject}.ping`, {
        queue: 'q',
        callback: (_err, m) => {
          m.respond(m.data);
        },
      });
      nc.subscribe('$SRV.INFO.bench', {
        callback: (_err, m) => {
          m.respond(info);
        },
      });
      await nc.flush();
      process.on('SIGTERM', () => void nc.close().then(() => process.exit(0)));
      break;
    }
    case 'cell':
      registerNats();
      // The Unix socket is there (every Membrane has one); the client is told to use NATS only.
      await Membrane.bind(
        PingService,
        { ping: (payload) => payload },
        { socketPath: `${socketDir}/bench.sock`, nats: url, tap: false },
      );
      break;
    case 'moleculer': {
      const { ServiceBroker } = await import('moleculer');
      const broker = new ServiceBroker({
        nodeID: 'bench-server',
        logger: false,
        transporter: { type: 'NATS', options: { url } },
      });
      broker.createService({ name: 'bench', actions: { ping: (ctx) => ctx.params } });
      await broker.start();
      process.on('SIGTERM', () => void broker.stop().then(() => process.exit(0)));
      break;
    }
    default:
      throw new Error(`unknown server kind ${kind}`);
  }
  process.stdout.write('ready\n');
  // The orchestrator asks for this process's CPU time at the start and the end of a measurement.
  process.stdin.on('data', () => {
    const u = process.cpuUsage();
    process.stdout.write(`${JSON.stringify({ cpuUs: u.user + u.system })}\n`);
  });
}

await main();
