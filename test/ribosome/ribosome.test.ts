import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { isCellError } from '../../src/errors/index.js';
import { synthesize } from '../../src/ribosome/index.js';

function workspace(t: TestContext): { dna: string; cache: string } {
  const dir = mkdtempSync(join(tmpdir(), 'cell-ribosome-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const dna = join(dir, 'dna');
  mkdirSync(join(dna, 'lib'), { recursive: true });
  // The project's own node_modules: without it the nearest one would be whatever the temp folder's
  // ancestors hold, and a node_modules made in the DNA later would change which one resolves imports.
  mkdirSync(join(dir, 'node_modules'));
  writeFileSync(
    join(dna, 'lib', 'greet.ts'),
    'export const greet = (who: string): string => ["hello", who].join(" ");\n',
  );
  writeFileSync(
    join(dna, 'index.ts'),
    [
      "import { t, protein } from 'cell';",
      "import { greet } from './lib/greet.js';",
      "const Point = protein('Point', { x: t.uint });",
      'const bytes = Point.encode({ x: 7 });',
      'console.log(greet("cell"), Point.decode(bytes).x);',
      '',
    ].join('\n'),
  );
  return { dna, cache: join(dir, 'cache') };
}

function run(path: string): string {
  const r = spawnSync(process.execPath, [path], { encoding: 'utf8', env: {} });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

test('first build writes a runnable bundle; the second call is a cache hit with the same hash', async (t) => {
  const { dna, cache } = workspace(t);
  const lines: string[] = [];
  const first = await synthesize({ name: 'greeter', dir: dna }, { cacheDir: cache, onProgress: (l) => lines.push(l) });
  assert.equal(first.cached, false);
  assert.match(first.hash, /^[0-9a-f]{64}$/);
  assert.ok(first.path.startsWith(join(cache, 'greeter')));
  assert.ok(first.path.endsWith('.mjs'));
  assert.ok(
    lines.some((l) => l.includes('synthesizing greeter')),
    lines.join('\n'),
  );
  // The bundle is self-contained: `cell` was resolved to this checkout's runtime and inlined.
  assert.equal(run(first.path), 'hello cell 7');

  const progressAgain: string[] = [];
  const second = await synthesize(
    { name: 'greeter', dir: dna },
    { cacheDir: cache, onProgress: (l) => progressAgain.push(l) },
  );
  assert.equal(second.cached, true);
  assert.equal(second.hash, first.hash);
  assert.equal(second.path, first.path);
  assert.deepEqual(progressAgain, [], 'a cache hit does not build');
  for (const d of ['greeter', '_store', '_index']) {
    assert.deepEqual(
      readdirSync(join(cache, d)).filter((f) => f.endsWith('.lock') || f.endsWith('.tmp')),
      [],
      'no lock or temp file is left',
    );
  }
});

test('a change to an input rebuilds under a new hash; a new file re-resolves; other files do not matter', async (t) => {
  const { dna, cache } = workspace(t);
  const first = await synthesize({ name: 'greeter', dir: dna }, { cacheDir: cache });
  const greet = (word: string) =>
    writeFileSync(
      join(dna, 'lib', 'greet.ts'),
      `export const greet = (who: string): string => ["${word}", who].join(" ");\n`,
    );
  greet('bonjour');
  const second = await synthesize({ name: 'greeter', dir: dna }, { cacheDir: cache });
  assert.equal(second.cached, false);
  assert.notEqual(second.hash, first.hash);
  assert.equal(run(second.path), 'bonjour cell 7');
  // A new file could change what an import resolves to, so it is looked at again (a build), but a
  // file no import reaches is not an input: the bundle is the same one.
  writeFileSync(join(dna, 'notes.md'), 'notes\n');
  const third = await synthesize({ name: 'greeter', dir: dna }, { cacheDir: cache });
  assert.equal(third.cached, false);
  assert.equal(third.hash, second.hash);
  // Editing it, or adding dotfiles and node_modules content, is a cache hit.
  writeFileSync(join(dna, 'notes.md'), 'more notes\n');
  writeFileSync(join(dna, '.editorconfig'), 'root = true\n');
  mkdirSync(join(dna, 'node_modules'));
  writeFileSync(join(dna, 'node_modules', 'x.js'), '1\n');
  const again = await synthesize({ name: 'greeter', dir: dna }, { cacheDir: cache });
  assert.equal(again.cached, true);
  assert.equal(again.hash, second.hash);
  // Only the three most recently used versions of a cell are kept; a stored bundle no cell links
  // any more goes too.
  greet('hallo');
  const fourth = await synthesize({ name: 'greeter', dir: dna }, { cacheDir: cache });
  greet('hej');
  const fifth = await synthesize({ name: 'greeter', dir: dna }, { cacheDir: cache });
  assert.equal(run(fifth.path), 'hej cell 7');
  assert.deepEqual(
    readdirSync(join(cache, 'greeter'))
      .filter((f) => f.endsWith('.mjs'))
      .sort(),
    [second, fourth, fifth].map((b) => `${b.hash}.mjs`).sort(),
  );
  assert.equal(existsSync(first.path), false);
  assert.equal(existsSync(join(cache, '_store', `${first.hash}.mjs`)), false);
  assert.equal(existsSync(join(cache, '_store', `${first.hash}.inputs.json`)), false);
  // Going back to an older version is a hit on what is still stored.
  greet('bonjour');
  const back = await synthesize({ name: 'greeter', dir: dna }, { cacheDir: cache });
  assert.equal(back.cached, true);
  assert.equal(back.hash, second.hash);
});

test('a compile error names the cell and carries file:line from esbuild', async (t) => {
  const { dna, cache } = workspace(t);
  writeFileSync(join(dna, 'lib', 'greet.ts'), 'export const greet = (who: string) => {\n  return who +;\n};\n');
  await assert.rejects(synthesize({ name: 'greeter', dir: dna }, { cacheDir: cache }), (err: unknown) => {
    assert.ok(isCellError(err, 'E_BUILD_FAILED'), String(err));
    assert.equal(err.cell, 'greeter');
    assert.match(err.message, /lib\/greet\.ts:2:\d+/);
    assert.match(err.message, /Unexpected/);
    return true;
  });
  assert.ok(!readdirSync(join(cache, '_store')).some((f) => f.endsWith('.mjs') || f.endsWith('.tmp')));
  assert.ok(!existsSync(join(cache, 'greeter')));
});

test('a missing folder or entry is E_DNA_UNKNOWN', async (t) => {
  const { dna, cache } = workspace(t);
  await assert.rejects(synthesize({ name: 'ghost', dir: join(dna, 'nope') }, { cacheDir: cache }), (err: unknown) =>
    isCellError(err, 'E_DNA_UNKNOWN'),
  );
  // The name becomes a folder of the cache: it must be a cell name (not `../x`, not `_store`).
  for (const name of ['../escape', '_store']) {
    await assert.rejects(synthesize({ name, dir: dna }, { cacheDir: cache }), (err: unknown) =>
      isCellError(err, 'E_NAME_INVALID'),
    );
  }
  await assert.rejects(
    synthesize({ name: 'greeter', dir: dna, entry: 'main.ts' }, { cacheDir: cache }),
    (err: unknown) => isCellError(err, 'E_DNA_UNKNOWN') && /main\.ts/.test((err as Error).message),
  );
  await assert.rejects(
    synthesize({ name: 'greeter', dir: dna, entry: '../../etc/passwd' }, { cacheDir: cache }),
    (err: unknown) => isCellError(err, 'E_DNA_UNKNOWN'),
  );
  rmSync(join(dna, 'index.ts'));
  await assert.rejects(
    synthesize({ name: 'greeter', dir: dna }, { cacheDir: cache }),
    (err: unknown) => isCellError(err, 'E_DNA_UNKNOWN') && /index\.ts, main\.ts/.test((err as Error).message),
  );
  // An explicit entry works without a default one.
  const b = await synthesize({ name: 'greeter', dir: dna, entry: 'lib/greet.ts' }, { cacheDir: cache });
  assert.ok(existsSync(b.path));
});

test('concurrent synthesize() calls build once; the others wait for the lock and hit the cache', async (t) => {
  const { dna, cache } = workspace(t);
  let builds = 0;
  const onProgress = (l: string) => {
    if (l.includes('synthesizing')) builds++;
  };
  const results = await Promise.all(
    [1, 2, 3].map(() => synthesize({ name: 'greeter', dir: dna }, { cacheDir: cache, onProgress })),
  );
  assert.equal(builds, 1);
  assert.equal(results.filter((r) => !r.cached).length, 1);
  assert.equal(new Set(results.map((r) => r.hash)).size, 1);
});

test('a stale lock left by a dead builder is taken over', async (t) => {
  const { dna, cache } = workspace(t);
  const probe = await synthesize({ name: 'greeter', dir: dna }, { cacheDir: cache });
  // Forget the build (its source key's record), so the next call builds and needs the lock.
  const [record] = readdirSync(join(cache, '_index')).filter((f) => f.endsWith('.json'));
  assert.ok(record);
  rmSync(join(cache, '_index', record));
  const lock = join(cache, '_index', record.replace(/\.json$/, '.lock'));
  // A pid that has exited: a finished child's.
  const dead = spawnSync(process.execPath, ['-e', ''], { encoding: 'utf8' }).pid as number;
  writeFileSync(lock, `${dead}:stale`);
  const b = await synthesize({ name: 'greeter', dir: dna }, { cacheDir: cache, lockTimeoutMs: 5000 });
  assert.equal(b.cached, false);
  assert.equal(b.hash, probe.hash);
  assert.ok(!existsSync(lock));
});

test('two processes synthesizing the same DNA at once build it once', async (t) => {
  const { dna, cache } = workspace(t);
  const ribosome = new URL('../../src/ribosome/index.js', import.meta.url).href;
  const script = [
    `const { synthesize } = await import(${JSON.stringify(ribosome)});`,
    `const b = await synthesize({ name: 'greeter', dir: ${JSON.stringify(dna)} }, { cacheDir: ${JSON.stringify(cache)} });`,
    'console.log(JSON.stringify(b));',
  ].join('\n');
  const runOne = () =>
    new Promise<{ cached: boolean; hash: string }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => {
        out += d;
      });
      child.stderr.on('data', (d) => {
        err += d;
      });
      child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`exit ${code}: ${err}`))));
    });
  const results = await Promise.all([runOne(), runOne()]);
  assert.equal(results.filter((r) => !r.cached).length, 1, JSON.stringify(results));
  assert.equal(results[0]?.hash, results[1]?.hash);
});
