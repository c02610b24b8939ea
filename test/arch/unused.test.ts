import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { check, repo, tree as scratch } from './scratch.js';

const unused = (cwd: string) => check('unused.mjs', cwd);

/** A scratch package with the repository's knip.json and the given sources. */
function tree(files: Record<string, string>): string {
  const dir = scratch('cell-unused-', ['knip.json'], files);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'scratch', type: 'module', private: true }));
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
