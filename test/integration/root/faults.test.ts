// Faults seen from outside: `cell up` must report a cell of several that failed to start, and a
// crash-restart must not leave the dead generation's socket and lock behind.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
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
