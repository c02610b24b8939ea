// What `cell tap` costs a cell: the same service served with no tap socket at all, with the tap
// socket listening but nobody attached (the default), and with a tap attached (a filter that matches
// nothing, one on a method the calls do not use, and one that streams every call), plus a second copy of the first as a noise control. Client and cells share one process; rounds alternate
// between the variants so machine noise hits all of them alike.
//   node dist/bench/tap/index.js [--duration ms] [--rounds n]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Membrane } from '../../src/index.js';
import { protein, t } from '../../src/protein/index.js';
import { rpc, service } from '../../src/service/index.js';
import { Synapse, type SynapseClient } from '../../src/synapse/index.js';
import { openTap, type TapSession } from '../../src/tap/client.js';

const args = process.argv.slice(2);
const flag = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? (args[i + 1] as string) : dflt;
};
const durationMs = Number(flag('duration', '300'));
const rounds = Number(flag('rounds', '15'));

const Order = protein('Order', { symbol: t.string, amount: t.u32 });
const Receipt = protein('Receipt', { total: t.u64, by: t.string });
const contract = (name: string) => service(name, { place: rpc(Order, Receipt), cancel: rpc(t.u64, t.bool) });

interface Variant {
  label: string;
  name: string;
  tap: boolean;
  filter?: string;
  client?: SynapseClient<ReturnType<typeof contract>>;
  session?: TapSession;
  seq: number[];
  win: number[];
}

const variants: Variant[] = [
  { label: 'no tap socket (tap: false)', name: 'plain', tap: false, seq: [], win: [] },
  { label: 'tap socket, nothing attached', name: 'idle', tap: true, seq: [], win: [] },
  // The same as the first row: how far apart two identical cells measure in this run (noise).
  { label: 'no tap socket again (control)', name: 'control', tap: false, seq: [], win: [] },
  {
    label: 'tap attached, filter matches nothing',
    name: 'filtered',
    tap: true,
    filter: 'amount > 1000000',
    seq: [],
    win: [],
  },
  {
    label: 'tap attached, filter on another method',
    name: 'other',
    tap: true,
    filter: 'method == cancel',
    seq: [],
    win: [],
  },
  { label: 'tap attached, every call streamed', name: 'streamed', tap: true, filter: '', seq: [], win: [] },
];

const dir = mkdtempSync(join(tmpdir(), 'cell-bench-tap-'));
process.env.CELL_SOCKET_DIR = dir;
process.env.CELL_HOME = dir;
const membranes: Membrane[] = [];
let drained = 0;

async function sequential(client: NonNullable<Variant['client']>): Promise<number> {
  let n = 0;
  const end = performance.now() + durationMs;
  while (performance.now() < end) {
    for (let i = 0; i < 64; i++) await client.place({ symbol: 'ACME', amount: i });
    n += 64;
  }
  return (n * 1000) / durationMs;
}

async function windowed(client: NonNullable<Variant['client']>, window: number): Promise<number> {
  let n = 0;
  const end = performance.now() + durationMs;
  const lane = async () => {
    while (performance.now() < end) {
      await client.place({ symbol: 'ACME', amount: n & 1023 });
      n++;
    }
  };
  await Promise.all(Array.from({ length: window }, lane));
  return (n * 1000) / durationMs;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

try {
  for (const v of variants) {
    const name = v.name;
    membranes.push(
      await Membrane.bind(
        contract(name),
        { place: (o) => ({ total: BigInt(o.amount) * 3n, by: name }), cancel: () => true },
        { name, tap: v.tap },
      ),
    );
    v.client = await Synapse.grow(contract(name), { name, shm: false });
    if (v.filter !== undefined) {
      v.session = await openTap(name, v.filter);
      const session = v.session;
      void (async () => {
        for await (const _ of session.records()) drained++;
      })();
    }
  }
  for (const v of variants) await windowed(v.client!, 16); // warm up
  for (let r = 0; r < rounds; r++) {
    for (const v of r % 2 === 0 ? variants : [...variants].reverse()) {
      v.seq.push(await sequential(v.client!));
      v.win.push(await windowed(v.client!, 64));
    }
  }
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU';
  console.log(`${cpu}; Linux ${release()}; node ${process.version}; ${rounds} rounds × ${durationMs} ms, socket`);
  const base = variants[0]!;
  console.log(
    `${'variant'.padEnd(40)} ${'seq calls/s'.padStart(12)} ${'ratio'.padStart(6)} ${'w64 calls/s'.padStart(12)} ${'ratio'.padStart(6)}`,
  );
  for (const v of variants) {
    const s = median(v.seq);
    const w = median(v.win);
    console.log(
      `${v.label.padEnd(40)} ${s.toFixed(0).padStart(12)} ${(s / median(base.seq)).toFixed(2).padStart(6)} ${w.toFixed(0).padStart(12)} ${(w / median(base.win)).toFixed(2).padStart(6)}`,
    );
  }
  console.log(`tap records received: ${drained}`);
} finally {
  for (const v of variants) {
    v.session?.close();
    await v.client?.$close();
  }
  for (const m of membranes) await m.close();
  rmSync(dir, { recursive: true, force: true });
}
