import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { test } from 'node:test';
import { check, repo, tree as scratch } from './scratch.js';

const layers = (cwd: string) => check('layers.mjs', cwd);

/** A scratch tree with the repository's rule file and the given sources. */
const tree = (files: Record<string, string>) => scratch('cell-layers-', ['.dependency-cruiser.cjs'], files);

test('the layering of src/ holds', () => {
  const r = layers(repo);
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('an import from Synapse up to the Root is caught', (t) => {
  const dir = tree({
    'src/root/spawn.ts': 'export const order = 200;\n',
    'src/synapse/resolve.ts': "import { order } from '../root/spawn.js';\nexport const first = order;\n",
  });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = layers(dir);
  assert.notEqual(r.status, 0, r.stdout);
  assert.match(r.stdout, /layer-4-upward: src\/synapse\/resolve\.ts → src\/root\/spawn\.ts/);
});

test('a type-only import upward, an import cycle and a folder in no layer are caught', (t) => {
  const dir = tree({
    'src/tap/server.ts': 'export interface Tap { readonly on: boolean }\n',
    'src/membrane/session.ts': "import type { Tap } from '../tap/server.js';\nexport let tap: Tap | null = null;\n",
    'src/errors/a.ts': "import { b } from './b.js';\nexport const a = () => b;\n",
    'src/errors/b.ts': "import { a } from './a.js';\nexport const b = () => a;\n",
    'src/gadget/index.ts': "import { a } from '../errors/a.js';\nexport const g = a;\n",
  });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = layers(dir);
  assert.notEqual(r.status, 0, r.stdout);
  assert.match(r.stdout, /layer-4-upward: src\/membrane\/session\.ts → src\/tap\/server\.ts/);
  assert.match(r.stdout, /no-circular: src\/errors\/a\.ts/);
  assert.match(r.stdout, /unlayered-folder: src\/gadget\/index\.ts/);
});
