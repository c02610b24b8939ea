// What a new user does, end to end, from the packed tarball (no checkout, no network):
//   1. `npm pack` (prepack builds the JavaScript and the declaration files) — in a staging copy, so
//      the repository's dist/ is left alone while other suites run; publint and attw on the tarball.
//   2. install it into an empty project outside the repository (`npm ci --offline` from the npm cache,
//      see offline.ts): no dev tools come along; the native addon builds at install time.
//   3. types flow: a strict TypeScript file using protein, Infer, service, Synapse.grow and
//      Membrane.bind compiles with module/moduleResolution nodenext and again with bundler, and a
//      deliberate type error (a wrong field type in a call) is reported.
//   4. `cell new`, `tsc` (strict), and — with the Root (sandboxed when this host can, else
//      --no-sandbox) — `cell up`, `cell call`, the generated caller, an edit of the contract and
//      `cell swap` (the new field is served, not a stale build), `cell down` (nothing left running).
//   5. without a compiler the install script prints one line, exits 0, and Cell says why it runs on
//      sockets (`cell doctor`).
import assert from 'node:assert/strict';
import { type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { canSandbox, processesMentioning } from '../root/harness.js';
import { writeOfflineProject } from './offline.js';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));
const repoPkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  devDependencies: Record<string, string>;
};
const LONG = { timeout: 15 * 60_000 };

let work = '';
let tarball = '';
let packedFiles: string[] = [];
let app = '';
let installed = '';
let throughPackage: string[] = [];

