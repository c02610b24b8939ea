// Everyday operation under a real Root (sandboxed where the host allows): `cell restart` builds before
// it stops anything; a cell's restart policy comes from cell.json and catches a cell that dies a while
// after each start; every log line carries its stream, time and cell; stacks name the cell's .ts source.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isCellError } from '../../../src/errors/index.js';
import { Synapse } from '../../../src/index.js';
import { t } from '../../../src/protein/index.js';
import { rpc, service } from '../../../src/service/index.js';
import { echoCell, echoContract, makeSandbox, sandboxFlags, useSandboxEnv, waitFor } from './harness.js';

interface Row {
  name: string;
  state: string;
  pid: number;
  restarts: number;
  generation: number;
  error: string;
}

interface Entry {
  time: string | null;
  cell: string;
  stream: string | null;
  line: string;
}

test('cell restart builds first: a source that does not build fails the restart and the old process keeps answering', async (tc) => {
  const sb = makeSandbox();
  const restoreEnv = useSandboxEnv(sb);
  tc.after(async () => {
    restoreEnv();
    await sb.cleanup();
  });
  const dir = sb.cell('keeper', echoCell('keeper'));
  sb.manifest({ keeper: { dna: './dna/keeper' } });
  assert.equal((await sb.cli('up', ...sandboxFlags())).code, 0);
  const status = async () => JSON.parse((await sb.cli('status', 'keeper', '--json')).stdout) as Row;
  const before = await status();
  assert.equal(before.state, 'running');
  const client = await Synapse.grow(echoContract('keeper'), { waitMs: 10_000, timeoutMs: 10_000 });
  tc.after(() => client.$close());
  assert.equal(await client.echo('a'), 'keeper:a');

  writeFileSync(join(dir, 'index.ts'), `${echoCell('keeper')}\nconst broken: number = ;\n`);
  const failed = await sb.cli('restart', 'keeper');
  assert.equal(failed.code, 1, failed.stdout);
  assert.match(failed.stderr, /index\.ts:\d+:\d+/, 'the compiler names the file and line');
  assert.match(failed.stderr, /Unexpected ";"/);
  const after = await status();
  assert.equal(after.state, 'running');
  assert.equal(after.pid, before.pid, 'the old process was not stopped');
  assert.equal(after.generation, before.generation);
  // The same connection, and a new one, still reach the old process.
  assert.equal(await client.echo('b'), 'keeper:b');
  const fresh = await Synapse.grow(echoContract('keeper'), { waitMs: 1000, timeoutMs: 5000 });
  assert.equal(await fresh.echo('c'), 'keeper:c');
  await fresh.$close();
  const logs = await sb.cli('logs', 'keeper', '-n', '50');
  assert.match(logs.stdout, /restart refused; generation 1 keeps running/);

  writeFileSync(join(dir, 'index.ts'), echoCell('keeper'));
  const ok = await sb.cli('restart', 'keeper', '--json');
  assert.equal(ok.code, 0, ok.stderr);
  const restarted = JSON.parse(ok.stdout) as Row;
  assert.equal(restarted.state, 'running');
  assert.notEqual(restarted.pid, before.pid);
  assert.equal(restarted.error, '');
});

test('a cell that dies a while after each start is caught as a crash loop by its cell.json policy', async (tc) => {
  const sb = makeSandbox();
  const restoreEnv = useSandboxEnv(sb);
  tc.after(async () => {
    restoreEnv();
    await sb.cleanup();
  });
  // Up, answering, then gone 1.2 s later: with the policy below no two exits fit in the 1 s window,
  // so only the run of failures without a stable (5 s) run can catch it.
  sb.cell('flaky', echoCell('flaky', `setTimeout(() => process.exit(4), 1200);`));
  sb.manifest({
    flaky: {
      dna: './dna/flaky',
      autostart: false,
      restart: { backoffMs: 50, maxBackoffMs: 200, windowMs: 1000, failures: 3, stableMs: 5000 },
    },
  });
  assert.equal((await sb.cli('up', ...sandboxFlags())).code, 0);
  const spawned = await sb.cli('spawn', 'flaky', '--json');
  assert.equal(spawned.code, 0, spawned.stderr);
  const row = await waitFor(
    'the crash-loop mark',
    async () => {
      const r = JSON.parse((await sb.cli('status', 'flaky', '--json')).stdout) as Row;
      return r.state === 'crash-loop' ? r : undefined;
    },
    40_000,
  );
  assert.equal(row.restarts, 2, 'restarted twice, then the third failure in a row stopped it');
  const logs = await sb.cli('logs', 'flaky', '-n', '200');
  assert.match(logs.stdout, /crash-looping: 3 failures in a row, none up 5 s/);
  assert.equal((logs.stdout.match(/ended: exit 4/g) ?? []).length, 3);
  // Nothing restarts it behind the operator's back.
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal((JSON.parse((await sb.cli('status', 'flaky', '--json')).stdout) as Row).state, 'crash-loop');
  await assert.rejects(Synapse.grow(echoContract('flaky'), { waitMs: 300 }), (err) => {
    assert.ok(isCellError(err, 'E_CELL_CRASH_LOOP') || isCellError(err, 'E_CELL_NOT_FOUND'), String(err));
    return true;
  });
});

