// The one set-up step behind `npm run demo` and `npm test`: on a fresh machine it installs the npm
// packages, the Debian packages Cell relies on (bubblewrap for the Capsid sandbox, iproute2 for the
// multi-host tests, nats-server for the NATS tests), builds the native shared-memory addon and
// transpiles the TypeScript. Each step is skipped when its output is already current, so a second run
// costs well under a second.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const quiet = process.argv.includes('--quiet');
const log = (msg) => {
  if (!quiet) console.error(`[setup] ${msg}`);
};

/** Debian packages: [package, a binary that proves it is installed]. */
const DEBIAN = [
  ['bubblewrap', '/usr/bin/bwrap'],
  ['iproute2', '/usr/sbin/ip'],
  // drives `cell top` in a real terminal for its integration test
  ['tmux', '/usr/bin/tmux'],
  // the side-by-side peer of the consensus benchmark (bench/consensus)
  ['etcd-server', '/usr/bin/etcd'],
  // the NATS cluster of the cross-host tests (test/nats, test/integration/nats) and bench/nats
  ['nats-server', '/usr/sbin/nats-server'],
];

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: quiet ? 'pipe' : ['ignore', 'inherit', 'inherit'], ...opts });
  return r.status === 0;
}

function hashFiles(paths) {
  const h = createHash('sha256');
  for (const p of paths) {
    const full = join(root, p);
    h.update(p);
    h.update(existsSync(full) ? readFileSync(full) : Buffer.alloc(0));
  }
  return h.digest('hex');
}

const stampPath = join(root, 'node_modules', '.cell-setup.json');
const stamp = existsSync(stampPath) ? JSON.parse(readFileSync(stampPath, 'utf8')) : {};

// 1. npm packages
const depsHash = hashFiles(['package.json', 'package-lock.json']);
if (stamp.deps !== depsHash || !existsSync(join(root, 'node_modules'))) {
  log('installing npm packages');
  const args = existsSync(join(root, 'package-lock.json')) ? ['ci'] : ['install'];
  if (!run('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'])) {
    console.error('[setup] npm install failed; see the output above.');
    process.exit(1);
  }
  stamp.deps = depsHash;
}

// 2. Debian packages (only possible as root; otherwise say what is missing)
const missing = DEBIAN.filter(([, bin]) => !existsSync(bin)).map(([pkg]) => pkg);
if (missing.length > 0) {
  if (process.getuid?.() === 0) {
    log(`installing Debian packages: ${missing.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    run('apt-get', ['update', '-qq'], { env });
    if (!run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { env })) {
      console.error(
        `[setup] could not install ${missing.join(' ')}; the sandbox or multi-host tests will say what they miss.`,
      );
    }
  } else {
    console.error(
      `[setup] missing Debian packages: ${missing.join(' ')}. Install them with: sudo apt-get install ${missing.join(' ')}`,
    );
  }
}

// 3. native addon (optional: without it Cell stays on Unix sockets and says so)
if (existsSync(join(root, 'native', 'binding.gyp'))) {
  const { readdirSync } = await import('node:fs');
  const srcs = readdirSync(join(root, 'native'))
    .filter((f) => /\.(cc|h|gyp)$/.test(f))
    .sort()
    .map((f) => join('native', f));
  const nativeHash = hashFiles(srcs);
  const built = join(root, 'native', 'build', 'Release', 'cell_native.node');
  if (stamp.native !== nativeHash || !existsSync(built)) {
    log('building the native shared-memory addon');
    const gyp = join(
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
    const nodedir = existsSync('/usr/include/node/node_api.h') ? ['--nodedir=/usr'] : [];
    const gypCmd = existsSync(gyp)
      ? [process.execPath, [gyp, 'rebuild', ...nodedir]]
      : ['npx', ['--no-install', 'node-gyp', 'rebuild', ...nodedir]];
    if (run(gypCmd[0], gypCmd[1], { cwd: join(root, 'native') })) stamp.native = nativeHash;
    else console.error('[setup] native addon build failed: Cell will use Unix sockets only (`cell doctor` says why).');
  }
}

// 4. TypeScript → dist/ (always: it takes well under a second and keeps dist/ honest)
if (!run(process.execPath, [join(root, 'scripts', 'build.mjs')])) {
  console.error('[setup] build failed');
  process.exit(1);
}

writeFileSync(stampPath, JSON.stringify(stamp));
