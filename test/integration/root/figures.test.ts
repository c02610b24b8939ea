// The numbers shown for a sandboxed cell are the cell's own: its host pid (not bubblewrap's, not the
// pid it sees inside its namespace), CPU it really burned, memory it really holds, and the transport
// its caller really uses — in `cell status`, `cell top --json` and `cell metrics`.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Synapse } from '../../../src/index.js';
import { t } from '../../../src/protein/index.js';
import { rpc, service } from '../../../src/service/index.js';
import { canSandbox, cellCgroupsOf, makeSandbox, useSandboxEnv } from './harness.js';

const Busy = service('busy', { spin: rpc(t.uint, t.uint), hold: rpc(t.uint, t.uint) });

// spin burns CPU for `ms` in 20 ms slices, so the cell still answers the Root's probes meanwhile.
const BUSY_SOURCE = `import { Membrane, rpc, service, t } from 'cell';
const held = [];
await Membrane.bind(service('busy', { spin: rpc(t.uint, t.uint), hold: rpc(t.uint, t.uint) }), {
  spin: async (ms) => {
    const end = Date.now() + ms;
    let n = 0;
    while (Date.now() < end) {
      const slice = Date.now() + 20;
      while (Date.now() < slice) n++;
      await new Promise((resolve) => setImmediate(resolve));
    }
    return n % 1000;
  },
  hold: (mb) => {
    held.push(Buffer.alloc(mb * 1024 * 1024, 7));
    return held.length;
  },
});
`;

interface Row {
  state: string;
  pid: number;
  transport: string;
  sandbox: string;
  memoryBytes: number;
}

/** `name{cell="busy"} value` from the Prometheus text. */
function metric(text: string, name: string): number {
  const m = new RegExp(`^${name}\\{cell="busy"\\} (\\S+)$`, 'm').exec(text);
  assert.ok(m, `${name} in\n${text}`);
  return Number(m[1]);
}

test('a sandboxed cell shows its host pid, real CPU and RSS and the transport in use', {
  skip: canSandbox() ? false : 'needs bubblewrap and writable cgroups',
}, async (tc) => {
  const sb = makeSandbox();
  const restoreEnv = useSandboxEnv(sb);
  tc.after(async () => {
    restoreEnv();
    await sb.cleanup();
  });
  sb.cell('busy', BUSY_SOURCE);
  sb.manifest({ busy: { dna: './dna/busy', limits: { memory: '512M' } } });
  assert.equal((await sb.cli('up')).code, 0);
  const status = async () => JSON.parse((await sb.cli('status', 'busy', '--json')).stdout) as Row;
  const client = await Synapse.grow(Busy, { waitMs: 10_000, timeoutMs: 20_000 });
  tc.after(() => client.$close());

  // The pid: the cell's Node process as the host sees it, inside the cell's cgroup; the pid the
  // cell reports itself is its pid inside its own namespace (the last NSpid field).
  const row = await status();
  assert.equal(row.sandbox, 'bwrap');
  assert.equal(row.state, 'running');
  assert.notEqual(readFileSync(`/proc/${row.pid}/comm`, 'utf8').trim(), 'bwrap');
  const nspid = /^NSpid:\s+(.+)$/m.exec(readFileSync(`/proc/${row.pid}/status`, 'utf8'))?.[1]?.split(/\s+/) ?? [];
  assert.equal(nspid.length, 2, `the process lives in a pid namespace: NSpid ${nspid.join(' ')}`);
  assert.equal(Number(nspid[0]), row.pid);
  const health = (await client.$health()) as { pid: number };
  assert.equal(health.pid, Number(nspid[1]), 'the cell answers with its namespace pid');
  assert.notEqual(health.pid, row.pid);
  assert.ok(cellCgroupsOf(row.pid).length > 0, 'the process is in the cell cgroup');

  // The transport: what this caller's connection really is.
  const used = client.$synapse.transport?.transport;
  assert.equal(row.transport, used === 'shm' ? 'socket+shm' : 'socket', JSON.stringify(client.$synapse.transport));

  // CPU: 1.5 s of spinning shows up as ~1.5 CPU seconds, in cell metrics and as a busy cell in top.
  const before = await sb.cli('metrics');
  assert.equal(before.code, 0, before.stderr);
  const cpu0 = metric(before.stdout, 'cell_cpu_seconds_total');
  const t0 = Date.now();
  // The cell spins for as long as top samples (at least 2.5 s): how long the CLI takes to start on a
  // loaded machine must not decide whether its samples fall inside the busy spell.
  let topDone = false;
  const topRun = sb.cli('top', '--json', '--count=3', '--interval=600').finally(() => {
    topDone = true;
  });
  const spinning = (async () => {
    do await client.spin(500);
    while (!topDone || Date.now() - t0 < 2500);
  })();
  const top = await topRun;
  await spinning;
  const wall = (Date.now() - t0) / 1000;
  const after = await sb.cli('metrics');
  const cpu1 = metric(after.stdout, 'cell_cpu_seconds_total');
  assert.ok(cpu1 - cpu0 >= 1.5, `burned ${cpu1 - cpu0} s of CPU while spinning at least 2.5 s`);
  assert.ok(cpu1 - cpu0 <= wall + 0.5, `at most the wall time (${wall} s): ${cpu1 - cpu0}`);
  const samples = top.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { name?: string; cpuPercent?: number; pid?: number; transport?: string })
    .filter((s) => s.name === 'busy');
  assert.ok(samples.length >= 2, top.stdout);
  for (const s of samples) assert.equal(s.pid, row.pid, 'top shows the same host pid');
  const peak = Math.max(...samples.map((s) => s.cpuPercent ?? 0));
  assert.ok(peak >= 40, `top saw ${peak} % CPU while the cell spun`);

  // Memory: 128 MiB held (and touched) is there in status, metrics and the cell's own RSS.
  const rss0 = metric(after.stdout, 'cell_resident_memory_bytes');
  assert.equal(await client.hold(128), 1);
  const held = await sb.cli('metrics');
  const rss1 = metric(held.stdout, 'cell_resident_memory_bytes');
  assert.ok(rss1 - rss0 >= 120 * 1024 * 1024, `resident memory grew by ${(rss1 - rss0) / 2 ** 20} MiB`);
  assert.ok((await status()).memoryBytes >= 128 * 1024 * 1024);
  const vmrss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${row.pid}/status`, 'utf8'))?.[1]) * 1024;
  assert.ok(vmrss >= 128 * 1024 * 1024, `the host pid is the process holding the memory (${vmrss})`);
});
