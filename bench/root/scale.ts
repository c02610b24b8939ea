// `node dist/bench/root/scale.js [--cells 200] [--batch 8]`, as root, with bubblewrap and cgroups: a real Root
// in a private CELL_HOME starts that many idle sandboxed cells, all of one DNA folder under different
// names, then reports the Root's RSS and PSS (/proc/<pid>/smaps_rollup), memory per cell (every process
// of its sandbox: bubblewrap, its init, Node), how many builds the Ribosome ran, and the cells a 24 GiB
// host could hold at that PSS. `cell down` at the end, then checks that no process of it is left.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectRoot } from '../../src/root/client.js';

const flag = (name: string, fallback: number) => {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
};
const count = flag('--cells', 200);
const batch = flag('--batch', 8);
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const MiB = 1024 * 1024;
const HOST = 24 * 1024 * MiB;

if (process.getuid?.() !== 0) {
  console.error('run as root: the bench measures cells sandboxed as another uid, as a production Root runs them');
  process.exit(2);
}

/** Rss and Pss of one process, in bytes (0 when it is gone). */
function rollup(pid: number): { rss: number; pss: number } {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
    return { rss: kb('Rss'), pss: kb('Pss') };
  } catch {
    return { rss: 0, pss: 0 };
  }
}

/** Every process below `root` (inclusive). */
function tree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'latin1');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
    } catch {}
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i] as number) ?? []));
  return out;
}

function cell(dir: string, ...args: string[]): string {
  const r = spawnSync(process.execPath, [cli, ...args], { env: process.env, cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cell ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const mb = (x: number) => `${(x / MiB).toFixed(1)} MiB`;

const dir = mkdtempSync(join(tmpdir(), 'cell-bench-scale-'));
process.env.CELL_HOME = join(dir, 'home');
process.env.CELL_SOCKET_DIR = join(dir, 'run');
delete process.env.CELL_UMBILICAL;
process.env.CELL_LAN = '0';
mkdirSync(join(dir, 'idle'));
writeFileSync(
  join(dir, 'idle', 'index.ts'),
  `import { Membrane, rpc, service, t } from 'cell';
const Idle = service(process.env.CELL_NAME ?? 'idle', { ping: rpc(t.string, t.string) });
await Membrane.bind(Idle, { ping: (s) => s });
`,
);
const names = Array.from({ length: count }, (_, i) => `idle-${String(i).padStart(3, '0')}`);
writeFileSync(
  join(dir, 'cell.json'),
  JSON.stringify({ cells: Object.fromEntries(names.map((n) => [n, { dna: './idle', autostart: false }])) }),
);

let failed = false;
try {
  const nproc = spawnSync('nproc', { encoding: 'utf8' }).stdout.trim();
  console.log(
    `Root at scale — nproc ${nproc}, Linux ${release()}, Node ${process.version}, ${count} idle sandboxed cells, load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  cell(dir, 'up', dir, '--json');
  const root = await connectRoot();
  const first = await root.list(undefined);
  const rootPid = first.rootPid;
  const idleRoot = rollup(rootPid);
  const t0 = performance.now();
  for (let i = 0; i < names.length; i += batch) {
    await Promise.all(names.slice(i, i + batch).map((name) => root.spawn({ name, wait: true })));
  }
  const startS = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 5000)); // let start-up garbage be collected
  const list = await root.list(undefined);
  const running = list.cells.filter((c) => c.state === 'running');
  const perCell = running.map((c) => {
    const sum = { rss: 0, pss: 0 };
    for (const pid of tree(c.pid)) {
      const r = rollup(pid);
      sum.rss += r.rss;
      sum.pss += r.pss;
    }
    return sum;
  });
  const full = rollup(rootPid);
  const builds = running.filter((c) => c.build !== undefined && !c.build.cached).length;
  const hashes = new Set(running.map((c) => c.build?.hash)).size;
  const pss = perCell.reduce((a, c) => a + c.pss, 0) / perCell.length;
  const rss = perCell.reduce((a, c) => a + c.rss, 0) / perCell.length;
  const stems = list.stemCells;
  console.log(
    `cells running                         ${running.length} of ${count} (started in ${startS.toFixed(1)} s)`,
  );
  console.log(`builds (not cached) / distinct bundles ${builds} / ${hashes}`);
  console.log(`Root RSS / PSS, no cells running       ${mb(idleRoot.rss)} / ${mb(idleRoot.pss)}`);
  console.log(`Root RSS / PSS, ${running.length} idle cells        ${mb(full.rss)} / ${mb(full.pss)}`);
  console.log(`per cell RSS mean / median             ${mb(rss)} / ${mb(median(perCell.map((c) => c.rss)))}`);
  console.log(`per cell PSS mean / median             ${mb(pss)} / ${mb(median(perCell.map((c) => c.pss)))}`);
  console.log(`cells per 24 GiB host (at PSS)         ${Math.floor((HOST - full.pss) / pss)}`);
  console.log(`stem cells waiting                     ${stems === undefined ? 'pool off' : `${stems.ready} ready`}`);
  if (running.length !== count) failed = true;
  await root.$close();
  const t1 = performance.now();
  cell(dir, 'down');
  console.log(`cell down                              ${((performance.now() - t1) / 1000).toFixed(1)} s`);
} finally {
  spawnSync(process.execPath, [cli, 'down'], { env: process.env, cwd: dir });
  const left = readdirSync('/proc').filter((e) => {
    try {
      return /^\d+$/.test(e) && readFileSync(`/proc/${e}/cmdline`, 'latin1').includes(dir);
    } catch {
      return false;
    }
  });
  console.log(`processes left after cell down         ${left.length}`);
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
