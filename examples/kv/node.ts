// One node of the replicated key-value cell:
//   node dist/examples/kv/node.js --id 1 --peers 1,2,3 --dir /var/lib/kv/1 [--prefix kv] [--election-ms 500]
// Serves the `kv` contract to clients as cell <prefix>-<id>, and the Raft peer service as
// <prefix>-<id>-raft (both under CELL_SOCKET_DIR). Prints "kv node <id> ready" once serving.

import { CellTransport, RaftNode, type SnapshotEvent } from '../../src/consensus/index.js';
import { CellError } from '../../src/errors/index.js';
import { Membrane } from '../../src/index.js';
import { Kv, KvCommand, Status } from './contract.js';
import { KvMachine, type KvResult } from './machine.js';

const flags = new Map<string, string>();
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) flags.set(argv[i].replace(/^--/, ''), argv[i + 1] ?? '');
const id = Number(flags.get('id'));
const peers = (flags.get('peers') ?? '').split(',').filter(Boolean).map(Number);
const dir = flags.get('dir');
const prefix = flags.get('prefix') ?? 'kv';
if (!Number.isInteger(id) || id <= 0 || peers.length === 0 || !dir || !peers.includes(id)) {
  console.error('usage: node.js --id N --peers 1,2,3 --dir DATA_DIR [--prefix kv] [--snapshot-every N]');
  process.exit(2);
}
const PROPOSE_TIMEOUT_MS = Number(flags.get('propose-timeout') ?? 3000);

const machine = new KvMachine();
const transport = new CellTransport({ peers: Object.fromEntries(peers.map((p) => [p, `${prefix}-${p}-raft`])) });
const node = await RaftNode.open<KvResult>({
  id,
  peers,
  dir,
  stateMachine: machine,
  transport,
  cell: `${prefix}-${id}`,
  snapshotEvery: Number(flags.get('snapshot-every') ?? 20_000),
  // 10 ms ticks; elections after 0.5-1 s of silence (etcd's default is 1 s): a busy machine stalls
  // processes for hundreds of milliseconds, and each needless election costs availability.
  tickMs: 10,
  electionTick: Math.max(4, Math.round(Number(flags.get('election-ms') ?? 500) / 10)),
  heartbeatTick: 5,
});
node.on('snapshot', (e: SnapshotEvent) => {
  process.stdout.write(
    `kv node ${id}: ${e.installed ? 'installed the leader' : 'took a'} snapshot at index ${e.index}\n`,
  );
});
node.on('warning', (message: string) => {
  console.error(`kv node ${id}: ${message}`);
});
node.on('fatal', (err: Error) => {
  console.error(`kv node ${id}: ${err.message}`);
  process.exit(70);
});

function failure(err: unknown): { status: number; leader: number } {
  if (err instanceof CellError && err.code === 'E_NOT_LEADER') {
    const hint = err.details?.leader;
    return { status: Status.NotLeader, leader: typeof hint === 'number' ? hint : node.leader };
  }
  return { status: Status.Unavailable, leader: node.leader };
}

interface Waiting {
  at: number;
  reject: (e: Error) => void;
}

/** Proposals not yet settled, in the order they were made (so in deadline order): one sweep timer for
 * all of them instead of a timer per proposal, which at 100 k proposals/s is garbage and timer-list
 * work on the leader's event loop. */
const waiting = new Set<Waiting>();
setInterval(
  () => {
    const now = performance.now();
    for (const w of waiting) {
      if (w.at > now) break;
      waiting.delete(w);
      w.reject(new CellError('E_TIMEOUT', `kv node ${id}: proposal not applied within ${PROPOSE_TIMEOUT_MS} ms.`));
    }
  },
  Math.min(100, PROPOSE_TIMEOUT_MS),
).unref();

/** Resolves with the proposal's result, or rejects with E_TIMEOUT (the outcome is then unknown). */
function propose(cmd: Uint8Array): Promise<KvResult> {
  return new Promise((resolve, reject) => {
    const w: Waiting = { at: performance.now() + PROPOSE_TIMEOUT_MS, reject };
    waiting.add(w);
    node.propose(cmd).then(
      (r) => {
        if (waiting.delete(w)) resolve(r);
      },
      (e) => {
        if (waiting.delete(w)) reject(e);
      },
    );
  });
}

const membrane = await Membrane.bind(
  Kv,
  {
    async get(key) {
      try {
        await node.read();
        const v = machine.map.get(key);
        return { status: Status.Ok, leader: node.leader, found: v !== undefined, value: v ?? '' };
      } catch (err) {
        return { ...failure(err), found: false, value: '' };
      }
    },
    async put(req) {
      try {
        await propose(KvCommand.encode({ op: 0, key: req.key, value: req.value, expected: undefined }));
        return { status: Status.Ok, leader: node.leader, ok: true, found: false, current: '' };
      } catch (err) {
        return { ...failure(err), ok: false, found: false, current: '' };
      }
    },
    async cas(req) {
      try {
        const r = await propose(KvCommand.encode({ op: 1, key: req.key, value: req.value, expected: req.expected }));
        return {
          status: Status.Ok,
          leader: node.leader,
          ok: r.ok,
          found: r.current !== undefined,
          current: r.current ?? '',
        };
      } catch (err) {
        return { ...failure(err), ok: false, found: false, current: '' };
      }
    },
    async bench(req) {
      if (!node.isLeader)
        return {
          status: Status.NotLeader,
          leader: node.leader,
          commits: 0,
          seconds: 0,
          p50us: 0,
          p99us: 0,
          leaderSyncs: 0,
        };
      const value = 'v'.repeat(req.valueBytes);
      const syncs0 = node.stats.wal.syncs;
      const lat: number[] = [];
      const t0 = performance.now();
      const end = t0 + req.durationMs;
      let commits = 0;
      let failed = false;
      const worker = async (w: number) => {
        let n = 0;
        while (performance.now() < end && !failed) {
          const cmd = KvCommand.encode({ op: 0, key: `b${w}-${n++ % 1000}`, value, expected: undefined });
          const s = performance.now();
          try {
            await propose(cmd);
          } catch {
            failed = true;
            return;
          }
          lat.push(performance.now() - s);
          commits++;
        }
      };
      await Promise.all(Array.from({ length: req.concurrency }, (_, w) => worker(w)));
      const seconds = (performance.now() - t0) / 1000;
      lat.sort((a, b) => a - b);
      const q = (p: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] * 1000 : 0);
      return {
        status: failed ? Status.Unavailable : Status.Ok,
        leader: node.leader,
        commits,
        seconds,
        p50us: q(0.5),
        p99us: q(0.99),
        leaderSyncs: node.stats.wal.syncs - syncs0,
      };
    },
    digest() {
      return machine.digest();
    },
    stats() {
      return {
        id,
        leader: node.leader,
        term: node.term,
        applied: node.applied,
        syncs: node.stats.wal.syncs,
        batches: node.stats.wal.batches,
        keys: machine.map.size,
      };
    },
  },
  { name: `${prefix}-${id}`, handleSignals: false },
);

let closing = false;
async function shutdown(): Promise<void> {
  if (closing) return;
  closing = true;
  await membrane.close();
  await node.close();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown());
process.on('SIGINT', () => void shutdown());
process.stdout.write(`kv node ${id} ready\n`);
