import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  type CapsidSpec,
  diagnose,
  type Encapsulated,
  encapsulate,
  formatDoctor,
  which,
} from '../../../src/capsid/index.js';
import { isCellError } from '../../../src/errors/index.js';
import { exportRootPublicKey, issueIdentity, loadOrCreateRootKey } from '../../../src/identity/index.js';
import { Synapse } from '../../../src/index.js';
import type { CellBoot } from '../../../src/paths/index.js';
import { t as types } from '../../../src/protein/index.js';
import { synthesize } from '../../../src/ribosome/index.js';
import { rpc, service } from '../../../src/service/index.js';

const PROBE = fileURLToPath(new URL('./fixtures/probe.js', import.meta.url));

interface Workspace {
  dir: string;
  socketDir: string;
  cache: string;
}

function workspace(t: TestContext): Workspace {
  const dir = mkdtempSync(join(tmpdir(), 'cell-capsid-'));
  const ws = { dir, socketDir: join(dir, 'run'), cache: join(dir, 'cache') };
  mkdirSync(ws.socketDir, { mode: 0o711 });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return ws;
}

/** Writes a one-file DNA and compiles it. */
async function bundle(ws: Workspace, name: string, source: string, file = 'index.ts'): Promise<string> {
  const dna = join(ws.dir, 'dna', name);
  mkdirSync(dna, { recursive: true });
  writeFileSync(join(dna, file), source);
  return (await synthesize({ name, dir: dna }, { cacheDir: ws.cache })).path;
}

/** A loopback TCP listener that counts the connections reaching it. */
async function countingTcpServer(t: TestContext): Promise<{ server: Server; connections: number }> {
  const counter = {
    server: createServer((s) => {
      counter.connections++;
      s.destroy();
    }),
    connections: 0,
  };
  await new Promise<void>((r) => counter.server.listen(0, '127.0.0.1', r));
  t.after(() => counter.server.close());
  return counter;
}

type StartSpec = Partial<CapsidSpec> & {
  name: string;
  bundlePath: string;
  env?: Record<string, string>;
  /** What the Root adds to the boot contract: the cell's identity and the Root's public key. */
  attest?: Pick<CellBoot, 'identity' | 'rootKey'>;
};

/** The cell's dirs as the Root lays them out: its own part of the rendezvous dir and a private dir. */
function cellDirs(ws: Workspace, name: string): { run: string; priv: string } {
  const run = join(ws.socketDir, name);
  const priv = join(ws.dir, 'cells', name);
  mkdirSync(run, { recursive: true, mode: 0o700 });
  mkdirSync(priv, { recursive: true, mode: 0o700 });
  return { run, priv };
}

async function start(t: TestContext, ws: Workspace, spec: StartSpec) {
  const { env, attest, ...rest } = spec;
  const dirs = cellDirs(ws, spec.name);
  const boot: CellBoot = {
    name: spec.name,
    generation: 1,
    socketDir: ws.socketDir,
    bindPath: join(dirs.run, `${spec.name}.sock`),
    tapPath: join(dirs.priv, 'tap.sock'),
    inspectPath: join(dirs.priv, 'inspect.sock'),
    umbilical: '',
    lan: false,
    env: env ?? {},
    ...attest,
  };
  const cell = await encapsulate({
    boot,
    writable: [dirs.run, dirs.priv],
    readOnly: [ws.socketDir],
    sandbox: true,
    stdout: 'pipe',
    stderr: 'pipe',
    ...rest,
  });
  t.after(() => cell.dispose());
  // 'close' (not 'exit'): by then every byte the cell wrote to its pipes has been read.
  closed.set(cell, new Promise((resolve) => cell.child.once('close', (code, signal) => resolve({ code, signal }))));
  return cell;
}

const closed = new WeakMap<Encapsulated, Promise<{ code: number | null; signal: NodeJS.Signals | null }>>();

function collect(cell: Encapsulated): { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  cell.child.stdout?.on('data', (d) => {
    out += d;
  });
  cell.child.stderr?.on('data', (d) => {
    err += d;
  });
  return { out: () => out, err: () => err };
}

