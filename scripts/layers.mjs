// Checks the layering of src/ (.dependency-cruiser.cjs, docs/ARCHITECTURE.md): no import points to a
// higher layer, and there is no import cycle. Exits non-zero and names each offending arrow otherwise.
// `node scripts/layers.mjs [--cwd <dir>]` (default: the repository). npm test runs it first.
// dependency-cruiser is a devDependency; CELL_DEPCRUISE may name another node_modules holding it.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const at = process.argv.indexOf('--cwd');
const cwd = at >= 0 ? resolve(process.argv[at + 1]) : repo;

const BIN = join('dependency-cruiser', 'bin', 'dependency-cruise.mjs');
const candidates = [process.env.CELL_DEPCRUISE, join(repo, 'node_modules')].filter(Boolean);
const bin = candidates.map((dir) => join(dir, BIN)).find((p) => existsSync(p));
if (bin === undefined) {
  process.stderr.write(
    'layers: dependency-cruiser is not installed (looked in ' +
      `${candidates.join(', ')}).\n  fix: npm install (it is a devDependency), or set CELL_DEPCRUISE to a node_modules that has it.\n`,
  );
  process.exit(2);
}
const r = spawnSync(
  process.execPath,
  [bin, '--config', join(cwd, '.dependency-cruiser.cjs'), '--output-type', 'err', 'src'],
  { cwd, encoding: 'utf8' },
);
process.stdout.write(r.stdout ?? '');
process.stderr.write(r.stderr ?? '');
if (r.status !== 0) {
  process.stderr.write('layers: an import breaks the layering of src/ (see docs/ARCHITECTURE.md).\n');
}
process.exit(r.status ?? 1);
