// Runs every benchmark under bench/<name>/ in turn (or only the names given), each in its own
// process so one benchmark's heap and timers do not colour the next. Extra flags after `--` are
// passed to every benchmark (e.g. `npm run bench -- codec -- --duration 1000`).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const cut = argv.indexOf('--');
const names = cut < 0 ? argv : argv.slice(0, cut);
const passed = cut < 0 ? [] : argv.slice(cut + 1);

const all = readdirSync(join(root, 'dist', 'bench'), { withFileTypes: true })
  .filter((e) => e.isDirectory() && existsSync(join(root, 'dist', 'bench', e.name, 'index.js')))
  .map((e) => e.name)
  .sort();
const unknown = names.filter((n) => !all.includes(n));
if (unknown.length > 0) {
  console.error(`bench: no benchmark named ${unknown.join(', ')}; there are: ${all.join(', ')}`);
  process.exit(2);
}
const chosen = names.length > 0 ? names : all;
const failed = [];
for (const name of chosen) {
  console.log(`\n=== bench/${name} ===`);
  const r = spawnSync(process.execPath, [join(root, 'dist', 'bench', name, 'index.js'), ...passed], {
    cwd: root,
    stdio: 'inherit',
  });
  if (r.status !== 0) failed.push(`${name} (exit ${r.status ?? r.signal})`);
}
if (failed.length > 0) {
  console.error(`\nbench: failed: ${failed.join(', ')}`);
  process.exit(1);
}