function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, {
    cwd,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  assert.equal(r.status, 0, `${what} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'cell-new-user-'));
  // A staging copy of what `npm pack` reads, with the repository's node_modules for the build tools.
  const stage = join(work, 'stage');
  mkdirSync(stage);
  for (const entry of [
    'package.json',
    'package-lock.json',
    'tsconfig.json',
    'tsconfig.build.json',
    'README.md',
    'ATTRIBUTION',
    'bin',
    'scripts',
    'src',
    'schemas',
    'docs',
  ]) {
    cpSync(join(repo, entry), join(stage, entry), { recursive: true });
  }
  mkdirSync(join(stage, 'native'));
  for (const f of readdirSync(join(repo, 'native'))) {
    if (/\.(cc|h|gyp)$/.test(f)) cpSync(join(repo, 'native', f), join(stage, 'native', f));
  }
  symlinkSync(join(repo, 'node_modules'), join(stage, 'node_modules'));
  const packed = ok(sh('npm', ['pack', '--json', '--pack-destination', work], stage), 'npm pack');
  const info = JSON.parse(packed.slice(packed.indexOf('['))) as Array<{
    filename: string;
    files: Array<{ path: string }>;
  }>;
  tarball = join(work, (info[0] as { filename: string }).filename);
  packedFiles = (info[0] as { files: Array<{ path: string }> }).files.map((f) => f.path);

  // An empty project outside the repository.
  app = join(work, 'app');
  mkdirSync(app);
  ({ throughPackage } = writeOfflineProject(repo, tarball, app, {
    typescript: repoPkg.devDependencies.typescript as string,
    '@types/node': repoPkg.devDependencies['@types/node'] as string,
  }));
  const install = sh('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--foreground-scripts'], app);
  ok(install, 'npm ci --offline (needs the npm cache the repository install filled)');
  installed = join(app, 'node_modules', repoPkg.name);
}, LONG);

after(() => {
  if (work !== '') {
    for (const pid of processesMentioning(work)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    rmSync(work, { recursive: true, force: true });
  }
});

test('the tarball: built JavaScript, declarations for every export, the addon sources, ATTRIBUTION, the schema; nothing else', () => {
  for (const f of [
    'package.json',
    'README.md',
    'ATTRIBUTION',
    'bin/cell.js',
    'native/binding.gyp',
    'native/cell_native.cc',
    'schemas/cell.schema.json',
    'scripts/install-native.mjs',
    'dist/src/cli/main.js',
    'dist/src/root/main.js',
    'dist/boot/cell-boot.mjs',
    'docs/CLI.md',
  ]) {
    assert.ok(packedFiles.includes(f), `the tarball has ${f}`);
  }
  for (const entry of ['index', 'host', 'observation', 'mesh', 'consensus/index', 'testing/index']) {
    assert.ok(packedFiles.includes(`dist/src/${entry}.js`), entry);
    assert.ok(packedFiles.includes(`dist/src/${entry}.d.ts`), `${entry}.d.ts`);
  }
  for (const f of packedFiles) {
    assert.match(
      f,
      /^(dist\/src\/|dist\/boot\/cell-boot\.mjs$|bin\/|native\/[^/]+$|schemas\/|scripts\/install-native\.mjs$|docs\/|[^/]+$)/,
      f,
    );
    assert.doesNotMatch(f, /^(dist\/(test|bench|examples)|src|test|node_modules)\//, f);
    assert.doesNotMatch(f, /(^|\/)[^/]+(?<!\.d)\.ts$/, `no TypeScript source: ${f}`);
  }
  assert.ok(!packedFiles.some((f) => f.startsWith('native/build/')), 'no prebuilt binary');
});

test('publint and @arethetypeswrong/cli pass on the packed tarball', () => {
  const bin = join(repo, 'node_modules', '.bin');
  const lint = ok(sh(join(bin, 'publint'), [tarball, '--strict'], work), 'publint');
  assert.match(lint, /All good/);
  // ESM only (no require entry, as intended), so the CommonJS and node10 resolutions are not asked for.
  ok(sh(join(bin, 'attw'), [tarball, '--profile', 'esm-only', '--format', 'table-flipped'], work), 'attw');
});

test('installing it into an empty project brings no dev tools and builds the addon', () => {
  const pkg = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as { name: string };
  assert.equal(pkg.name, repoPkg.name);
  const devOnly = Object.keys(repoPkg.devDependencies);
  for (const key of throughPackage) {
    const name = key.replace(/^.*node_modules\//, '');
    assert.ok(!devOnly.includes(name), `${name} came in through the package`);
  }
  for (const tool of ['@biomejs/biome', 'fast-check', 'zeromq', '@grpc/grpc-js', 'moleculer', 'publint', 'msgpackr']) {
    assert.equal(existsSync(join(app, 'node_modules', tool)), false, `${tool} is not installed`);
  }
  const addon = join(installed, 'native', 'build', 'Release', 'cell_native.node');
  const hasCompiler = sh('sh', ['-c', 'command -v g++ && command -v make && command -v python3'], app).status === 0;
  if (hasCompiler) assert.ok(existsSync(addon), 'the install script built the shared-memory addon');
  else assert.ok(existsSync(join(installed, 'native', 'build', 'NOT-BUILT')));
  const version = ok(sh(join(app, 'node_modules', '.bin', 'cell'), ['--version'], app), 'cell --version');
  assert.equal(version.trim(), `cell ${repoPkg.version}`);
  const about = ok(sh(join(app, 'node_modules', '.bin', 'cell'), ['--about'], app), 'cell --about');
  assert.match(about, /Leif Rydenfalk/);
});

const TYPED = `import { type Infer, Membrane, protein, rpc, service, Synapse, t } from 'cell-runtime';
import { connectRoot } from 'cell-runtime/host';
import { CellProbe } from 'cell-runtime/observation';
import { growAcrossMesh } from 'cell-runtime/mesh';
import { RaftNode } from 'cell-runtime/consensus';
import { startTestCell, tempCellHome } from 'cell-runtime/testing';

export const Side = t.enum('Side', { Buy: null, Sell: null });
export const Order = protein('Order', {
  symbol: t.string,
  amount: t.u64,
  side: Side,
  seq: t.uint,
  note: t.option(t.string),
});
export type Order = Infer<typeof Order>;
export const Exchange = service('exchange', { place: rpc(Order, t.u64), ping: rpc(t.unit, t.unit) });

// Infer gives the real field types.
const order: Order = { symbol: 'BTC-USD', amount: 5n, side: { tag: 'Buy' }, seq: 1 };
const amount: bigint = order.amount;
const note: string | undefined = order.note;

// Handler inputs are typed views; the return type is checked against the output codec.
export async function serve(): Promise<void> {
  await Membrane.bind(Exchange, {
    place: (o) => {
      const symbol: string = o.symbol;
      const a: bigint = o.amount;
      return a + BigInt(symbol.length);
    },
    ping: () => undefined,
  });
}

// The proxy's methods take and return the contract's types.
export async function call(): Promise<bigint> {
  const exchange = await Synapse.grow(Exchange);
  const placed: bigint = await exchange.place(order);
  await exchange.ping(undefined);
  await exchange.$close();
  return placed + amount + BigInt(note?.length ?? 0);
}

// The testing helpers keep the contract's types: the client is the same typed proxy.
export async function tested(): Promise<bigint> {
  const cell = await startTestCell(Exchange, { place: (o) => o.amount * 2n, ping: () => undefined });
  try {
    const doubled: bigint = await cell.client.place(order);
    const home: string = cell.home.socketDir;
    return doubled + BigInt(home.length);
  } finally {
    await cell.close();
  }
}

export const subpaths = [connectRoot, CellProbe, growAcrossMesh, RaftNode, tempCellHome];
`;

function tsconfig(resolution: 'nodenext' | 'bundler'): string {
  const module = resolution === 'nodenext' ? 'NodeNext' : 'ESNext';
  return JSON.stringify({
    compilerOptions: {
      target: 'ES2022',
      module,
      moduleResolution: resolution,
      lib: ['ES2023'],
      types: ['node'],
      strict: true,
      noEmit: true,
    },
    files: ['typed.ts', 'wrong.ts'],
  });
}

test('types flow: strict tsc passes with nodenext and with bundler, and reports a wrong field type', () => {
  const dir = join(app, 'types');
  mkdirSync(dir);
  // typed.ts must compile; wrong.ts holds one deliberate error (a string where the contract says uint).
  // One run per resolution checks both: the only error reported is wrong.ts's.
  writeFileSync(join(dir, 'typed.ts'), TYPED);
  writeFileSync(
    join(dir, 'wrong.ts'),
    "import { Exchange, type Order } from './typed.js';\nimport { Synapse } from 'cell-runtime';\n\n" +
      'export async function wrong(order: Order): Promise<bigint> {\n' +
      '  const exchange = await Synapse.grow(Exchange);\n' +
      "  return exchange.place({ ...order, seq: '1' });\n}\n",
  );
  const tsc = join(app, 'node_modules', '.bin', 'tsc');
  for (const resolution of ['nodenext', 'bundler'] as const) {
    writeFileSync(join(dir, 'tsconfig.json'), tsconfig(resolution));
    const r = sh(tsc, ['-p', join(dir, 'tsconfig.json')], dir);
    assert.notEqual(r.status, 0, `tsc (${resolution}) must report the error`);
    const errors = r.stdout.split('\n').filter((l) => / error TS\d+/.test(l));
    assert.equal(errors.length, 1, `tsc (${resolution}):\n${r.stdout}`);
    assert.match(
      errors[0] as string,
      /^wrong\.ts\(6,\d+\): error TS2322: Type 'string' is not assignable to type 'number'\.$/,
    );
  }
  // Out of the way of the scaffold's tsconfig, which compiles every .ts in the project.
  rmSync(dir, { recursive: true, force: true });
});

test('cell-runtime/testing serves a cell in-process on a temporary CELL_HOME, from the installed package', () => {
  const script = join(app, 'testing-check.mjs');
  writeFileSync(
    script,
    `import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { rpc, service, t } from 'cell-runtime';
import { startTestCell } from 'cell-runtime/testing';
const Greeter = service('greeter', { greet: rpc(t.string, t.string) });
const cell = await startTestCell(Greeter, { greet: (name) => 'hello ' + name });
assert.equal(process.env.CELL_HOME, cell.home.home);
assert.equal(await cell.client.greet('you'), 'hello you');
assert.ok(existsSync(cell.home.socketDir + '/greeter/greeter.sock'));
await cell.close();
assert.equal(existsSync(cell.home.home), false);
assert.equal(process.env.CELL_HOME, undefined);
console.log('testing ok');
`,
  );
  const env = { ...process.env };
  delete env.CELL_HOME;
  const r = spawnSync(process.execPath, [script], { cwd: app, env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /testing ok/);
  rmSync(script);
});

function runCell(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(join(app, 'node_modules', '.bin', 'cell'), args, {
      cwd: app,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test(
  'cell new, strict tsc, then under the Root: cell up, cell call, the caller, edit + cell swap, cell down',
  LONG,
  async (t) => {
    const env: NodeJS.ProcessEnv = {
      CELL_HOME: join(work, 'home'),
      CELL_SOCKET_DIR: join(work, 'run'),
      CELL_LAN: '0',
    };
    t.after(async () => {
      await runCell(['down'], env);
    });
    const created = await runCell(['new', 'hello'], env);
    assert.equal(created.code, 0, created.stderr);
    for (const f of ['hello/contract.ts', 'hello/index.ts', 'call-hello.ts', 'cell.json', 'tsconfig.json']) {
      assert.ok(existsSync(join(app, f)), f);
    }
    const manifest = JSON.parse(readFileSync(join(app, 'cell.json'), 'utf8')) as { $schema: string; cells: object };
    assert.equal(manifest.$schema, `./node_modules/${repoPkg.name}/schemas/cell.schema.json`);
    assert.ok(existsSync(join(app, manifest.$schema)), 'the $schema path resolves');
    assert.deepEqual(manifest.cells, { hello: { dna: './hello' } });

    // Strict type check and build of the scaffold (tsconfig.json written by cell new).
    const tsc = join(app, 'node_modules', '.bin', 'tsc');
    ok(sh(tsc, ['-p', join(app, 'tsconfig.json')], app), 'tsc on the scaffold');
    assert.match(readFileSync(join(app, 'tsconfig.json'), 'utf8'), /"strict": true/);

    const sandboxed = canSandbox();
    t.diagnostic(sandboxed ? 'cells run sandboxed (bubblewrap + cgroups)' : 'this host cannot sandbox: --no-sandbox');
    const up = await runCell(['up', ...(sandboxed ? [] : ['--no-sandbox'])], env);
    assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`);
    assert.match(up.stdout, /hello\s+running/);

    const called = await runCell(['call', 'hello', 'greet', '{"name": "you", "times": 2}'], env);
    assert.equal(called.code, 0, called.stderr);
    assert.deepEqual(JSON.parse(called.stdout), { text: 'Hello, you! Hello, you!', served: '1' });

    const caller = sh(process.execPath, [join(app, 'dist', 'call-hello.js'), 'new-user'], app, env);
    assert.equal(ok(caller, 'the generated caller').trim(), 'Hello, new-user! (greeting #2)');

    // Edit the contract (an appended optional field) and the cell; swap; the new field is served.
    const contract = join(app, 'hello', 'contract.ts');
    writeFileSync(
      contract,
      readFileSync(contract, 'utf8').replace('  served: t.u64,\n', '  served: t.u64,\n  lang: t.option(t.string),\n'),
    );
    const cellFile = join(app, 'hello', 'index.ts');
    writeFileSync(
      cellFile,
      readFileSync(cellFile, 'utf8').replace('return { text, served };', "return { text, served, lang: 'en' };"),
    );
    const swapped = await runCell(['swap', 'hello'], env);
    assert.equal(swapped.code, 0, swapped.stderr);
    assert.match(swapped.stdout, /^hello: generation 1 \(pid \d+\) → 2 \(pid \d+\) in \d+ ms$/m);
    const after = await runCell(['call', 'hello', 'greet', '{"name": "again", "times": 1}', '--json'], env);
    assert.equal(after.code, 0, after.stderr);
    assert.deepEqual(JSON.parse(after.stdout), { text: 'Hello, again!', served: '1', lang: 'en' });

    const down = await runCell(['down'], env);
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /stopped 1 cell\(s\) and the Root/);
    const left = processesMentioning(join(work, 'home'));
    assert.deepEqual(left, [], 'no process of this test is left');
  },
);

