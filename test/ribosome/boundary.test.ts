import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { type CellError, formatCellError, isCellError } from '../../src/errors/index.js';
import { type Dna, synthesize } from '../../src/ribosome/index.js';
import { parseJsonText } from '../../src/ribosome/json.js';

const SECRET = 'hunter2-TOPSECRET';

/**
 * <root>/project            the manifest's folder (with its node_modules)
 * <root>/project/dna        the cell's DNA
 * <root>/project/shared     a contract folder, declared only where a test says so
 * <root>/outside            nothing of it may be read
 */
function workspace(t: TestContext) {
  const root = mkdtempSync(join(tmpdir(), 'cell-boundary-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const project = join(root, 'project');
  const ws = {
    root,
    project,
    dna: join(project, 'dna'),
    shared: join(project, 'shared'),
    outside: join(root, 'outside'),
    cache: join(root, 'cache'),
  };
  for (const d of [ws.dna, ws.shared, ws.outside]) mkdirSync(d, { recursive: true });
  writeFileSync(join(ws.outside, 'secret.ts'), `export const secret = '${SECRET}';\n`);
  writeFileSync(join(ws.outside, 'secret.txt'), `${SECRET}\n`);
  const write = (path: string, text: string) => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  };
  const spec = (extra: Partial<Dna> = {}): Dna => ({ name: 'boundary', dir: ws.dna, manifestDir: project, ...extra });
  const build = (extra: Partial<Dna> = {}, onProgress?: (l: string) => void) =>
    synthesize(spec(extra), { cacheDir: ws.cache, ...(onProgress ? { onProgress } : {}) });
  return { ...ws, write, build };
}

function run(path: string): string {
  const r = spawnSync(process.execPath, [path], { encoding: 'utf8', env: {} });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

/** A refused build: E_BUILD_FAILED naming the cell and the fix, and never the secret. */
async function refused(p: Promise<unknown>, ...patterns: RegExp[]): Promise<CellError> {
  let caught: unknown;
  await assert.rejects(p, (err: unknown) => {
    caught = err;
    return true;
  });
  const err = caught as CellError;
  assert.ok(isCellError(err, 'E_BUILD_FAILED'), String(err));
  assert.equal(err.cell, 'boundary');
  // Cause and fix as a person reads them (the fix is a field, not part of the message).
  const text = formatCellError(err);
  for (const p of patterns) assert.match(text, p);
  const everything = `${err.message}\n${JSON.stringify(err.toJSON())}\n${String(err.cause ?? '')}`;
  assert.ok(!everything.includes(SECRET), everything);
  assert.ok(!everything.includes('root:'), everything); // /etc/passwd or /etc/shadow's first line
  return err;
}

const FIX = /\n {2}fix: declare it in `contracts` or move it into the DNA folder/;

test('an absolute import outside the roots is refused before it is read', async (t) => {
  const ws = workspace(t);
  ws.write(join(ws.dna, 'index.ts'), `import { secret } from '${ws.outside}/secret.ts';\nconsole.log(secret);\n`);
  const err = await refused(
    ws.build(),
    new RegExp(`imports ${ws.outside}/secret\\.ts from index\\.ts, outside the folders a build may read`),
    /nothing of it was read/,
    FIX,
  );
  assert.equal(err.details?.reason, 'outside');
  assert.equal(existsSync(join(ws.cache, 'boundary')), false);
});

test('a ../ escape is refused; so is one hidden behind a bare folder import', async (t) => {
  const ws = workspace(t);
  ws.write(join(ws.dna, 'lib', 'util.ts'), "export { secret } from '../../../outside/secret';\n");
  ws.write(join(ws.dna, 'index.ts'), "import { secret } from './lib/util.ts';\nconsole.log(secret);\n");
  await refused(ws.build(), /imports '\.\.\/\.\.\/\.\.\/outside\/secret' .* from lib\/util\.ts/, FIX);
});

test('a symlink cannot escape: neither a linked file nor a linked folder', async (t) => {
  const ws = workspace(t);
  symlinkSync(join(ws.outside, 'secret.ts'), join(ws.dna, 'linked.ts'));
  ws.write(join(ws.dna, 'index.ts'), "import { secret } from './linked';\nconsole.log(secret);\n");
  await refused(ws.build(), /imports '\.\/linked' \(.*outside\/secret\.ts\) from index\.ts, outside/, FIX);

  rmSync(join(ws.dna, 'linked.ts'));
  symlinkSync(ws.outside, join(ws.dna, 'vendor'));
  ws.write(join(ws.dna, 'index.ts'), "import { secret } from './vendor/secret.ts';\nconsole.log(secret);\n");
  await refused(ws.build(), /outside\/secret\.ts\) from index\.ts, outside/, FIX);
});

test("with { type: 'text' } cannot inline a file outside the roots (nor /etc/shadow)", async (t) => {
  const ws = workspace(t);
  ws.write(
    join(ws.dna, 'index.ts'),
    `import s from '${ws.outside}/secret.txt' with { type: 'text' };\nconsole.log(s);\n`,
  );
  await refused(ws.build(), /secret\.txt.* from index\.ts, outside/, FIX);
  for (const file of ['/etc/shadow', '/etc/passwd']) {
    ws.write(join(ws.dna, 'index.ts'), `import s from '${file}' with { type: 'text' };\nconsole.log(s);\n`);
    await refused(ws.build(), new RegExp(`imports ${file} from index\\.ts, outside`), FIX);
  }
});

test('devices and FIFOs are refused without being opened: /dev/zero does not hang the build', {
  timeout: 60_000,
}, async (t) => {
  const ws = workspace(t);
  const started = Date.now();
  ws.write(join(ws.dna, 'index.ts'), "import z from '/dev/zero' with { type: 'text' };\nconsole.log(z);\n");
  await refused(ws.build(), /imports \/dev\/zero from index\.ts, outside/);
  // A FIFO inside the DNA folder: inside the roots, but not a regular file.
  const fifo = spawnSync('mkfifo', [join(ws.dna, 'pipe.txt')]);
  if (fifo.status === 0) {
    ws.write(join(ws.dna, 'index.ts'), "import p from './pipe.txt' with { type: 'text' };\nconsole.log(p);\n");
    const err = await refused(
      ws.build(),
      /imports '\.\/pipe\.txt' \(.*pipe\.txt\) from index\.ts, which is a FIFO, not a regular file/,
    );
    assert.equal(err.details?.reason, 'special');
  }
  assert.ok(Date.now() - started < 45_000, `took ${Date.now() - started} ms`);
});

test('a data: URL or other non-file import is refused', async (t) => {
  const ws = workspace(t);
  ws.write(join(ws.dna, 'index.ts'), "import x from 'data:text/javascript,export default 1';\nconsole.log(x);\n");
  const err = await refused(ws.build(), /not a file \(esbuild namespace 'dataurl'\)/);
  assert.equal(err.details?.reason, 'namespace');
});

test('a contract declared in `contracts` may be imported (file or folder); undeclared it is refused', async (t) => {
  const ws = workspace(t);
  ws.write(join(ws.shared, 'contract.ts'), "export const PROTOCOL = 'v1';\n");
  ws.write(join(ws.shared, 'more', 'extra.ts'), "export const EXTRA = 'x';\n");
  ws.write(
    join(ws.dna, 'index.ts'),
    "import { PROTOCOL } from '../shared/contract.ts';\nimport { EXTRA } from '../shared/more/extra.ts';\nconsole.log(PROTOCOL, EXTRA);\n",
  );
  await refused(ws.build(), /imports '\.\.\/shared\/contract\.ts' .* from index\.ts, outside/, FIX);
  // A declared file admits that file only.
  await refused(ws.build({ contracts: ['shared/contract.ts'] }), /shared\/more\/extra\.ts/);
  const b = await ws.build({ contracts: ['./shared'] });
  assert.equal(run(b.path), 'v1 x');
  // Absolute works too; a contract that does not exist is named.
  assert.equal((await ws.build({ contracts: [ws.shared] })).hash, b.hash);
  await assert.rejects(ws.build({ contracts: ['./nope'] }), (err: unknown) => {
    assert.ok(isCellError(err, 'E_DNA_UNKNOWN'));
    assert.match(err.message, /its contract .*project\/nope does not exist/);
    return true;
  });
});

test("the project's node_modules may be imported, no higher than the manifest folder's nearest", async (t) => {
  const ws = workspace(t);
  const pkg = (dir: string, name: string, value: string) => {
    ws.write(join(dir, 'node_modules', name, 'package.json'), JSON.stringify({ name, main: 'index.js' }));
    ws.write(join(dir, 'node_modules', name, 'index.js'), `module.exports = { value: '${value}' };\n`);
  };
  pkg(ws.project, 'leftpad', 'from the project');
  pkg(ws.root, 'higher', 'from above the project');
  ws.write(join(ws.dna, 'index.ts'), "import lp from 'leftpad';\nconsole.log(lp.value);\n");
  const b = await ws.build();
  assert.equal(run(b.path), 'from the project');
  assert.equal((await ws.build()).cached, true);
  // The package's package.json steers resolution (main, exports): it is an input too.
  ws.write(join(ws.project, 'node_modules', 'leftpad', 'alt.js'), "module.exports = { value: 'alt' };\n");
  ws.write(
    join(ws.project, 'node_modules', 'leftpad', 'package.json'),
    JSON.stringify({ name: 'leftpad', main: 'alt.js' }),
  );
  const moved = await ws.build();
  assert.equal(moved.cached, false);
  assert.equal(run(moved.path), 'alt');
  // A package only found above the manifest's project is outside.
  ws.write(join(ws.dna, 'index.ts'), "import h from 'higher';\nconsole.log(h.value);\n");
  await refused(ws.build(), /imports '?higher'? \(?.*node_modules\/higher\/index\.js\)? from index\.ts, outside/, FIX);
  // A package's file that links out of node_modules is refused as well.
  symlinkSync(join(ws.outside, 'secret.ts'), join(ws.project, 'node_modules', 'leftpad', 'secret.ts'));
  ws.write(join(ws.dna, 'index.ts'), "import { secret } from 'leftpad/secret.ts';\nconsole.log(secret);\n");
  await refused(ws.build(), /outside\/secret\.ts\)? from index\.ts, outside/, FIX);
});