function exited(cell: Encapsulated): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return closed.get(cell) as Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Running (a zombie awaiting its reaper, possibly the host's init, has stopped running). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.charAt(stat.lastIndexOf(')') + 2);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** What a cell's environment holds: the boot contract's variables and the addon path. */
const BOOT_ENV = [
  'CELL_BIND_PATH',
  'CELL_GENERATION',
  'CELL_LAN',
  'CELL_NAME',
  'CELL_NATIVE_ADDON',
  'CELL_SOCKET_DIR',
  'CELL_TAP_PATH',
  'CELL_UMBILICAL',
];

type Attempt = { ok: true; value: unknown } | { ok: false; error: string };

test('escape attempts from inside a sandboxed cell all fail', async (t) => {
  const ws = workspace(t);
  const probeBundle = await bundle(ws, 'probe', readFileSync(PROBE, 'utf8'), 'index.js');

  // Host-side listeners on loopback: the cell must reach neither.
  const tcp = await countingTcpServer(t);
  let udpDatagrams = 0;
  const udp = createSocket('udp4');
  udp.on('message', () => udpDatagrams++);
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
  t.after(() => udp.close());
  const tcpPort = (tcp.server.address() as { port: number }).port;
  const udpPort = udp.address().port;

  const token = randomBytes(6).toString('hex');
  const planted = ['/usr', '/root', '/etc'].map((d) => `${d}/escaped-${token}`);
  t.after(() => {
    for (const p of planted) rmSync(p, { force: true });
  });
  const cell = await start(t, ws, {
    name: 'probe',
    bundlePath: probeBundle,
    args: [String(tcpPort), String(udpPort), token],
  });
  assert.equal(cell.sandbox, 'bwrap');
  assert.ok(cell.cgroup !== null && existsSync(cell.cgroup), `cgroup ${cell.cgroup}`);
  const io = collect(cell);
  const { code } = await exited(cell);
  assert.equal(code, 0, io.err());
  const r = JSON.parse(io.out()) as Record<string, Attempt>;

  // Network: its own namespace, loopback only; the host's listeners are unreachable.
  assert.equal(r.tcp?.ok, false, JSON.stringify(r.tcp));
  assert.deepEqual(r.interfaces, { ok: true, value: ['lo'] });
  assert.equal(tcp.connections, 0);
  // Loopback delivery is synchronous in the kernel: had the datagram crossed, it would be queued by now.
  await new Promise<void>((resolve) => udp.send('marker', udpPort, '127.0.0.1', () => resolve()));
  await waitFor(() => udpDatagrams >= 1, 2000, 'the host marker datagram');
  assert.equal(udpDatagrams, 1, 'only the host marker arrived, not the cell datagram');

  // Files: no home directory, no secrets, nothing writable outside its socket dir and /tmp.
  const realRoot = readdirSync('/root');
  if (r.readRoot?.ok) {
    for (const entry of realRoot) assert.ok(!(r.readRoot.value as string[]).includes(entry), `/root/${entry} visible`);
  } else assert.equal(r.readRoot?.error, 'ENOENT');
  assert.equal(r.readSsh?.ok, false);
  assert.equal(r.readShadow?.ok, false);
  assert.equal(r.writeUsr?.ok, false, JSON.stringify(r.writeUsr));
  assert.equal(r.writeRootHome?.ok, false, JSON.stringify(r.writeRootHome));
  assert.equal(r.writeEtc?.ok, false, JSON.stringify(r.writeEtc));
  for (const p of planted) assert.equal(existsSync(p), false, `${p} was planted on the host`);

  // Processes: its own pid namespace holds only bwrap's init and the cell.
  assert.equal(r.processes?.ok, true);
  const procs = (r.processes as { value: string[] }).value;
  assert.ok(procs.length <= 2, procs.join('\n'));
  for (const p of procs) assert.match(p, /bwrap|node/, p);

  assert.deepEqual(r.hostname, { ok: true, value: 'cell-probe' });
  // Nobody (in its own user namespace, or on the host when the Root is root), without a capability.
  assert.deepEqual(r.identity, { ok: true, value: { uid: 65534, capEff: '0000000000000000' } });
  // Under the syscall filter (mode 2), unable to gain privileges, with nothing left to regain.
  assert.deepEqual(r.confinement, { ok: true, value: { seccomp: '2', noNewPrivs: '1', capBnd: '0000000000000000' } });
  // Environment: the boot contract's variables and the addon path, plus the PWD bubblewrap sets for
  // its --chdir; nothing of the host's.
  assert.deepEqual(r.env, { ok: true, value: [...BOOT_ENV, 'PWD'].sort() });
  // What it may do: write its own part of the socket dir (not the rest), and map shared memory.
  assert.equal(r.socketDir?.ok, false, JSON.stringify(r.socketDir));
  assert.equal(existsSync(join(ws.socketDir, 'probe.txt')), false);
  assert.deepEqual(r.ownDir, { ok: true, value: 'written' });
  assert.equal(readFileSync(join(ws.socketDir, 'probe', 'probe.txt'), 'utf8'), 'from inside');
  assert.deepEqual(r.shm, { ok: true, value: 4096 });
  await cell.dispose();
});

