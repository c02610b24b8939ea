import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { statusTable } from '../../src/cli/main.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const bin = fileURLToPath(new URL('../../../bin/cell.js', import.meta.url));

function run(
  args: string[],
  dir: string,
  entry = cli,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const env = {
      ...process.env,
      CELL_HOME: join(dir, 'home'),
      CELL_SOCKET_DIR: join(dir, 'run'),
    };
    const child = spawn(process.execPath, [entry, ...args], { env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** `cell logs x -f -n 1` in `dir`, running until the test ends: what it printed so far, and a wait for a pattern. */
function followLogs(t: { after(fn: () => void): void }, dir: string) {
  const env = { ...process.env, CELL_HOME: join(dir, 'home'), CELL_SOCKET_DIR: join(dir, 'run') };
  const child = spawn(process.execPath, [cli, 'logs', 'x', '-f', '-n', '1'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  let seen = '';
  child.stdout.on('data', (d) => (seen += d));
  const until = async (re: RegExp) => {
    const deadline = Date.now() + 10_000;
    while (!re.test(seen)) {
      if (Date.now() > deadline) throw new Error(`never saw ${re} in ${JSON.stringify(seen)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { child, seen: () => seen, until };
}

test('help, version, usage errors and exit codes; errors as `cell: …` with the fix; --json', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  const help = await run(['--help'], dir);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /usage: cell <command>/);
  for (const cmd of ['up', 'status', 'down', 'spawn', 'stop', 'restart', 'add', 'swap', 'logs', 'doctor']) {
    const r = await run([cmd, '--help'], dir);
    assert.equal(r.code, 0, cmd);
    assert.match(r.stdout, new RegExp(`usage: cell ${cmd}`), cmd);
  }
  const topHelp = await run(['top', '--help'], dir);
  assert.equal(topHelp.code, 0);
  assert.match(topHelp.stdout, /usage: cell top/);

  const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8'));
  const version = await run(['--version'], dir, bin);
  assert.equal(version.code, 0);
  assert.equal(version.stdout.trim(), `cell ${pkg.version}`);
  // npm runs bins through links in node_modules/.bin (`npx cell`), under whatever name the link has.
  mkdirSync(join(dir, '.bin'));
  symlinkSync(bin, join(dir, '.bin', 'cell'));
  const linked = await run(['--version'], dir, join(dir, '.bin', 'cell'));
  assert.equal(linked.stdout.trim(), `cell ${pkg.version}`);

  const none = await run([], dir);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /usage: cell/);
  const unknown = await run(['frobnicate'], dir);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command 'frobnicate'/);
  // A PM2 user's words lead to the command that does the same.
  for (const [word, answer] of [
    ['list', /PM2's `list` is `cell status`/],
    ['reload', /`cell swap <name>`/],
    ['monit', /`cell top`/],
  ] as const) {
    const r = await run([word], dir);
    assert.equal(r.code, 2);
    assert.match(r.stderr, answer);
  }
  const missing = await run(['spawn'], dir);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /expected exactly one cell name/);
  const badFlag = await run(['status', '--frob'], dir);
  assert.equal(badFlag.code, 2);
  assert.match(badFlag.stderr, /unknown option --frob/);
  const badName = await run(['stop', 'Bad/Name'], dir);
  assert.equal(badName.code, 2);
  assert.match(badName.stderr, /invalid cell name/);

  // No Root: a failure (1) that says how to start one.
  const status = await run(['status'], dir);
  assert.equal(status.code, 1);
  assert.match(status.stderr, /^cell: no Root is running/);
  assert.match(status.stderr, /fix: start it with `cell up`/);
  const json = await run(['status', '--json'], dir);
  assert.equal(json.code, 1);
  assert.equal((JSON.parse(json.stdout) as { error: { code: string } }).error.code, 'E_ROOT_UNAVAILABLE');
  const down = await run(['down', '--json'], dir);
  assert.equal(down.code, 0);
  assert.deepEqual(JSON.parse(down.stdout), { running: false, stopped: 0 });
  const logs = await run(['logs', 'nobody'], dir);
  assert.equal(logs.code, 1);
  assert.match(logs.stderr, /no log at/);
  const noManifest = await run(['up', join(dir, 'nowhere')], dir);
  assert.equal(noManifest.code, 1);
  assert.match(noManifest.stderr, /no manifest at/);

  const doctor = await run(['doctor', '--json'], dir);
  assert.ok(doctor.code === 0 || doctor.code === 1);
  const checks = (JSON.parse(doctor.stdout) as { checks: Array<{ name: string; ok: boolean; disables: string }> })
    .checks;
  assert.ok(checks.length > 0);
  assert.equal(doctor.code, checks.every((c) => c.ok) ? 0 : 1);
});

test('the status table shows every column and is loud about --no-sandbox', () => {
  const row = {
    name: 'exchange',
    state: 'running',
    pid: 4242,
    startedAt: 1,
    uptimeMs: 65_000,
    restarts: 2,
    generation: 3,
    transport: 'socket+shm',
    sandbox: 'none',
    memoryBytes: 48 * 1024 * 1024,
    lastExit: 'oom-killed (signal SIGKILL)',
    oomKills: 1,
    dna: '/x',
    socketPath: '/x.sock',
    error: '',
    build: undefined,
  };
  const text = statusTable([row], true);
  const [head, line] = text.split('\n');
  assert.match(head as string, /^NAME\s+STATE\s+PID\s+UPTIME\s+RESTARTS\s+TRANSPORT\s+SANDBOX\s+MEMORY\s+LAST EXIT$/);
  assert.match(line as string, /^exchange\s+running\s+4242\s+1m\s*0?5s\s+2\s+socket\+shm\s+NONE!\s+48(\.0)?\s*Mi?B?\s/);
  assert.match(line as string, /oom-killed/);
  assert.match(text, /WITHOUT A SANDBOX/);
  const sandboxed = statusTable([{ ...row, sandbox: 'bwrap', error: 'build failed:\nx.ts:1:1: oops' }], false);
  assert.doesNotMatch(sandboxed, /WITHOUT A SANDBOX/);
  assert.match(sandboxed, /exchange: build failed:\n\s+x\.ts:1:1: oops/);
  assert.match(statusTable([], false), /no cells registered/);
});

test('cell logs prints the tail and follows appends across a rotation', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const logs = join(dir, 'home', 'logs');
  mkdirSync(logs, { recursive: true });
  const path = join(logs, 'x.log');
  writeFileSync(path, 'one\ntwo\nthree\n');
  const tail = await run(['logs', 'x', '-n', '2'], dir);
  assert.equal(tail.code, 0);
  assert.equal(tail.stdout, 'two\nthree\n');

  const { child, seen: output, until } = followLogs(t, dir);
  await until(/^three\n/);
  appendFileSync(path, 'four\n');
  await until(/four\n/);
  renameSync(path, `${path}.1`);
  writeFileSync(path, 'five\n');
  await until(/five\n/);
  const code = await new Promise<number | null>((resolve) => {
    child.once('exit', (c) => resolve(c));
    child.kill('SIGTERM');
  });
  assert.equal(code, 0);
  assert.doesNotMatch(output(), /one|two/);
});

test('cell logs shows what a cell wrote without letting it drive the terminal: colour stays, other escapes are shown', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const logs = join(dir, 'home', 'logs');
  mkdirSync(logs, { recursive: true });
  const hostile = [
    '[stdout 2026-01-01T00:00:00.000Z x] \x1b[31mred\x1b[0m',
    '[stdout 2026-01-01T00:00:00.000Z x] \x1b]52;c;ZXZpbA==\x07clipboard',
    '[stdout 2026-01-01T00:00:00.000Z x] \x1b[1A\x1b[2Kok\r[root 2026-01-01T00:00:00.000Z x] forged',
  ];
  writeFileSync(join(logs, 'x.log'), `${hostile.join('\n')}\n`);
  for (const follow of [false, true]) {
    let stdout: string;
    if (follow) {
      const { child, seen, until } = followLogs(t, dir);
      // The tail first: then the follower has taken the file's size, and the append is new to it.
      await until(/forged/);
      appendFileSync(join(logs, 'x.log'), `${hostile.join('\n')}\n`);
      await until(/forged[\s\S]*forged/);
      child.kill('SIGTERM');
      stdout = seen();
    } else {
      const r = await run(['logs', 'x'], dir);
      assert.equal(r.code, 0);
      stdout = r.stdout;
    }
    assert.ok(stdout.includes('\x1b[31mred\x1b[0m'), `colour passes (follow ${follow}): ${JSON.stringify(stdout)}`);
    assert.match(stdout, /\\x1b\]52;c;ZXZpbA==\\x07clipboard/);
    assert.match(stdout, /\\x1b\[1A\\x1b\[2Kok\\x0d\[root/);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: only SGR colour may reach the terminal
    assert.doesNotMatch(stdout.replace(/\x1b\[[0-9;]*m/g, ''), /[\x00-\x08\x0b-\x1f\x7f-\x9f]/);
  }
  const json = await run(['logs', 'x', '--json'], dir);
  assert.equal(
    (JSON.parse(json.stdout) as { lines: string[] }).lines[1],
    hostile[1],
    '--json keeps the bytes, escaped by JSON',
  );
});