test('log lines carry stream, time and cell; cell logs --json splits them; stacks name the .ts source', async (tc) => {
  const sb = makeSandbox();
  const restoreEnv = useSandboxEnv(sb);
  tc.after(async () => {
    restoreEnv();
    await sb.cleanup();
  });
  // Line 1 of the source is the import; `boom` throws on a known line of the user's file.
  const source = `import { Membrane, rpc, service, t } from 'cell';
const Svc = service('talker', { boom: rpc(t.unit, t.unit), crash: rpc(t.unit, t.unit) });
function explode(): never {
  throw new TypeError('handler bug');
}
process.stdout.write('half a line');
await new Promise((resolve) => setTimeout(resolve, 100));
process.stdout.write(' and the rest\\n');
console.error('to stderr');
await Membrane.bind(Svc, {
  boom: () => explode(),
  crash: () => {
    setTimeout(() => {
      throw new RangeError('crash bug');
    }, 10);
  },
});
console.log('talker ready');
`;
  const dir = sb.cell('talker', source);
  sb.manifest({ talker: { dna: './dna/talker', restart: { failures: 1 } } });
  assert.equal((await sb.cli('up', ...sandboxFlags())).code, 0);
  const Talker = service('talker', { boom: rpc(t.unit, t.unit), crash: rpc(t.unit, t.unit) });
  const client = await Synapse.grow(Talker, { waitMs: 10_000, timeoutMs: 10_000 });
  await assert.rejects(client.boom(undefined), (err) => {
    assert.ok(isCellError(err, 'E_REMOTE'), String(err));
    assert.match(err.message, /handler bug/);
    return true;
  });
  await client.crash(undefined);
  await client.$close().catch(() => {});
  const entries = await waitFor('the crash in the log', async () => {
    const r = await sb.cli('logs', 'talker', '-n', '500', '--json');
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { lines: string[]; entries: Entry[] };
    assert.equal(doc.lines.length, doc.entries.length);
    return doc.entries.some((e) => e.line.includes('RangeError: crash bug')) &&
      doc.entries.some((e) => /ended: exit 1/.test(e.line))
      ? doc.entries
      : undefined;
  });
  for (const e of entries) {
    assert.equal(e.cell, 'talker', JSON.stringify(e));
    assert.ok(e.stream === 'stdout' || e.stream === 'stderr' || e.stream === 'root', JSON.stringify(e));
    assert.ok(e.time !== null && Math.abs(Date.parse(e.time) - Date.now()) < 120_000, JSON.stringify(e));
  }
  const find = (stream: string, re: RegExp) => entries.find((e) => e.stream === stream && re.test(e.line));
  assert.ok(find('stdout', /^half a line and the rest$/), 'a line written in two pieces is one line');
  assert.ok(find('stderr', /^to stderr$/));
  assert.ok(find('stdout', /^talker ready$/));
  assert.ok(find('root', /started generation 1/));
  // The handler's bug: logged on stderr with its stack, mapped to the user's file and line 4.
  const file = join(dir, 'index.ts').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const bug = entries.findIndex(
    (e) => e.stream === 'stderr' && /method 'boom' threw: TypeError: handler bug/.test(e.line),
  );
  assert.ok(bug >= 0, 'the handler error is logged');
  const bugStack = entries.slice(bug + 1, bug + 6).map((e) => e.line);
  assert.ok(
    bugStack.some((l) => new RegExp(`at explode \\((file://)?${file}:4:\\d+\\)`).test(l)),
    bugStack.join('\n'),
  );
  // The crash: Node's own report of the uncaught exception, mapped the same way (line 14).
  const crash = entries.findIndex((e) => e.stream === 'stderr' && /RangeError: crash bug/.test(e.line));
  const crashStack = entries.slice(crash, crash + 8).map((e) => e.line);
  assert.ok(
    crashStack.some((l) => new RegExp(`\\(?(file://)?${file}:14:\\d+\\)?`).test(l)),
    crashStack.join('\n'),
  );
  // The plain text view has the same lines with their prefixes; -f --json gives one entry per line.
  const plain = await sb.cli('logs', 'talker', '-n', '3');
  for (const line of plain.stdout.trim().split('\n')) {
    assert.match(line, /^\[(stdout|stderr|root) \d{4}-\d\d-\d\dT[\d:.]+Z talker\] /);
  }
});
