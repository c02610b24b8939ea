// Checks that src/ has no unused files or exports (knip, knip.json): an export nobody imports is a
// public surface nobody asked for. Exits non-zero and names each one otherwise.
// `node scripts/unused.mjs [--cwd <dir>]` (default: the repository). npm test runs it after the layers.
// knip is a devDependency; CELL_KNIP may name another node_modules holding it.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const at = process.argv.indexOf('--cwd');
const cwd = at >= 0 ? resolve(process.argv[at + 1]) : repo;

const BIN = join('knip', 'bin', 'knip.js');
const candidates = [process.env.CELL_KNIP, join(repo, 'node_modules')].filter(Boolean);
const bin = candidates.map((dir) => join(dir, BIN)).find((p) => existsSync(p));
if (bin === undefined) {
  process.stderr.write(
    'unused: knip is not installed (looked in ' +
      `${candidates.join(', ')}).\n  fix: npm install (it is a devDependency), or set CELL_KNIP to a node_modules that has it.\n`,
  );
  process.exit(2);
}
// Files and exports only: dependencies are the package suite's business (publint, attw, the install walk).
const r = spawnSync(
  process.execPath,
  [bin, '--config', join(cwd, 'knip.json'), '--directory', cwd, '--include', 'files,exports,types', '--no-progress'],
  { cwd, encoding: 'utf8' },
);
process.stdout.write(r.stdout ?? '');
process.stderr.write(r.stderr ?? '');
if (r.status !== 0) {
  process.stderr.write(
    'unused: src/ has unused files or exports: delete them, or export from the component’s index.ts only what is public.\n',
  );
}
process.exit(r.status ?? 1);