test('a changed contract outside the DNA folder rebuilds: the bundle is never served stale', async (t) => {
  const ws = workspace(t);
  ws.write(join(ws.shared, 'contract.ts'), "export const VERSION = 'one';\n");
  ws.write(join(ws.dna, 'index.ts'), "import { VERSION } from '../shared/contract.ts';\nconsole.log(VERSION);\n");
  const first = await ws.build({ contracts: ['shared'] });
  assert.equal(run(first.path), 'one');
  assert.equal((await ws.build({ contracts: ['shared'] })).cached, true);
  ws.write(join(ws.shared, 'contract.ts'), "export const VERSION = 'two';\n");
  const second = await ws.build({ contracts: ['shared'] });
  assert.equal(second.cached, false);
  assert.notEqual(second.hash, first.hash);
  assert.match(readFileSync(second.path, 'utf8'), /two/);
  assert.equal(run(second.path), 'two');
  // A removed input is a rebuild (here: a failing one).
  rmSync(join(ws.shared, 'contract.ts'));
  await assert.rejects(ws.build({ contracts: ['shared'] }), (err: unknown) => isCellError(err, 'E_BUILD_FAILED'));
});

test('the same DNA content under two names (or two folders alike) is one build and one stored bundle', async (t) => {
  const ws = workspace(t);
  ws.write(join(ws.dna, 'index.ts'), "import { PROTOCOL } from './lib.ts';\nconsole.log(PROTOCOL);\n");
  ws.write(join(ws.dna, 'lib.ts'), "export const PROTOCOL = 'same';\n");
  const builds: string[] = [];
  const onProgress = (l: string) => {
    if (l.includes('synthesizing')) builds.push(l);
  };
  const alpha = await ws.build({ name: 'alpha' }, onProgress);
  const beta = await ws.build({ name: 'beta' }, onProgress);
  // A copy beside it: other absolute paths, the same content and relative layout.
  cpSync(ws.dna, join(ws.project, 'dna-copy'), { recursive: true });
  const gamma = await ws.build({ name: 'gamma', dir: join(ws.project, 'dna-copy') }, onProgress);
  assert.equal(builds.length, 1, builds.join('\n'));
  assert.equal(alpha.cached, false);
  assert.equal(beta.cached, true);
  assert.equal(gamma.cached, true);
  assert.equal(beta.hash, alpha.hash);
  assert.equal(gamma.hash, alpha.hash);
  assert.equal(run(gamma.path), 'same');
  assert.deepEqual(
    readdirSync(join(ws.cache, '_store')).filter((f) => f.endsWith('.mjs')),
    [`${alpha.hash}.mjs`],
  );
  for (const name of ['alpha', 'beta', 'gamma']) assert.ok(existsSync(join(ws.cache, name, `${alpha.hash}.mjs`)));
});

