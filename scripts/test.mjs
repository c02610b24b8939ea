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

// The new-user suite packs, installs and builds the package from scratch (minutes on a busy 2-core
// machine): it runs after the others, with a longer budget per file.
const slow = files.filter((f) => f.includes('/integration/package/'));
const fast = files.filter((f) => !slow.includes(f));
let status = 0;
for (const [group, timeout] of [
  [fast, 300_000],
  [slow, 1_200_000],
]) {
  if (group.length === 0) continue;
  const r = spawnSync(process.execPath, ['--test', `--test-timeout=${timeout}`, ...group], {
    cwd: root,
    stdio: 'inherit',
  });
  if (r.status !== 0) status = r.status ?? 1;
}
process.exit(status);
