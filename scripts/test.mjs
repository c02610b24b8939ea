// Runs the test suite with Node's built-in runner on the transpiled files in dist/test.
// `--unit` skips test/integration (real processes, sandboxes, namespaces).
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const unitOnly = process.argv.includes('--unit');
const filters = process.argv.slice(2).filter((a) => !a.startsWith('--'));

function walk(dir, out) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

let files = walk(join(root, 'dist', 'test'), []).sort();
if (unitOnly) files = files.filter((f) => !f.includes('/integration/'));
if (filters.length > 0) files = files.filter((f) => filters.some((x) => f.includes(x)));
// Unit files first: a broken codec should fail in seconds, not after the integration suites.
files.sort((a, b) => Number(a.includes('/integration/')) - Number(b.includes('/integration/')) || a.localeCompare(b));

const r = spawnSync(process.execPath, ['--test', '--test-timeout=300000', ...files], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