test('tsconfig.json: its `extends` stays inside the roots and a parse error shows no text', async (t) => {
  const ws = workspace(t);
  ws.write(join(ws.dna, 'lib', 'answer.ts'), 'export const ANSWER = 42;\n');
  ws.write(join(ws.dna, 'index.ts'), "import { ANSWER } from '@lib/answer';\nconsole.log(ANSWER);\n");
  // JSON with comments and trailing commas, `paths` relative to the file.
  ws.write(
    join(ws.dna, 'tsconfig.json'),
    '{\n  // aliases\n  "compilerOptions": { "paths": { "@lib/*": ["./lib/*"], }, },\n}\n',
  );
  assert.equal(run((await ws.build()).path), '42');
  ws.write(join(ws.dna, 'tsconfig.json'), `{ "extends": "${ws.outside}/secret.txt" }`);
  await refused(ws.build(), /secret\.txt from tsconfig\.json, outside/, FIX);
  ws.write(join(ws.dna, 'tsconfig.json'), '{ "extends": "/etc/passwd" }');
  await refused(
    ws.build(),
    /'\/etc\/passwd' \(\/etc\/passwd\) from tsconfig\.json, outside|\/etc\/passwd from tsconfig\.json/,
  );
  ws.write(join(ws.dna, 'tsconfig.json'), `${SECRET}\n{}`);
  await refused(
    ws.build(),
    /its tsconfig\.json cannot be used: .*tsconfig\.json is not valid JSON near byte 0 \(line 1, column 1\)/,
  );
  // A base declared as a contract is fine.
  ws.write(join(ws.shared, 'tsconfig.base.json'), '{ "compilerOptions": { "paths": { "@lib/*": ["../dna/lib/*"] } } }');
  ws.write(join(ws.dna, 'tsconfig.json'), '{ "extends": "../shared/tsconfig.base.json" }');
  assert.equal(run((await ws.build({ contracts: ['shared'] })).path), '42');
});

