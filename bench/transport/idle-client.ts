// Idle-cost probe: connects over shm, makes a few calls, then stays idle for <seconds> while
// measuring its own and the cell's CPU time from /proc/<pid>/stat; prints {server, client} in %.
//   node dist/bench/transport/idle-client.js <socket> <seconds> <cellPid> [connections, default 1]

import { readFileSync } from 'node:fs';
import { Synapse } from '../../src/index.js';
import { unixConnector } from '../../src/synapse/index.js';
import { PingService } from './contract.js';

const [address, secondsArg, pidArg, connsArg] = process.argv.slice(2) as [string, string, string, string?];
const seconds = Number(secondsArg);
const cellPid = Number(pidArg);
const connections = Number(connsArg ?? 1);

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime, in clock ticks (100 Hz)
}

const grow = () =>
  Synapse.grow(PingService, {
    resolvers: [
      {
        name: 'bench',
        order: 0,
        resolve: () => unixConnector(address),
      },
    ],
  });
const exs: Array<Awaited<ReturnType<typeof grow>>> = [];
for (let i = 0; i < connections; i++) exs.push(await grow());
for (const ex of exs) {
  if (ex.$synapse.transport?.transport !== 'shm') throw new Error(`not on shm: ${ex.$synapse.transport?.shmDeclined}`);
  for (let i = 0; i < 1000; i++) await ex.ping(Buffer.from('0123456789abcdef'));
}
await new Promise((r) => setTimeout(r, 100)); // let both sides finish spinning and fall asleep
const s0 = cpuTicks(cellPid);
const c0 = cpuTicks(process.pid);
await new Promise((r) => setTimeout(r, seconds * 1000));
const server = ((cpuTicks(cellPid) - s0) / 100 / seconds) * 100;
const client = ((cpuTicks(process.pid) - c0) / 100 / seconds) * 100;
for (const ex of exs) await ex.ping(Buffer.from('0123456789abcdef')); // still served after sleeping
for (const ex of exs) await ex.$close();
process.stdout.write(`${JSON.stringify({ server, client })}\n`);
process.exit(0);
