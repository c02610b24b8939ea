// The Root's side of the `cell` commands added for a user's first hour: `cell rm`, a second Root's
// refusal, denials that travel as fields (cell, fix) and print once, and `cell startup`'s unit.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { echoCell, makeSandbox, sandboxFlags, useSandboxEnv } from './harness.js';

const rootMain = fileURLToPath(new URL('../../../src/root/main.js', import.meta.url));

test('cell rm stops a cell and forgets it for good; its log stays', async (t) => {
  const sb = makeSandbox();
  const restoreEnv = useSandboxEnv(sb);
  t.after(async () => {
    restoreEnv();
    await sb.cleanup();
  });
  sb.cell('keep', echoCell('keep'));
  sb.cell('gone', echoCell('gone'));
  sb.manifest({ keep: { dna: './dna/keep', autostart: false } });
  const up = await sb.cli('up', sb.dir, ...sandboxFlags());
  assert.equal(up.code, 0, up.stderr);
  const add = await sb.cli('add', 'gone', join(sb.dir, 'dna', 'gone'));
  assert.equal(add.code, 0, add.stderr);
  const spawned = await sb.cli('spawn', 'gone', '--json');
  assert.equal(spawned.code, 0, spawned.stderr);
  const pid = (JSON.parse(spawned.stdout) as { pid: number }).pid;
  const dnaFile = join(sb.env.CELL_HOME as string, 'dna', 'gone.json');
  assert.ok(existsSync(dnaFile));

  const rm = await sb.cli('rm', 'gone');
  assert.equal(rm.code, 0, rm.stderr);
  assert.match(rm.stdout, /^gone: stopped and unregistered \(its log stays at .*gone\.log\)\.$/m);
  assert.equal(existsSync(dnaFile), false);
  assert.throws(() => process.kill(pid, 0), 'its process is gone');
  const log = join(sb.env.CELL_HOME as string, 'logs', 'gone.log');
  assert.match(readFileSync(log, 'utf8'), /unregistered \(cell rm\)/);
  const status = await sb.cli('status', 'gone');
  assert.equal(status.code, 1);
  assert.match(status.stderr, /^cell: cell 'gone': no DNA is registered under this name\.\n {2}fix: register it/);
  const list = JSON.parse((await sb.cli('status', '--json')).stdout) as { cells: Array<{ name: string }> };
  assert.deepEqual(
    list.cells.map((c) => c.name),
    ['keep'],
  );
  const again = await sb.cli('rm', 'gone', '--json');
  assert.equal(again.code, 1);
  assert.equal((JSON.parse(again.stdout) as { error: { code: string; cell: string } }).error.cell, 'gone');

  // A restarted Root does not bring it back (its saved registration is gone).
  assert.equal((await sb.cli('down')).code, 0);
  const up2 = await sb.cli('up', ...sandboxFlags());
  assert.equal(up2.code, 0, up2.stderr);
  assert.doesNotMatch(up2.stdout, /\bgone\b/);
});

test("a second Root says a Root runs (its pid) and how to stop it, not a cell's name", async (t) => {
  const sb = makeSandbox();
  t.after(() => sb.cleanup());
  const up = await sb.cli('up', ...sandboxFlags());
  assert.equal(up.code, 0, up.stderr);
  const second = spawn(process.execPath, [rootMain], { env: sb.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  second.stdout.on('data', (d) => (output += d));
  second.stderr.on('data', (d) => (output += d));
  const code = await new Promise<number | null>((resolve) => second.once('exit', resolve));
  assert.equal(code, 1);
  assert.match(
    output,
    /cannot start: a Root is already running \(pid \d+\) on .*mitosis\.sock\.\n {2}fix: use it \(`cell status`\), or stop it first with `cell down`\./,
  );
  assert.doesNotMatch(output, /cell 'mitosis'|cell down <name>/);
});

test("the Root's own denials name no cell; a cell's denial names it once, with one fix line", async (t) => {
  const sb = makeSandbox();
  t.after(() => sb.cleanup());
  const up = await sb.cli('up', ...sandboxFlags());
  assert.equal(up.code, 0, up.stderr);
  writeFileSync(join(sb.dir, 'bad.json'), JSON.stringify({ cells: [] }));
  const bad = await sb.cli('up', join(sb.dir, 'bad.json'));
  assert.equal(bad.code, 1);
  assert.equal(
    bad.stderr
      .split('\n')
      .filter((l) => l.startsWith('cell:'))
      .join('\n'),
    `cell: ${join(sb.dir, 'bad.json')} needs a "cells" object.`,
  );
  assert.doesNotMatch(bad.stderr, /cell 'mitosis'|method 'load'/);
  const ghost = await sb.cli('spawn', 'ghost');
  assert.equal(ghost.code, 1);
  assert.equal(
    ghost.stderr,
    "cell: cell 'ghost': no DNA is registered under this name.\n  fix: register it: `cell add ghost <dir>` or an entry in cell.json, then `cell up`.\n",
  );
});

test('cell startup writes a systemd user unit that runs this Root, verified where systemd-analyze exists', async (t) => {
  const sb = makeSandbox();
  t.after(() => sb.cleanup());
  const config = join(sb.dir, 'config');
  const env = { XDG_CONFIG_HOME: config };
  const printed = await sb.cliWith(env, 'startup', '--print', '--no-sandbox', '--metrics-port=9464');
  assert.equal(printed.code, 0, printed.stderr);
  assert.match(
    printed.stdout,
    new RegExp(`^ExecStart=${process.execPath} ${rootMain} --no-sandbox --metrics-port 9464$`, 'm'),
  );
  assert.match(printed.stdout, new RegExp(`^Environment=CELL_HOME=${sb.env.CELL_HOME}$`, 'm'));
  assert.match(printed.stdout, /^Environment=CELL_SOCKET_DIR=/m);
  assert.match(printed.stdout, /^Environment="?PATH=/m);
  assert.match(printed.stdout, /^KillMode=mixed$/m);
  assert.match(printed.stdout, /^Delegate=yes$/m);
  assert.match(printed.stdout, /^WantedBy=default\.target$/m);
  assert.equal(existsSync(join(config, 'systemd', 'user', 'cell-root.service')), false, '--print writes nothing');

  const wrote = await sb.cliWith(env, 'startup', '--json');
  const unit = join(config, 'systemd', 'user', 'cell-root.service');
  const body = JSON.parse(wrote.stdout) as {
    path: string;
    verified: { checked: boolean; ok: boolean; output: string };
  };
  assert.equal(body.path, unit);
  assert.ok(existsSync(unit));
  assert.match(readFileSync(unit, 'utf8'), new RegExp(`^ExecStart=${process.execPath} ${rootMain}$`, 'm'));
  if (body.verified.checked) {
    assert.equal(wrote.code, 0, body.verified.output);
    assert.ok(body.verified.ok, body.verified.output);
  } else {
    t.diagnostic(`systemd-analyze verify skipped: ${body.verified.output}`);
  }
  const human = await sb.cliWith(env, 'startup');
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout, /^updated .*cell-root\.service$/m);
  assert.match(human.stdout, body.verified.checked ? /verified with systemd-analyze/ : /not verified: /);
  assert.match(human.stdout, /systemctl --user enable --now cell-root\.service/);
});