test('a broken package.json above the DNA folder fails the build without quoting it', async (t) => {
  const ws = workspace(t);
  ws.write(join(ws.project, 'package.json'), `${SECRET}\n{`);
  ws.write(join(ws.dna, 'index.ts'), 'export const x = 1;\nconsole.log(x);\n');
  await refused(
    ws.build(),
    /package\.json:1: esbuild failed on this file, which lies outside the folders a build may read/,
  );
});

test('the build runs in a short-lived process: nothing of it is left once synthesize returns', async (t) => {
  const ws = workspace(t);
  ws.write(join(ws.dna, 'index.ts'), 'console.log(1);\n');
  const name = `leftover-${process.pid}-${Date.now()}`;
  // While it builds, the build process (and esbuild's service under it) carry CELL_BUILD_OF.
  const seen = new Set<string>();
  const poll = setInterval(() => {
    for (const p of buildProcesses(name)) seen.add(p);
  }, 10);
  try {
    await ws.build({ name });
  } finally {
    clearInterval(poll);
  }
  assert.ok(seen.size >= 1, 'the build ran in another process');
  assert.ok(!seen.has(String(process.pid)));
  const deadline = Date.now() + 10_000;
  while (buildProcesses(name).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(buildProcesses(name), []);
});

/** Processes whose environment says they build `cell`. */
function buildProcesses(cell: string): string[] {
  const marker = `CELL_BUILD_OF=${cell}\0`;
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/environ`, 'latin1').includes(marker);
      } catch {
        return false;
      }
    });
}

test('parseJsonText: positions for JSON and tsconfig JSON, never the text', () => {
  assert.deepEqual(parseJsonText('{"a": [1, 2,], // c\n /* d */ }', 'x', { comments: true }), { a: [1, 2] });
  assert.deepEqual(parseJsonText('\ufeff{"s": "a // not a comment, ]"}', 'x', { comments: true }), {
    s: 'a // not a comment, ]',
  });
  const cases: [string, number, number, number][] = [
    [`${SECRET}`, 0, 1, 1],
    ['{"a": 1,}', 8, 1, 9],
    ['{"a": 1}\nx', 9, 2, 1],
    ['{"é": tru}', 7, 1, 7],
    ['', 0, 1, 1],
    ['"abc', 4, 1, 5],
  ];
  for (const [text, byte, line, column] of cases) {
    assert.throws(
      () => parseJsonText(text, 'f.json'),
      (err: unknown) => {
        const e = err as Error & { byte: number; line: number; column: number };
        assert.equal(e.message, `f.json is not valid JSON near byte ${byte} (line ${line}, column ${column})`, text);
        assert.deepEqual([e.byte, e.line, e.column], [byte, line, column]);
        return true;
      },
    );
  }
});
