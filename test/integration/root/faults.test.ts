// Faults seen from outside: `cell up` must report a cell of several that failed to start, and a
// crash-restart must not leave the dead generation's socket and lock behind.
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isCellError } from '../../../src/errors/index.js';
import { Synapse } from '../../../src/index.js';
import { echoCell, echoContract, makeSandbox, sandboxFlags, useSandboxEnv, waitFor } from './harness.js';

test('cell up exits 1 when one cell of several fails to start, and names it', async (t) => {
  const sb = makeSandbox();
  const restoreEnv = useSandboxEnv(sb);
  t.after(async () => {
    restoreEnv();
    await sb.cleanup();
  });
  sb.cell('one', echoCell('one'));
  sb.cell('two', echoCell('two'));
  sb.cell('broken', `console.log('broken starts and dies'); process.exit(2);\n`);
  sb.manifest({ one: { dna: './dna/one' }, broken: { dna: './dna/broken' }, two: { dna: './dna/two' } });
  const up = await sb.cli('up', ...sandboxFlags(), '--json');
  assert.equal(up.code, 1, up.stdout);
  const rows = (JSON.parse(up.stdout) as { cells: Array<{ name: string; state: string; error: string }> }).cells;
  const broken = rows.find((r) => r.name === 'broken');
  assert.notEqual(broken?.state, 'running');
  assert.match(broken?.error ?? '', /did not become ready/);
  for (const name of ['one', 'two']) assert.equal(rows.find((r) => r.name === name)?.state, 'running');
});

test('a crash-restart leaves only the live generation in the cell dir', async (t) => {
  const sb = makeSandbox();
  const restoreEnv = useSandboxEnv(sb);
  t.after(async () => {
    restoreEnv();
    await sb.cleanup();
  });
  sb.cell('fragile', echoCell('fragile'));
  sb.manifest({ fragile: { dna: './dna/fragile' } });
  assert.equal((await sb.cli('up', ...sandboxFlags())).code, 0);
  const dir = join(sb.env.CELL_SOCKET_DIR as string, 'fragile');
  for (let crash = 1; crash <= 2; crash++) {
    const client = await Synapse.grow(echoContract('fragile'), { waitMs: 20_000, timeoutMs: 10_000 });
    assert.equal(await client.echo('x'), 'fragile:x');
    await assert.rejects(client.die(undefined), (err) => {
      assert.ok(isCellError(err, 'E_CONNECTION_LOST'), `crash ${crash}: ${String(err)}`);
      return true;
    });
    await client.$close();
    await waitFor(`restart ${crash}`, async () => {
      const row = JSON.parse((await sb.cli('status', 'fragile', '--json')).stdout) as {
        state: string;
        generation: number;
      };
      return row.state === 'running' && row.generation === crash + 1 ? row : undefined;
    });
  }
  assert.deepEqual(readdirSync(dir).sort(), ['fragile.3.lock', 'fragile.3.sock', 'fragile.sock']);
});

test('a name registered from one manifest is not re-pointed by another unless --replace', async (t) => {
  const sb = makeSandbox();
  const restoreEnv = useSandboxEnv(sb);
  t.after(async () => {
    restoreEnv();
    await sb.cleanup();
  });
  sb.cell('shared', echoCell('shared'));
  sb.manifest({ shared: { dna: './dna/shared', autostart: false } });
  assert.equal((await sb.cli('up', ...sandboxFlags())).code, 0);
  const other = join(sb.dir, 'other');
  mkdirSync(join(other, 'dna'), { recursive: true });
  cpSync(join(sb.dir, 'dna', 'shared'), join(other, 'dna', 'shared'), { recursive: true });
  writeFileSync(
    join(other, 'cell.json'),
    JSON.stringify({ cells: { shared: { dna: './dna/shared', autostart: false } } }),
  );
  const refused = await sb.cliAt(other, 'up');
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /cell 'shared': the name is registered from .*cell\.json/);
  assert.match(refused.stderr, /--replace/);
  const taken = await sb.cliAt(other, 'up', '--replace', '--json');
  assert.equal(taken.code, 0, taken.stderr);
  const row = (JSON.parse(taken.stdout) as { cells: Array<{ name: string; dna: string }> }).cells[0];
  assert.equal(row?.dna, join(other, 'dna', 'shared'));
});

test('a cell flooding its output: the Root keeps answering, the log stays bounded, the cell keeps serving', async (t) => {
  const sb = makeSandbox();
  const restoreEnv = useSandboxEnv(sb);
  t.after(async () => {
    restoreEnv();
    await sb.cleanup();
  });
  // Serves like echoCell and writes 1 KiB lines as fast as the pipe takes them.
  sb.cell(
    'loud',
    `${echoCell('loud')}
const line = 'x'.repeat(1023) + '\\n';
// Writes to a pipe are synchronous on Linux: a burst, then the event loop, so calls are still served.
const flood = () => { for (let i = 0; i < 64; i++) process.stdout.write(line); setImmediate(flood); };
flood();
`,
  );
  sb.manifest({ loud: { dna: './dna/loud' } });
  assert.equal((await sb.cli('up', ...sandboxFlags())).code, 0);
  const logs = join(sb.env.CELL_HOME as string, 'logs');
  const written = () =>
    readdirSync(logs)
      .filter((f) => f.startsWith('loud.log'))
      .reduce((n, f) => n + statSync(join(logs, f)).size, 0);
  // Past two rotations (10 MiB each) of flooding, the Root still answers and the cell still serves.
  await waitFor(
    'the flood to fill two log files',
    () => (existsSync(join(logs, 'loud.log.2')) ? true : undefined),
    120_000,
  );
  const status = await sb.cli('status', 'loud', '--json');
  assert.equal(status.code, 0, status.stderr);
  assert.equal((JSON.parse(status.stdout) as { state: string }).state, 'running');
  const client = await Synapse.grow(echoContract('loud'), { waitMs: 20_000, timeoutMs: 20_000 });
  t.after(() => client.$close());
  assert.equal(await client.echo('still here'), 'loud:still here');
  // Rotation keeps the current file and three old ones of 10 MiB.
  assert.ok(written() <= 4 * 10 * 1024 * 1024 + 64 * 1024, `logs hold ${written()} bytes`);
  assert.equal(existsSync(join(logs, 'loud.log.4')), false);
});
