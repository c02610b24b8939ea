// The command-line rules every `cell` command follows (docs/CLI.md): one parser, --opt=value, unknown
// options refused with exit 2 and a suggestion, --help everywhere, --json on read commands, exit codes
// 0/1/2, NO_COLOR, one "fix:" line per error, `cell --about`.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { main } from '../../src/cli/main.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const repo = fileURLToPath(new URL('../../../', import.meta.url));

type Result = { code: number | null; stdout: string; stderr: string };

function run(args: string[], dir: string, env: NodeJS.ProcessEnv = {}): Promise<Result> {
  return new Promise((resolve) => {
    const full: NodeJS.ProcessEnv = {
      ...process.env,
      CELL_HOME: join(dir, 'home'),
      CELL_SOCKET_DIR: join(dir, 'run'),
      XDG_CONFIG_HOME: join(dir, 'config'),
      ...env,
    };
    delete full.CELL_UMBILICAL;
    delete full.NO_COLOR;
    delete full.FORCE_COLOR;
    Object.assign(full, env);
    const child = spawn(process.execPath, [cli, ...args], { env: full, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function scratch(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'cell-rules-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Every command, with arguments that satisfy its positionals (so only the option under test can fail). */
const COMMANDS: Record<string, string[]> = {
  up: [],
  status: [],
  down: [],
  spawn: ['x'],
  stop: ['x'],
  restart: ['x'],
  add: ['x', '.'],
  rm: ['x'],
  swap: ['x'],
  logs: ['x'],
  doctor: [],
  genome: ['x'],
  call: ['x', 'm'],
  new: ['x'],
  startup: [],
  top: [],
  metrics: [],
  tap: ['x'],
  'mesh init': [],
  'mesh join': [],
  'mesh sign': ['host.csr'],
  'mesh status': [],
};

/** Runs the CLI's main() in this process, capturing what it writes (for checks that end at parsing). */
async function inProcess(args: string[]): Promise<Result> {
  let stdout = '';
  let stderr = '';
  const out = process.stdout.write;
  const err = process.stderr.write;
  process.stdout.write = ((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  }) as typeof process.stderr.write;
  try {
    const code = await main(args);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

test('every command has --help (exit 0, its usage) and refuses an unknown option with exit 2', async () => {
  for (const [name, positionals] of Object.entries(COMMANDS)) {
    const words = name.split(' ');
    const help = await inProcess([...words, '--help']);
    assert.equal(help.code, 0, `${name} --help: ${help.stderr}`);
    assert.match(help.stdout, new RegExp(`usage: cell ${name}`), name);
    const viaHelp = await inProcess(['help', words[0] as string]);
    assert.equal(viaHelp.code, 0, `cell help ${name}`);

    const bad = await inProcess([...words, ...positionals, '--bogus-option']);
    assert.equal(bad.code, 2, `${name} --bogus-option: ${bad.stdout}${bad.stderr}`);
    assert.match(bad.stderr, /unknown option --bogus-option/, name);
    const near = await inProcess([...words, ...positionals, '--hepl=1']);
    assert.equal(near.code, 2, name);
    assert.match(near.stderr, /unknown option --hepl; did you mean --help\?/, name);
  }
  // The same through a real process: the exit status is what the shell sees.
  const dir = mkdtempSync(join(tmpdir(), 'cell-rules-'));
  try {
    const bad = await run(['status', '--bogus-option'], dir);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^cell status: unknown option --bogus-option\nusage: cell status/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--opt=value is accepted like --opt value', async (t) => {
  const dir = scratch(t);
  mkdirSync(join(dir, 'home', 'logs'), { recursive: true });
  writeFileSync(join(dir, 'home', 'logs', 'x.log'), 'one\ntwo\nthree\n');
  for (const args of [
    ['logs', 'x', '--lines=2'],
    ['logs', 'x', '--lines', '2'],
    ['logs', 'x', '-n', '2'],
  ]) {
    const r = await run(args, dir);
    assert.equal(r.code, 0, args.join(' '));
    assert.equal(r.stdout, 'two\nthree\n', args.join(' '));
  }
  const top = await run(['top', '--plain', '--interval=20', '--count=2'], dir);
  assert.equal(top.code, 0, top.stderr);
  assert.equal(top.stdout.trim().split('\n').length, 2);
});

test('read commands take --json and print JSON, on success and on failure', async (t) => {
  const dir = scratch(t);
  mkdirSync(join(dir, 'home', 'logs'), { recursive: true });
  writeFileSync(join(dir, 'home', 'logs', 'x.log'), 'a\nb\n');
  // biome-ignore lint/suspicious/noExplicitAny: each check reads the JSON of a different command
  const ok: Array<[string[], (v: any) => void]> = [
    [['logs', 'x', '--json'], (v) => assert.deepEqual(v.lines, ['a', 'b'])],
    [['doctor', '--json'], (v) => assert.ok(Array.isArray(v.checks))],
    [['metrics', '--json'], (v) => assert.deepEqual(v.cells, [])],
    [['startup', '--json'], (v) => assert.match(v.path, /cell-root\.service$/)],
  ];
  for (const [args, check] of ok) {
    const r = await run(args, dir);
    assert.ok(r.code === 0 || (args[0] === 'doctor' && r.code === 1), `${args.join(' ')}: ${r.stderr}`);
    check(JSON.parse(r.stdout));
  }
  const top = await run(['top', '--json', '--count=1', '--interval=10'], dir);
  assert.equal(top.code, 0, top.stderr);
  // No cells: nothing to print, and nothing that is not JSON.
  for (const line of top.stdout.split('\n').filter(Boolean)) JSON.parse(line);
  for (const args of [
    ['status', '--json'],
    ['status', 'x', '--json'],
    ['genome', 'x', '--json'],
    ['tap', 'x', '--json'],
  ]) {
    const r = await run(args, dir, { CELL_LAN: '0' });
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
    const body = JSON.parse(r.stdout) as { error: { code: string; message: string } };
    assert.match(body.error.code, /^E_/, args.join(' '));
  }
});

test('exit codes: 0 success, 1 failure, 2 usage (documented in docs/CLI.md)', async (t) => {
  const dir = scratch(t);
  assert.equal((await run(['--version'], dir)).code, 0);
  assert.equal((await run([], dir)).code, 2);
  const typo = await run(['stauts'], dir);
  assert.equal(typo.code, 2);
  assert.match(typo.stderr, /unknown command 'stauts'; did you mean status\?/);
  const interval = await run(['top', '--interval', 'abc'], dir);
  assert.equal(interval.code, 2);
  assert.match(interval.stderr, /--interval takes a positive number, not 'abc'/);
  assert.equal((await run(['top', '--count', '0'], dir)).code, 2);
  assert.equal((await run(['metrics', '--serve', 'http'], dir)).code, 2);
  assert.equal((await run(['tap'], dir)).code, 2);
  assert.equal((await run(['up', '--metrics-port', 'x'], dir)).code, 2);
  assert.equal((await run(['stop', 'Bad/Name'], dir)).code, 2);
  assert.equal((await run(['call', 'x', 'm', '{not json'], dir)).code, 2);
  assert.equal((await run(['mesh', 'sgin'], dir)).code, 2);
  assert.equal((await run(['status'], dir)).code, 1);
  const docs = readFileSync(join(repo, 'docs', 'CLI.md'), 'utf8');
  assert.match(docs, /\*\*0\*\* on success, \*\*1\*\* on failure and \*\*2\*\* on a usage error/);
  assert.match(docs, /cell top --interval abc/);
});

test('an error prints its cause once and its fix on one line; --json carries the fields', async (t) => {
  const dir = scratch(t);
  const r = await run(['status'], dir);
  assert.equal(r.code, 1);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 2, r.stderr);
  assert.match(lines[0] as string, /^cell: no Root is running \(nothing answers on .*\)\.$/);
  assert.match(lines[1] as string, /^ {2}fix: start it with `cell up`/);
  assert.doesNotMatch(r.stderr, /Fix:/);
  const j = await run(['status', '--json'], dir);
  const { error } = JSON.parse(j.stdout) as { error: Record<string, unknown> };
  assert.equal(error.code, 'E_ROOT_UNAVAILABLE');
  assert.doesNotMatch(String(error.message), /fix/i);
  assert.match(String(error.fix), /cell up/);
});

test('colour only when asked for and never under NO_COLOR', async (t) => {
  const dir = scratch(t);
  const plain = await run(['doctor'], dir);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: looks for ANSI colour escapes
  assert.doesNotMatch(plain.stdout, /\x1b\[/, 'a pipe gets no colour');
  const forced = await run(['doctor'], dir, { FORCE_COLOR: '1' });
  // biome-ignore lint/suspicious/noControlCharactersInRegex: looks for ANSI colour escapes
  assert.match(forced.stdout, /\x1b\[3\dm/);
  const refused = await run(['doctor'], dir, { FORCE_COLOR: '1', NO_COLOR: '1' });
  // biome-ignore lint/suspicious/noControlCharactersInRegex: looks for ANSI colour escapes
  assert.doesNotMatch(refused.stdout, /\x1b\[/);
  const err = await run(['status'], dir, { FORCE_COLOR: '1', NO_COLOR: '1' });
  // biome-ignore lint/suspicious/noControlCharactersInRegex: looks for ANSI colour escapes
  assert.doesNotMatch(err.stderr, /\x1b\[/);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: looks for ANSI colour escapes
  assert.match((await run(['status'], dir, { FORCE_COLOR: '1' })).stderr, /\x1b\[31mcell:/);
});

test('cell --about prints the ATTRIBUTION notice of the original Cell design', async (t) => {
  const dir = scratch(t);
  const r = await run(['--about'], dir);
  assert.equal(r.code, 0);
  const notice = readFileSync(join(repo, 'ATTRIBUTION'), 'utf8');
  assert.equal(r.stdout, notice.endsWith('\n') ? notice : `${notice}\n`);
  assert.match(notice, /Leif Rydenfalk/);
  assert.match(notice, /Copyright \(c\) 2025 Leif Rydenfalk/);
  assert.match(notice, /MIT \+ Attribution/);
  assert.match(notice, /github\.com\/Leif-Rydenfalk\/cell/);
});
