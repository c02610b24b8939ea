// `cell new`: the files it writes, what it refuses, and that its TypeScript compiles under strict
// settings against this checkout's source (the packed package is compiled the same way in
// test/integration/package).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { typeName } from '../../src/cli/scaffold.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const repo = fileURLToPath(new URL('../../../', import.meta.url));

function run(args: string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function scratch(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'cell-new-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('type names for contracts', () => {
  assert.equal(typeName('greeter'), 'Greeter');
  assert.equal(typeName('order-book'), 'OrderBook');
  assert.equal(typeName('my_cell_2'), 'MyCell2');
  assert.equal(typeName('3d-render'), 'Cell3dRender');
});

test('cell new writes a contract, a cell, a caller, cell.json with $schema, tsconfig and package.json', async (t) => {
  const dir = scratch(t);
  const r = await run(['new', 'order-book', '--json'], dir);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { created: string[]; notes: string[] };
  assert.deepEqual(out.created.sort(), [
    'call-order-book.ts',
    'cell.json',
    'order-book/contract.ts',
    'order-book/index.ts',
    'package.json',
    'tsconfig.json',
  ]);
  const manifest = JSON.parse(readFileSync(join(dir, 'cell.json'), 'utf8')) as { $schema: string; cells: object };
  assert.deepEqual(manifest.cells, { 'order-book': { dna: './order-book' } });
  assert.ok(existsSync(join(dir, manifest.$schema)), `${manifest.$schema} resolves`);
  assert.match(
    readFileSync(join(dir, 'order-book', 'contract.ts'), 'utf8'),
    /export const OrderBook = service\('order-book'/,
  );
  assert.equal((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { type: string }).type, 'module');

  // A second cell joins the same manifest; a taken name is refused.
  const second = await run(['new', 'ledger'], dir);
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, /^created cell 'ledger' in /);
  assert.match(second.stdout, /npx cell call ledger greet/);
  const both = JSON.parse(readFileSync(join(dir, 'cell.json'), 'utf8')) as { $schema: string; cells: object };
  assert.deepEqual(Object.keys(both.cells), ['order-book', 'ledger']);
  assert.equal(both.$schema, manifest.$schema);
  const taken = await run(['new', 'ledger'], dir);
  assert.equal(taken.code, 1);
  assert.match(taken.stderr, /already exists/);
  const invalid = await run(['new', 'Bad Name'], dir);
  assert.equal(invalid.code, 2);
});

test('an existing package.json gets "type": "module" and is told what tsc needs', async (t) => {
  const dir = scratch(t);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'mine', type: 'commonjs' }));
  const r = await run(['new', 'echo'], dir);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /note: package\.json: set "type": "module"/);
  assert.match(r.stdout, /note: for `tsc`: npm install -D typescript @types\/node/);
  assert.equal((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { type: string }).type, 'module');
});

test('a cell.json or package.json it cannot use: a clear error naming the file, and nothing written', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['cell.json', '{ "cells": ', /cell\.json is not valid JSON/],
    ['cell.json', 'null', /cell\.json does not hold a JSON object/],
    ['cell.json', '[1, 2]', /cell\.json does not hold a JSON object/],
    ['cell.json', '{ "cells": [] }', /"cells" is not an object/],
    ['package.json', '{ "name": ', /package\.json is not valid JSON/],
    ['package.json', '"mine"', /package\.json does not hold a JSON object/],
  ];
  for (const [file, text, message] of cases) {
    const dir = scratch(t);
    writeFileSync(join(dir, file), text);
    const r = await run(['new', 'echo'], dir);
    assert.equal(r.code, 1, `${file} ${text}: ${r.stdout}`);
    assert.match(r.stderr, message);
    assert.match(r.stderr, /fix/i);
    assert.doesNotMatch(r.stderr, /at .*\.js:\d+/, 'no stack trace');
    assert.equal(existsSync(join(dir, 'echo')), false, `${file} ${text}: the cell folder was written`);
    assert.equal(readFileSync(join(dir, file), 'utf8'), text, `${file} was changed`);
  }
});

test("the scaffold type-checks under its own strict tsconfig (against this checkout's source)", async (t) => {
  const dir = scratch(t);
  assert.equal((await run(['new', 'hello'], dir)).code, 0);
  // The generated tsconfig.json, with `cell-runtime` mapped to this checkout and Node's types from it.
  const generated = JSON.parse(readFileSync(join(dir, 'tsconfig.json'), 'utf8')) as {
    compilerOptions: Record<string, unknown>;
  };
  assert.equal(generated.compilerOptions.strict, true);
  writeFileSync(
    join(dir, 'tsconfig.check.json'),
    JSON.stringify({
      extends: './tsconfig.json',
      compilerOptions: {
        noEmit: true,
        // This checkout's source joins the program: it lies outside the project folder.
        rootDir: '/',
        paths: { 'cell-runtime': [join(repo, 'src', 'index.ts')] },
        typeRoots: [join(repo, 'node_modules', '@types')],
      },
      include: ['*.ts', 'hello/*.ts'],
    }),
  );
  const tsc = createRequire(join(repo, 'package.json')).resolve('typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(dir, 'tsconfig.check.json')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
