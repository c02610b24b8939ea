import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { cliPath, makeSandbox, waitFor } from '../root/harness.js';
import { TmuxSession } from './tmux.js';

interface Row {
  name: string;
  state: string;
  pid: number;
  generation: number;
  restarts: number;
}

const ECHO = `import { Membrane, rpc, service, t } from 'cell';
await Membrane.bind(service('echo', { echo: rpc(t.string, t.string) }), { echo: (s) => 'echo:' + s });
console.log('echo ready');
`;

/** A cell that calls `echo` in a loop, so the dashboard has live rates to show. */
const CALLER = `import { Membrane, Synapse, rpc, service, t } from 'cell';
await Membrane.bind(service('caller', { ping: rpc(t.unit, t.unit) }), { ping: () => undefined });
const Echo = service('echo', { echo: rpc(t.string, t.string) });
const echo = await Synapse.grow(Echo, { waitMs: 10_000 });
console.log('caller ready');
for (;;) {
  try {
    await echo.echo('hi');
  } catch (err) {
    console.log('call failed: ' + err.message);
  }
  await new Promise((r) => setTimeout(r, 2));
}
`;

test('cell top in tmux over a Root-managed mesh (cell up): Root states, live rates, swap and restart through the Root', {
  skip: !TmuxSession.available() && 'tmux is not installed',
}, async (t) => {
  const sb = makeSandbox();
  const tmux = new TmuxSession('toproot', join(sb.dir, 'tmux.sock'));
  t.after(async () => {
    tmux.kill();
    await sb.cleanup();
  });
  sb.cell('echo', ECHO);
  sb.cell('caller', CALLER);
  sb.manifest({ echo: { dna: './dna/echo' }, caller: { dna: './dna/caller', calls: ['echo'] } });
  const up = await sb.cli('up', '--no-sandbox', '--json');
  assert.equal(up.code, 0, up.stderr + up.stdout);
  const status = async (name: string) => JSON.parse((await sb.cli('status', name, '--json')).stdout) as Row;
  const before = await status('echo');
  assert.equal(before.state, 'running');

  // `cell metrics` and `cell tap` through the real CLI, over the Root's cells.
  const metrics = await waitFor('echo to have served calls', async () => {
    const r = await sb.cli('metrics');
    assert.equal(r.code, 0, r.stderr + r.stdout);
    return /^cell_requests_total\{cell="echo",method="echo"\} [1-9]/m.test(r.stdout) ? r : undefined;
  });
  assert.match(metrics.stdout, /^cell_up\{cell="echo",state="running"\} 1$/m);
  assert.match(metrics.stdout, /^cell_requests_total\{cell="echo",method="echo"\} [1-9]\d*$/m);
  assert.match(metrics.stdout, /^cell_resident_memory_bytes\{cell="caller"\} [1-9]\d*$/m);
  const tap = await sb.cli('tap', 'echo', 'method == echo && res ~ "echo:"', '--count', '3');
  assert.equal(tap.code, 0, tap.stderr);
  const tapped = tap.stdout.trim().split('\n');
  assert.equal(tapped.length, 3, tap.stdout);
  for (const line of tapped) assert.match(line, /#\d+ echo [\d.]+(ns|µs|ms) "hi" → "echo:hi"$/);
  const badFilter = await sb.cli('tap', 'echo', 'latency_ms >');
  assert.equal(badFilter.code, 1);
  assert.match(badFilter.stderr, /tap filter "latency_ms >"/);

  const env: Record<string, string> = { TERM: 'xterm-256color' };
  for (const k of ['CELL_HOME', 'CELL_SOCKET_DIR', 'CELL_LAN'] as const) env[k] = String(sb.env[k]);
  tmux.start(`${process.execPath} ${cliPath} top --interval 300; echo "cli exited $?"`, env);

  // The Root's registry and states, the cells' own rates and latencies, and the Root's detail line.
  const echoLive = new RegExp(
    `^[ >]echo#1 +running +${before.pid} +\\d+s +0 +(socket|socket\\+shm) +[\\d.]+k? +[▁▂▃▄▅▆▇█ ]*[▁▂▃▄▅▆▇█] +[\\d.]+(µs|ms|ns)`,
    'm',
  );
  let screen = await tmux.waitFor(
    (s) => echoLive.test(s) && /^[ >]caller#1 +running/m.test(s),
    'echo with live metrics from the Root-managed mesh',
    30_000,
  );
  assert.match(screen, /cell top — 2 cells \(Root\)/);
  assert.match(screen, /^ caller generation 1 · sandbox none · last exit -/m);

  // Select echo (sorted by name: caller, echo) and swap it: the Root starts generation 2.
  tmux.sendKeys('j');
  await tmux.waitFor((s) => /^>echo#1 /m.test(s), 'echo to be selected');
  tmux.sendKeys('w');
  screen = await tmux.waitFor((s) => /echo: generation 1 → 2 in \d+ ms/.test(s), 'the swap outcome', 30_000);
  const swapped = await status('echo');
  assert.equal(swapped.generation, 2);
  assert.notEqual(swapped.pid, before.pid);
  await tmux.waitFor(
    (s) => new RegExp(`^>echo#2 +running +${swapped.pid} `, 'm').test(s),
    'generation 2 in the table',
    15_000,
  );

  // Restart goes through the Root too: a new process.
  tmux.sendKeys('R');
  await tmux.waitFor((s) => /echo: running \(pid \d+\)/.test(s), 'the restart outcome', 30_000);
  const restarted = await waitFor('a new echo process', async () => {
    const r = await status('echo');
    return r.state === 'running' && r.pid !== swapped.pid ? r : undefined;
  });
  await tmux.waitFor(
    (s) => new RegExp(`^>echo#\\d+ +running +${restarted.pid} `, 'm').test(s),
    'the restarted process in the table',
    15_000,
  );

  // The log pane shows the Root's log of the selected cell.
  tmux.sendKeys('Enter');
  await tmux.waitFor((s) => /logs: echo/.test(s) && /echo ready/.test(s), 'echo log lines', 15_000);
  tmux.sendKeys('q');
  await tmux.waitFor((s) => /cli exited 0/.test(s), 'the dashboard to quit');
});
