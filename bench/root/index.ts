// `node dist/bench/root/index.js [--rounds n] [--sandbox]`: what the Root costs a caller. A private CELL_HOME, a
// real Root daemon started by `cell up`, one small cell; prints medians of: cold build + start, spawn
// on demand through Synapse.grow (cached bundle), restart, hot swap, and crash → serving again.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Synapse } from '../../src/index.js';
import { t } from '../../src/protein/index.js';
import { connectRoot } from '../../src/root/client.js';
import { rpc, service } from '../../src/service/index.js';

const roundsFlag = process.argv.indexOf('--rounds');
const rounds = roundsFlag >= 0 ? Number(process.argv[roundsFlag + 1]) : 7;
/** `--sandbox`: cells in bubblewrap with cgroup limits (the Capsid); default --no-sandbox. */
const sandboxed = process.argv.includes('--sandbox');
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'cell-bench-root-'));
process.env.CELL_HOME = join(dir, 'home');
process.env.CELL_SOCKET_DIR = join(dir, 'run');
delete process.env.CELL_UMBILICAL; // the Root's socket stays in its private dir (CELL_HOME/root)
process.env.CELL_LAN = '0';

const Echo = service('echo', { echo: rpc(t.string, t.string), die: rpc(t.unit, t.unit) });
mkdirSync(join(dir, 'echo'));
writeFileSync(
  join(dir, 'echo', 'index.ts'),
  `import { Membrane, rpc, service, t } from 'cell';
const Echo = service('echo', { echo: rpc(t.string, t.string), die: rpc(t.unit, t.unit) });
await Membrane.bind(Echo, { echo: (s) => s, die: () => process.exit(1) });
`,
);
writeFileSync(join(dir, 'cell.json'), JSON.stringify({ cells: { echo: { dna: './echo', autostart: false } } }));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const ms = (x: number) => `${x.toFixed(1)} ms`;
const now = () => performance.now();

function cell(...args: string[]): void {
  const r = spawnSync(process.execPath, [cli, ...args], { env: process.env, cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cell ${args.join(' ')} failed: ${r.stderr}`);
}

try {
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU';
  console.log(
    `Root benchmark — ${cpu}, Linux ${release()}, Node ${process.version}, ${rounds} rounds, ${sandboxed ? 'sandboxed (bwrap + cgroups)' : '--no-sandbox'}`,
  );
  let t0 = now();
  cell('up', dir, ...(sandboxed ? [] : ['--no-sandbox']), '--json');
  const upMs = now() - t0;
  const root = await connectRoot();

  t0 = now();
  const first = await root.spawn({ name: 'echo', wait: true });
  const coldMs = now() - t0;
  const coldBuild = first.build?.buildMs ?? 0;

  const onDemand: number[] = [];
  const restart: number[] = [];
  const swap: number[] = [];
  const recover: number[] = [];
  for (let i = 0; i < rounds; i++) {
    await root.stop({ name: 'echo' });
    t0 = now();
    const c = await Synapse.grow(Echo, { waitMs: 30_000 });
    await c.echo('x');
    onDemand.push(now() - t0);

    t0 = now();
    await root.restart({ name: 'echo', wait: true });
    restart.push(now() - t0);

    swap.push((await root.swap({ name: 'echo' })).durationMs);

    await c.die(undefined).catch(() => {});
    t0 = now();
    for (;;) {
      try {
        await c.echo('y');
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    recover.push(now() - t0);
    await c.$close();
  }
  await root.$close();
  cell('down');
  console.log(`cell up (Root start, no cells)             ${ms(upMs)}`);
  console.log(`first spawn: cold build ${coldBuild} ms + start + ready  ${ms(coldMs)}`);
  console.log(`Synapse.grow of a stopped cell (cached)    median ${ms(median(onDemand))}  (first call answered)`);
  console.log(`restart (stop + cached start + ready)      median ${ms(median(restart))}`);
  console.log(`hot swap (build cached, start, ready, drain) median ${ms(median(swap))}`);
  console.log(`crash → restarted → next call answered     median ${ms(median(recover))}  (first backoff 100 ms)`);
} finally {
  spawnSync(process.execPath, [cli, 'down'], { env: process.env, cwd: dir });
  rmSync(dir, { recursive: true, force: true });
}