const Echo = service('echo', { add: rpc(types.struct('Pair', { a: types.uint, b: types.uint }), types.uint) });

test('a sandboxed cell importing `cell` gets its identity in the boot contract, binds its socket and answers a Synapse from the host', async (t) => {
  const ws = workspace(t);
  const saved = { home: process.env.CELL_HOME, socketDir: process.env.CELL_SOCKET_DIR };
  process.env.CELL_HOME = join(ws.dir, 'home');
  process.env.CELL_SOCKET_DIR = ws.socketDir;
  t.after(() => {
    for (const [k, v] of [
      ['CELL_HOME', saved.home],
      ['CELL_SOCKET_DIR', saved.socketDir],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  // What the Root does: an identity for this name and generation, and its public key.
  const rootKey = loadOrCreateRootKey();
  const attest = {
    identity: issueIdentity(rootKey, { cell: 'echo', generation: 1 }),
    rootKey: exportRootPublicKey(rootKey),
  };
  const path = await bundle(
    ws,
    'echo',
    [
      "import { Membrane, rpc, service, t } from 'cell';",
      "const Echo = service('echo', { add: rpc(t.struct('Pair', { a: t.uint, b: t.uint }), t.uint) });",
      'await Membrane.bind(Echo, { add: ({ a, b }) => a + b });',
      "console.log('ready');",
      '',
    ].join('\n'),
  );
  const cell = await start(t, ws, {
    name: 'echo',
    bundlePath: path,
    limits: { memoryBytes: 256 * 1024 * 1024, cpu: 0.5 },
    attest,
  });
  const io = collect(cell);
  await waitFor(() => io.out().includes('ready') || cell.child.exitCode !== null, 15_000, 'the echo cell');
  assert.match(io.out(), /ready/, io.err());
  const client = await Synapse.grow(Echo, { waitMs: 5000 });
  t.after(() => client.$close());
  assert.equal(await client.add({ a: 40, b: 2 }), 42);
  assert.equal(client.$synapse.transport?.identity, 'verified');
  const used = cell.memoryBytes();
  assert.ok(used !== null && used > 1024 * 1024 && used <= 256 * 1024 * 1024, `memory ${used}`);
});

test('a cell allocating past its memory limit is OOM-killed and oomKilled() says so', async (t) => {
  const ws = workspace(t);
  const path = await bundle(ws, 'hog', 'const keep = [];\nfor (;;) keep.push(Buffer.alloc(4 << 20, 1));\n', 'index.js');
  const cell = await start(t, ws, { name: 'hog', bundlePath: path, limits: { memoryBytes: 64 * 1024 * 1024 } });
  assert.ok(cell.cgroup !== null);
  const limitFile = ['memory.limit_in_bytes', 'memory.max'].map((f) => join(cell.cgroup as string, f)).find(existsSync);
  assert.equal(readFileSync(limitFile as string, 'utf8').trim(), String(64 * 1024 * 1024));
  const { code, signal } = await exited(cell);
  // bwrap's init reports a child killed by signal N as exit 128+N.
  assert.ok(signal === 'SIGKILL' || code === 128 + 9, `exit ${code} ${signal}`);
  assert.equal(cell.oomKilled(), true);
  await cell.dispose();
  assert.equal(cell.oomKilled(), true, 'the verdict survives dispose');
});

test('dispose() leaves no process and no cgroup directory, even for processes the cell started', async (t) => {
  const ws = workspace(t);
  const path = await bundle(
    ws,
    'parent',
    [
      "import { spawn } from 'node:child_process';",
      "const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore', detached: true });",
      'child.unref();',
      "console.log('ready');",
      'setInterval(() => {}, 1000);',
      '',
    ].join('\n'),
    'index.js',
  );
  for (const sandbox of [true, false]) {
    const cell = await start(t, ws, { name: 'parent', bundlePath: path, sandbox, limits: { cpu: 0.5, pids: 64 } });
    const io = collect(cell);
    await waitFor(() => io.out().includes('ready'), 15_000, 'the cell to start its child');
    const cgroup = cell.cgroup as string;
    const procs = () => readFileSync(join(cgroup, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    // sh exec'd into bwrap (or node); sandboxed adds bwrap's init. Plus the grandchild.
    await waitFor(() => procs().length >= (sandbox ? 3 : 2), 5000, 'the grandchild in the cgroup');
    const pids = procs();
    assert.ok(pids.includes(cell.child.pid as number));
    const cpuDir = cgroup.replace('/memory/', '/cpu/');
    if (existsSync(join(cpuDir, 'cpu.cfs_quota_us'))) {
      assert.equal(readFileSync(join(cpuDir, 'cpu.cfs_quota_us'), 'utf8').trim(), '50000');
    }
    await cell.dispose();
    assert.deepEqual(pids.filter(alive), []);
    assert.equal(existsSync(cgroup), false);
    assert.equal(existsSync(cpuDir), false);
    assert.equal(existsSync(cgroup.replace('/memory/', '/pids/')), false);
  }
});

test('without bubblewrap, a sandboxed spawn refuses naming the fix; sandbox:false runs raw', async (t) => {
  const ws = workspace(t);
  const probeBundle = await bundle(ws, 'probe', readFileSync(PROBE, 'utf8'), 'index.js');

  const refused = (err: unknown) => {
    assert.ok(isCellError(err, 'E_SANDBOX_UNAVAILABLE'), String(err));
    assert.match(`${err.message} ${err.fix}`, /apt-get install bubblewrap/);
    assert.match(`${err.message} ${err.fix}`, /--no-sandbox/);
    return true;
  };
  await assert.rejects(start(t, ws, { name: 'probe', bundlePath: probeBundle, bwrap: '/nonexistent/bwrap' }), refused);
  const savedPath = process.env.PATH;
  const savedBwrap = process.env.CELL_BWRAP;
  process.env.PATH = ws.dir;
  delete process.env.CELL_BWRAP;
  try {
    await assert.rejects(start(t, ws, { name: 'probe', bundlePath: probeBundle }), refused);
  } finally {
    process.env.PATH = savedPath;
    if (savedBwrap !== undefined) process.env.CELL_BWRAP = savedBwrap;
  }

  const cell = await start(t, ws, {
    name: 'probe',
    bundlePath: probeBundle,
    sandbox: false,
    bwrap: '/nonexistent/bwrap',
    args: ['1', '1', 'raw-run', 'raw'],
  });
  assert.equal(cell.sandbox, 'none');
  const io = collect(cell);
  const { code } = await exited(cell);
  assert.equal(code, 0, io.err());
  const r = JSON.parse(io.out()) as Record<string, Attempt>;
  // Raw: it sees the host's processes (this test runner among them) and its real hostname.
  assert.equal(r.processes?.ok, true);
  assert.ok((r.processes as { value: string[] }).value.length > 2);
  assert.notEqual((r.hostname as { value: string }).value, 'cell-probe');
  // Still only the boot contract, plus its parent's pid (a raw cell watches it: no --die-with-parent).
  assert.deepEqual(r.env, { ok: true, value: [...BOOT_ENV, 'CELL_PARENT_PID'].sort() });
});

test('diagnose() reports real findings, and a hidden tool fails its check', async () => {
  const checks = await diagnose();
  const byName = new Map(checks.map((c) => [c.name, c]));
  for (const name of [
    'bubblewrap',
    'sandbox runnable',
    'nested user namespaces',
    'seccomp',
    'user namespaces',
    'cgroups',
    'shm addon',
    'esbuild',
    'multicast route',
  ]) {
    assert.ok(byName.has(name), `missing check ${name}`);
  }
  assert.equal(byName.get('bubblewrap')?.ok, true, byName.get('bubblewrap')?.detail);
  assert.match(byName.get('bubblewrap')?.detail ?? '', /bubblewrap \d/);
  assert.equal(byName.get('sandbox runnable')?.ok, true, byName.get('sandbox runnable')?.detail);
  assert.deepEqual(
    [byName.get('nested user namespaces')?.ok, byName.get('nested user namespaces')?.detail],
    [true, 'disabled in cells (bwrap --disable-userns)'],
  );
  assert.equal(byName.get('seccomp')?.ok, true, byName.get('seccomp')?.detail);
  assert.match(
    byName.get('seccomp')?.detail ?? '',
    /^\d+ syscalls denied \((x86_64|aarch64)\); clone, personality, ioctl by argument$/,
  );
  assert.equal(byName.get('cgroups')?.ok, true, byName.get('cgroups')?.detail);
  assert.equal(byName.get('shm addon')?.ok, true, byName.get('shm addon')?.detail);
  assert.equal(byName.get('esbuild')?.ok, true);
  for (const c of checks) assert.ok(c.detail.length > 0 && c.disables.length > 0);

  const hidden = await diagnose({ searchPath: '/nonexistent' });
  const bw = hidden.find((c) => c.name === 'bubblewrap');
  assert.equal(bw?.ok, false);
  assert.match(bw?.detail ?? '', /apt-get install bubblewrap/);
  assert.match(bw?.disables ?? '', /sandbox/);
  assert.equal(hidden.find((c) => c.name === 'sandbox runnable')?.ok, false);
  for (const name of ['nested user namespaces', 'seccomp']) {
    assert.deepEqual(
      hidden.filter((c) => c.name === name).map((c) => [c.ok, c.detail]),
      [[false, 'no bubblewrap to run']],
    );
  }
  const explicit = await diagnose({ bwrap: '/nonexistent/bwrap' });
  assert.equal(explicit.find((c) => c.name === 'bubblewrap')?.ok, false);
});

test('diagnose() names an old bubblewrap without --disable-userns, and a bwrap whose --seccomp fails', async (t) => {
  const ws = workspace(t);
  const real = which('bwrap');
  if (real === undefined) {
    t.skip('bubblewrap (bwrap) is not on PATH: apt-get install bubblewrap');
    return;
  }
  // Stand-ins for the real bwrap that refuse one option the way bubblewrap does.
  const refusing = (option: string, message: string) => {
    const path = join(ws.dir, `bwrap-without${option}`);
    writeFileSync(
      path,
      [
        '#!/bin/sh',
        `[ "$1" = --version ] && { echo 'bubblewrap 0.6.1'; exit 0; }`,
        `for a; do [ "$a" = ${option} ] && { echo '${message}' >&2; exit 1; }; done`,
        `exec ${real} "$@"`,
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    return path;
  };
  const old = await diagnose({ bwrap: refusing('--disable-userns', 'bwrap: Unknown option --disable-userns') });
  const userns = old.find((c) => c.name === 'nested user namespaces');
  assert.equal(userns?.ok, false);
  assert.match(userns?.detail ?? '', /bubblewrap 0\.6\.1 has no --disable-userns; upgrade bubblewrap to 0\.8 or later/);
  assert.match(userns?.disables ?? '', /user namespaces inside cells/);
  assert.equal(old.find((c) => c.name === 'sandbox runnable')?.ok, true);
  assert.equal(old.find((c) => c.name === 'seccomp')?.ok, true);

  const noFilter = await diagnose({
    bwrap: refusing('--seccomp', 'bwrap: Unable to set up system call filtering as requested'),
  });
  const seccomp = noFilter.find((c) => c.name === 'seccomp');
  assert.equal(seccomp?.ok, false);
  assert.match(seccomp?.detail ?? '', /--seccomp fails: bwrap: Unable to set up system call filtering/);
  assert.match(seccomp?.detail ?? '', /CONFIG_SECCOMP_FILTER/);
  assert.match(seccomp?.disables ?? '', /syscall filter/);
  assert.equal(noFilter.find((c) => c.name === 'nested user namespaces')?.ok, true);
  assert.match(formatDoctor(noFilter), /FAIL {2}seccomp {16}.*\n {6} +disables: the syscall filter in cells/);
});

test('signal() reaches the sandboxed cell itself, so SIGTERM drains instead of killing', async (t) => {
  const ws = workspace(t);
  const path = await bundle(
    ws,
    'drainer',
    [
      "process.on('SIGTERM', () => {",
      "  console.log('drained');",
      '  process.exit(0);',
      '});',
      "console.log('ready');",
      'setInterval(() => {}, 1000);',
      '',
    ].join('\n'),
    'index.js',
  );
  for (const sandbox of [true, false]) {
    const cell = await start(t, ws, { name: 'drainer', bundlePath: path, sandbox });
    const io = collect(cell);
    await waitFor(() => io.out().includes('ready'), 15_000, 'the cell to start');
    assert.equal(cell.signal('SIGTERM'), true);
    const { code, signal } = await exited(cell);
    assert.equal(code, 0, `sandbox ${sandbox}: exit ${code} ${signal} ${io.err()}`);
    assert.match(io.out(), /drained/);
    assert.equal(cell.signal('SIGTERM'), false, 'nothing left to signal');
    await cell.dispose();
  }
});

test('network: true shares the host network; readOnlyPaths are readable and stay read-only', async (t) => {
  const ws = workspace(t);
  const probeBundle = await bundle(ws, 'probe', readFileSync(PROBE, 'utf8'), 'index.js');
  const tcp = await countingTcpServer(t);
  const extra = join(ws.dir, 'extra.txt');
  writeFileSync(extra, 'granted');

  const cell = await start(t, ws, {
    name: 'probe',
    bundlePath: probeBundle,
    network: true,
    readOnly: [ws.socketDir, extra],
    env: { PROBE_EXTRA: extra },
    args: [String((tcp.server.address() as { port: number }).port), '9', randomBytes(6).toString('hex')],
  });
  const io = collect(cell);
  const { code } = await exited(cell);
  assert.equal(code, 0, io.err());
  const r = JSON.parse(io.out()) as Record<string, Attempt>;
  assert.deepEqual(r.tcp, { ok: true, value: 'connected' });
  assert.equal(tcp.connections, 1);
  assert.deepEqual(r.readExtra, { ok: true, value: 'granted' });
  assert.equal(r.writeExtra?.ok, false);
  assert.equal(readFileSync(extra, 'utf8'), 'granted');
  // Everything else stays as confined as without the network.
  assert.equal(r.readShadow?.ok, false);
  assert.equal(r.writeUsr?.ok, false);
  assert.ok((r.processes as { value: string[] }).value.length <= 2);
});

test('without cgroups, a sandboxed spawn refuses with E_CGROUP_UNAVAILABLE; sandbox:false runs unlimited', async (t) => {
  const ws = workspace(t);
  const path = await bundle(ws, 'plain', "console.log('ran');\n", 'index.js');
  const saved = process.env.CELL_CGROUP_ROOT;
  process.env.CELL_CGROUP_ROOT = join(ws.dir, 'no-cgroups');
  t.after(() => {
    if (saved === undefined) delete process.env.CELL_CGROUP_ROOT;
    else process.env.CELL_CGROUP_ROOT = saved;
  });
  await assert.rejects(start(t, ws, { name: 'plain', bundlePath: path }), (err: unknown) => {
    assert.ok(isCellError(err, 'E_CGROUP_UNAVAILABLE'), String(err));
    assert.match(err.message, /no cgroup hierarchy is mounted/);
    assert.match(`${err.message} ${err.fix}`, /--no-sandbox/);
    return true;
  });
  const cell = await start(t, ws, { name: 'plain', bundlePath: path, sandbox: false });
  assert.equal(cell.cgroup, null);
  assert.equal(cell.memoryBytes(), null);
  const io = collect(cell);
  assert.equal((await exited(cell)).code, 0, io.err());
  assert.equal(io.out(), 'ran\n');
  assert.equal(cell.oomKilled(), false);
  const doctor = await diagnose();
  const cgroups = doctor.find((c) => c.name === 'cgroups');
  assert.equal(cgroups?.ok, false);
  assert.match(cgroups?.disables ?? '', /limits/);
});
