// `cell call` and `cell genome` against a running cell (no Root): the contract comes from the cell's
// genome, the input is JSON, the reply is printed as JSON (64-bit integers as strings).
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const runtime = pathToFileURL(fileURLToPath(new URL('../../src/index.js', import.meta.url))).href;

const CELL = `import { CellError, Membrane, protein, rpc, service, t } from ${JSON.stringify(runtime)};
const Side = t.enum('Side', { Buy: null, Sell: t.u64 });
const Order = protein('Order', { symbol: t.string, amount: t.u64, side: Side, tags: t.vec(t.string), note: t.option(t.string), blob: t.bytes });
const Ack = protein('Ack', { id: t.u64, echo: Order, total: t.i64 });
const Calc = service('calc', {
  place: rpc(Order, Ack),
  divide: rpc(protein('Div', { a: t.int, b: t.int }), t.int),
  ping: rpc(t.unit, t.unit),
  slow: rpc(t.uint, t.uint),
  crash: rpc(t.unit, t.unit),
});
await Membrane.bind(Calc, {
  place: (o) => ({ id: 2n ** 60n + 1n, echo: { symbol: o.symbol, amount: o.amount, side: o.side, tags: o.tags.toArray(), note: o.note, blob: o.blob }, total: -BigInt(o.tags.length) }),
  divide: (d) => {
    if (d.b === 0) throw new CellError('E_INVALID_ARGUMENT', 'division by zero.', { fix: 'pass a non-zero b.' });
    return Math.trunc(d.a / d.b);
  },
  ping: () => undefined,
  slow: (ms) => new Promise((r) => setTimeout(() => r(ms), ms)),
  crash: () => { throw new Error('kaput'); },
});
process.stdout.write('ready\\n');
`;

let dir = '';
let cell: ChildProcess;
let env: NodeJS.ProcessEnv;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cell-call-'));
  env = { ...process.env, CELL_HOME: join(dir, 'home'), CELL_SOCKET_DIR: join(dir, 'run'), CELL_LAN: '0' };
  delete env.CELL_UMBILICAL;
  delete env.CELL_PEER;
  writeFileSync(join(dir, 'cell.mjs'), CELL);
  cell = spawn(process.execPath, [join(dir, 'cell.mjs')], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    cell.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) resolve();
    });
    cell.once('exit', (code) => reject(new Error(`the cell exited (${code})`)));
  });
});

after(() => {
  cell.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function run(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('cell genome prints the contract the cell describes', async () => {
  const r = await run('genome', 'calc');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^calc: service 'calc', fingerprint 0x[0-9a-f]{16}, protocol 1$/m);
  assert.match(
    r.stdout,
    /0 {2}place\(Order \{ symbol: string, amount: u64, side: Side\(Buy \| Sell\(u64\)\), tags: vec<string>, note\?: string, blob: bytes \}\) → Ack/,
  );
  assert.match(r.stdout, /2 {2}ping\(nothing\) → nothing/);
  const j = await run('genome', 'calc', '--json');
  const reply = JSON.parse(j.stdout) as { fingerprint: string; genome: { kind: string } };
  assert.equal(reply.genome.kind, 'service');
  assert.ok(r.stdout.includes(reply.fingerprint));
});

test('cell call encodes JSON through the genome and prints the decoded reply as JSON', async () => {
  const input = {
    symbol: 'BTC',
    amount: '18446744073709551615',
    side: { tag: 'Sell', value: 7 },
    tags: ['a', 'b'],
    note: null,
    blob: Buffer.from([1, 2, 3]).toString('base64'),
  };
  const r = await run('call', 'calc', 'place', JSON.stringify(input));
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), {
    id: '1152921504606846977',
    echo: { ...input, side: { tag: 'Sell', value: '7' } },
    total: '-2',
  });
  // --json: one line; a plain number for a u64 and a bare tag for a variant without payload.
  const small = await run('call', 'calc', 'place', JSON.stringify({ ...input, amount: 5, side: 'Buy' }), '--json');
  assert.equal(small.code, 0, small.stderr);
  assert.equal(small.stdout.trim().split('\n').length, 1);
  const reply = JSON.parse(small.stdout) as { echo: { amount: string; side: unknown } };
  assert.equal(reply.echo.amount, '5');
  assert.deepEqual(reply.echo.side, { tag: 'Buy' });

  const ping = await run('call', 'calc', 'ping');
  assert.equal(ping.code, 0, ping.stderr);
  assert.equal(ping.stdout.trim(), 'null');
  const div = await run('call', 'calc', 'divide', '{"a": 7, "b": 2}');
  assert.equal(div.stdout.trim(), '3');
});

test('cell call refuses input that does not fit the method with exit 2, naming the path and the shape', async () => {
  const typo = await run('call', 'calc', 'divide', '{"a": 1, "bb": 2}');
  assert.equal(typo.code, 2);
  assert.match(typo.stderr, /input \$: Div has no field 'bb'; did you mean b\?/);
  assert.match(typo.stderr, /divide takes Div \{ a: int, b: int \}/);
  const type = await run('call', 'calc', 'divide', '{"a": "1", "b": 2}');
  assert.equal(type.code, 2);
  assert.match(type.stderr, /input \$\.a: expected an integer/);
  const missing = await run('call', 'calc', 'divide');
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /divide takes Div \{ a: int, b: int \}; pass it as JSON/);
  const method = await run('call', 'calc', 'devide', '{}');
  assert.equal(method.code, 2);
  assert.match(method.stderr, /no method 'devide'; did you mean divide\? \(it has: place, divide, ping, slow, crash\)/);
});

test("a handler's error reaches the terminal once: cause, cell and method, one fix line; --json keeps the fields", async () => {
  const r = await run('call', 'calc', 'divide', '{"a": 1, "b": 0}');
  assert.equal(r.code, 1);
  assert.equal(r.stderr, "cell: cell 'calc', method 'divide': division by zero.\n  fix: pass a non-zero b.\n");
  const j = await run('call', 'calc', 'divide', '{"a": 1, "b": 0}', '--json');
  const { error } = JSON.parse(j.stdout) as { error: Record<string, unknown> };
  assert.equal(error.code, 'E_INVALID_ARGUMENT');
  assert.equal(error.message, 'division by zero.');
  assert.equal(error.cell, 'calc');
  assert.equal(error.method, 'divide');
  assert.equal(error.fix, 'pass a non-zero b.');
  const crash = await run('call', 'calc', 'crash');
  assert.equal(crash.code, 1);
  assert.equal(crash.stderr, "cell: cell 'calc', method 'crash': kaput\n");
  const slow = await run('call', 'calc', 'slow', '2000', '--timeout=100');
  assert.equal(slow.code, 1);
  assert.match(slow.stderr, /no reply within 100 ms/);
});

test('cell call names a cell that is not there', async () => {
  const r = await run('call', 'nobody', 'ping');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^cell: cell 'nobody': cell not found/);
});
