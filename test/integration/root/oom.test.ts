import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { isCellError } from '../../../src/errors/index.js';
import { Synapse } from '../../../src/index.js';
import { echoContract, makeSandbox, useSandboxEnv, waitFor } from './harness.js';

interface Row {
  state: string;
  pid: number;
  restarts: number;
  lastExit: string;
  oomKills: number;
  sandbox: string;
}

/** A cell whose `die` method allocates (and touches) memory until something stops it. */
const HOG = `import { Membrane, rpc, service, t } from 'cell';
const Svc = service('hog', {
  echo: rpc(t.string, t.string),
  add: rpc(t.struct('Pair', { a: t.uint, b: t.uint }), t.uint),
  die: rpc(t.unit, t.unit),
  wait: rpc(t.uint, t.uint),
});
const kept = [];
await Membrane.bind(Svc, {
  echo: (s) => 'hog:' + s,
  add: (p) => p.a + p.b,
  die: () => {
    for (let i = 0; i < 256; i++) kept.push(Buffer.alloc(8 * 1024 * 1024, i));
  },
  wait: (ms) => ms,
});
console.log('hog ready');
`;

test('a cell allocating past its memory limit is OOM-killed, reported as such, and restarted', async (t) => {
  const sb = makeSandbox();
  const restoreEnv = useSandboxEnv(sb);
  t.after(async () => {
    restoreEnv();
    await sb.cleanup();
  });
  sb.cell('hog', HOG);
  sb.manifest({ hog: { dna: './dna/hog', limits: { memory: '96M' } } });
  const doctor = JSON.parse((await sb.cli('doctor', '--json')).stdout) as {
    checks: Array<{ name: string; ok: boolean }>;
  };
  const bwrapOk = doctor.checks.some((c) => /bwrap|bubblewrap/i.test(c.name) && c.ok);
  const up = await sb.cli('up', ...(bwrapOk ? [] : ['--no-sandbox']), '--json');
  if (up.code !== 0 && /E_CGROUP_UNAVAILABLE|E_SANDBOX_UNAVAILABLE/.test(up.stdout + up.stderr)) {
    t.skip(`no cgroup memory limits here: ${up.stderr.trim()}`);
    return;
  }
  assert.equal(up.code, 0, up.stdout + up.stderr);
  const status = async () => JSON.parse((await sb.cli('status', 'hog', '--json')).stdout) as Row;
  const before = await status();
  assert.equal(before.state, 'running');
  const cgroups = readFileSync(`/proc/${before.pid}/cgroup`, 'utf8');
  if (!/\/cell\//.test(cgroups)) {
    t.skip(`the cell runs in no per-cell cgroup (${cgroups.trim().split('\n').join('; ')})`);
    return;
  }

  const client = await Synapse.grow(echoContract('hog'), { waitMs: 10_000, timeoutMs: 60_000 });
  t.after(() => client.$close());
  await assert.rejects(client.die(undefined), (err) => {
    assert.ok(isCellError(err, 'E_CONNECTION_LOST'), String(err));
    return true;
  });
  const after = await waitFor('the OOM kill to be recorded and the cell restarted', async () => {
    const r = await status();
    return r.state === 'running' && r.oomKills >= 1 ? r : undefined;
  });
  assert.match(after.lastExit, /^oom-killed/);
  assert.equal(after.restarts, 1);
  assert.notEqual(after.pid, before.pid);
  assert.equal(await client.echo('again'), 'hog:again');
});
