// `node dist/bench/root/index.js [--rounds n] [--sandbox] [--stem-cells n]`: what the Root costs a caller.
// For each pool size (0 = no stem cells, then n, default 2): a private CELL_HOME, a real Root daemon
// started by `cell up`, one small cell; prints medians of: cold build + start, spawn on demand through
// Synapse.grow (cached bundle), restart, hot swap, crash → serving again, and a bare `node -e ''`
// start measured in the same rounds, with the grow time as a multiple of it.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { t } from '../../src/protein/index.js';
import { connectRoot } from '../../src/root/client.js';
import { rpc, service } from '../../src/service/index.js';
import { Synapse } from '../../src/synapse/index.js';

const flag = (name: string, fallback: number) => {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
};
const rounds = flag('--rounds', 7);
const poolSize = flag('--stem-cells', 2);
/** `--sandbox`: cells in bubblewrap with cgroup limits (the Capsid); default --no-sandbox. */
const sandboxed = process.argv.includes('--sandbox');
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

const Echo = service('echo', { echo: rpc(t.string, t.string), die: rpc(t.unit, t.unit) });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const ms = (x: number) => `${x.toFixed(1)} ms`;
const now = () => performance.now();
const sleep = (n: number) => new Promise((r) => setTimeout(r, n));

function cell(dir: string, ...args: string[]): void {
  const r = spawnSync(process.execPath, [cli, ...args], { env: process.env, cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cell ${args.join(' ')} failed: ${r.stderr}`);
}

/** Spawn of `node -e ''` until it exited: Node's own start (and exit) at this moment's load. */
function bareNode(): Promise<number> {
  const t0 = now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', () => resolve(now() - t0));
  });
}

interface Run {
  stems: number;
  up: number;
  cold: number;
  coldBuild: number;
  grow: number[];
  bare: number[];
  /** Each grow over the mean of the bare starts just before and after it (the load drifts). */
  ratio: number[];
  restart: number[];
  swap: number[];
  recover: number[];
}

/** Until the Root has `want` stem cells waiting (a grow then measures the pool, not its refill). */
async function stemsReady(root: Awaited<ReturnType<typeof connectRoot>>, want: number): Promise<void> {
  if (want === 0) return;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const s = (await root.list(undefined)).stemCells;
    if (s !== undefined && s.off !== '') throw new Error(`stem cells off: ${s.off}`);
    if ((s?.ready ?? 0) >= want) return;
    await sleep(20);
  }
  throw new Error('stem cells did not become ready within 30 s');
}

async function measure(stems: number): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'cell-bench-root-'));
  process.env.CELL_HOME = join(dir, 'home');
  process.env.CELL_SOCKET_DIR = join(dir, 'run');
  delete process.env.CELL_UMBILICAL;
  process.env.CELL_LAN = '0';
  process.env.CELL_STEM_CELLS = String(stems);
  mkdirSync(join(dir, 'echo'));
  writeFileSync(
    join(dir, 'echo', 'index.ts'),
    `import { Membrane, rpc, service, t } from 'cell';
const Echo = service('echo', { echo: rpc(t.string, t.string), die: rpc(t.unit, t.unit) });
await Membrane.bind(Echo, { echo: (s) => s, die: () => process.exit(1) });
`,
  );
  writeFileSync(join(dir, 'cell.json'), JSON.stringify({ cells: { echo: { dna: './echo', autostart: false } } }));
  const run: Run = {
    stems,
    up: 0,
    cold: 0,
    coldBuild: 0,
    grow: [],
    bare: [],
    ratio: [],
    restart: [],
    swap: [],
    recover: [],
  };
  try {
    let t0 = now();
    cell(dir, 'up', dir, ...(sandboxed ? [] : ['--no-sandbox']), '--json');
    run.up = now() - t0;
    const root = await connectRoot();
    await stemsReady(root, stems);
    t0 = now();
    const first = await root.spawn({ name: 'echo', wait: true });
    run.cold = now() - t0;
    run.coldBuild = first.build?.buildMs ?? 0;
    for (let i = 0; i < rounds; i++) {
      await root.stop({ name: 'echo' });
      await stemsReady(root, stems);
      const before = await bareNode();
      t0 = now();
      const c = await Synapse.grow(Echo, { waitMs: 30_000 });
      await c.echo('x');
      const grow = now() - t0;
      const after = await bareNode();
      run.grow.push(grow);
      run.bare.push(before, after);
      run.ratio.push(grow / ((before + after) / 2));

      await stemsReady(root, stems);
      t0 = now();
      await root.restart({ name: 'echo', wait: true });
      run.restart.push(now() - t0);

      run.swap.push((await root.swap({ name: 'echo' })).durationMs);

      await stemsReady(root, stems);
      await c.die(undefined).catch(() => {});
      t0 = now();
      for (;;) {
        try {
          await c.echo('y');
          break;
        } catch {
          await sleep(5);
        }
      }
      run.recover.push(now() - t0);
      await c.$close();
    }
    await root.$close();
    cell(dir, 'down');
  } finally {
    spawnSync(process.execPath, [cli, 'down'], { env: process.env, cwd: dir });
    rmSync(dir, { recursive: true, force: true });
  }
  return run;
}

const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU';
const nproc = spawnSync('nproc', { encoding: 'utf8' }).stdout.trim();
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
console.log(
  `Root benchmark — ${cpu}, nproc ${nproc}, Linux ${release()}, Node ${process.version}, ${rounds} rounds, ${sandboxed ? 'sandboxed (bwrap + cgroups)' : '--no-sandbox'}, load ${load()}`,
);
const runs: Run[] = [];
for (const stems of [...new Set([0, poolSize])]) runs.push(await measure(stems));
console.log(`load at the end: ${load()}`);
const head = runs.map((r) => (r.stems === 0 ? 'no stem cells' : `${r.stems} stem cells`).padStart(22)).join('');
const row = (label: string, f: (r: Run) => string) =>
  console.log(`${label.padEnd(52)}${runs.map((r) => f(r).padStart(22)).join('')}`);
console.log(`${''.padEnd(52)}${head}`);
row('cell up (Root start, no cells)', (r) => ms(r.up));
row('first spawn: cold build + start + ready', (r) => `${ms(r.cold)} (build ${r.coldBuild})`);
row('  of which not esbuild', (r) => ms(r.cold - r.coldBuild));
row('  not esbuild ÷ bare node', (r) => `${((r.cold - r.coldBuild) / median(r.bare)).toFixed(2)}×`);
row('Synapse.grow of a stopped cell (cached), 1st reply', (r) => ms(median(r.grow)));
row("bare `node -e ''` start, same rounds", (r) => ms(median(r.bare)));
row('  grow ÷ bare node (median of rounds)', (r) => `${median(r.ratio).toFixed(2)}×`);
row('restart (stop + cached start + ready)', (r) => ms(median(r.restart)));
row('hot swap (build cached, start, ready, drain)', (r) => ms(median(r.swap)));
row('crash → restarted → next call answered', (r) => ms(median(r.recover)));
