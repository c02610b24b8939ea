import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// dist/test/arch/unused.test.js → the repository
const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const script = join(repo, 'scripts', 'unused.mjs');

function unused(cwd: string) {
  return spawnSync(process.execPath, [script, '--cwd', cwd], { encoding: 'utf8' });
}

/** A scratch package with the repository's knip.json and the given sources. */
function tree(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'cell-unused-'));
  copyFileSync(join(repo, 'knip.json'), join(dir, 'knip.json'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'scratch', type: 'module', private: true }));
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext' }, include: ['src'] }),
  );
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

test('src/ has no unused files or exports', () => {
  const r = unused(repo);
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('a planted unused export and an unused file are caught; a used export is not', (t) => {
  const dir = tree({
    'src/index.ts': "import { used } from './errors/a.js';\nexport const entry = used;\n",
    'src/errors/a.ts': 'export const used = 1;\nexport const planted = 2;\n',
    'src/errors/orphan.ts': 'export const alone = 3;\n',
  });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = unused(dir);
  assert.notEqual(r.status, 0, r.stdout);
  assert.match(r.stdout, /planted/);
  assert.match(r.stdout, /src\/errors\/orphan\.ts/);
  assert.doesNotMatch(r.stdout, /\bused\b/);
});