test('without a compiler the install script says so in one line, exits 0, and Cell says why it stays on sockets', () => {
  const build = join(installed, 'native', 'build');
  const aside = join(work, 'native-build-aside');
  if (existsSync(build)) renameSync(build, aside);
  try {
    // A PATH with node and nothing else: no g++, make or python3.
    const bare = join(work, 'bare-bin');
    mkdirSync(bare, { recursive: true });
    symlinkSync(process.execPath, join(bare, 'node'));
    const r = sh(process.execPath, [join(installed, 'scripts', 'install-native.mjs')], installed, { PATH: bare });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(
      lines[0] as string,
      /^cell-runtime: shared-memory addon not built \(no g\+\+, make, python3 .*\); cells use Unix sockets\. Build it later with `npm rebuild cell-runtime`\.$/,
    );
    assert.match(readFileSync(join(build, 'NOT-BUILT'), 'utf8'), /no g\+\+, make, python3/);
    const doctor = sh(join(app, 'node_modules', '.bin', 'cell'), ['doctor', '--json'], app, {
      CELL_HOME: join(work, 'home2'),
    });
    const checks = JSON.parse(doctor.stdout) as { checks: Array<{ name: string; ok: boolean; detail: string }> };
    const shm = checks.checks.find((c) => c.name === 'shm addon');
    assert.equal(shm?.ok, false);
    assert.match(shm?.detail ?? '', /not built at install: no g\+\+, make, python3/);
    assert.match(shm?.detail ?? '', /npm rebuild cell-runtime/);
  } finally {
    rmSync(build, { recursive: true, force: true });
    if (existsSync(aside)) renameSync(aside, build);
  }
});
