// The package's `install` script: builds the shared-memory addon (native/) with the node-gyp that
// ships with npm. It never fails the install: without a compiler (g++, make, python3) or on another
// OS it prints one line, records why in native/build/NOT-BUILT, and Cell runs on Unix sockets
// (`cell doctor` and a connection's `shmDeclined` say why). A checkout skips it: `node
// scripts/setup.mjs` builds the addon there.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const native = join(root, 'native');
const marker = join(native, 'build', 'NOT-BUILT');

if (existsSync(join(root, 'src')) || !existsSync(join(native, 'binding.gyp'))) process.exit(0);
if (process.env.CELL_SKIP_NATIVE === '1') skip('CELL_SKIP_NATIVE=1 is set');
if (process.platform !== 'linux') skip(`the addon is Linux-only (this is ${process.platform})`);

function onPath(bin) {
  return (process.env.PATH ?? '').split(':').some((d) => d !== '' && existsSync(join(d, bin)));
}
const missing = [
  onPath('g++') || onPath('c++') || (process.env.CXX && onPath(process.env.CXX)) ? null : 'g++',
  onPath('make') ? null : 'make',
  onPath('python3') || onPath('python') ? null : 'python3',
].filter((x) => x !== null);
if (missing.length > 0) skip(`no ${missing.join(', ')} (on Debian/Ubuntu: apt-get install g++ make python3)`);

// npm's own node-gyp (lib/node_modules/npm/node_modules/node-gyp), else whatever npx finds offline.
const bundled = join(
  dirname(process.execPath),
  '..',
  'lib',
  'node_modules',
  'npm',
  'node_modules',
  'node-gyp',
  'bin',
  'node-gyp.js',
);
const fromNpm = process.env.npm_config_node_gyp;
const gyp = [fromNpm, bundled].find((p) => p && existsSync(p));
// Distribution packages of Node (Debian's nodejs) carry the headers; elsewhere node-gyp fetches them.
const nodedir = existsSync('/usr/include/node/node_api.h') ? ['--nodedir=/usr'] : [];
const [cmd, args] = gyp
  ? [process.execPath, [gyp, 'rebuild', ...nodedir]]
  : ['npx', ['--no-install', 'node-gyp', 'rebuild', ...nodedir]];
const r = spawnSync(cmd, args, { cwd: native, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
if (r.status !== 0) {
  const last = `${r.stderr ?? ''}${r.stdout ?? ''}`.trim().split('\n').filter(Boolean).slice(-3).join(' | ');
  skip(`node-gyp failed${r.error ? ` (${r.error.message})` : ''}: ${last.slice(0, 300)}`);
}
rmSync(marker, { force: true });

function skip(reason) {
  try {
    mkdirSync(dirname(marker), { recursive: true });
    writeFileSync(marker, `${reason}\n`);
  } catch {
    // a read-only install still installs
  }
  console.error(
    `cell-runtime: shared-memory addon not built (${reason}); cells use Unix sockets. Build it later with \`npm rebuild cell-runtime\`.`,
  );
  process.exit(0);
}
