// The escape suite: a hostile cell under a real Root and real bubblewrap tries every way out the
// threat model (docs/SANDBOX.md) names, and each attempt must be denied. Host-side probes check what
// the operator's side promises: no secret in any argv, reserved env refused, a forged pid file not
// trusted, private directories tightened, another local user kept out.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { Synapse } from '../../../src/index.js';
import { t } from '../../../src/protein/index.js';
import { rpc, service } from '../../../src/service/index.js';
import { canSandbox, echoCell, makeSandbox, processesMentioning, useSandboxEnv } from '../root/harness.js';
import { ATTACKER_SOURCE } from './attacker.js';

type Attempt = { ok: true; value: unknown } | { ok: false; error: string };

const Attacker = service('attacker', { probe: rpc(t.unit, t.string) });

function denied(r: Record<string, Attempt>, name: string, ...codes: string[]): void {
  const a = r[name];
  assert.ok(a !== undefined, `${name} was not attempted`);
  assert.equal(a.ok, false, `${name} succeeded: ${JSON.stringify(a)}`);
  if (codes.length > 0) assert.ok(codes.includes((a as { error: string }).error), `${name}: ${JSON.stringify(a)}`);
}

/** Every process's command line on the host, joined (what any local user can read). */
function allCommandLines(): string {
  let text = '';
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      text += `${readFileSync(`/proc/${p}/cmdline`, 'latin1')}\n`;
    } catch {}
  }
  return text;
}

test('a hostile cell under the Root reaches nothing it was not given', {
  skip: !canSandbox() && 'this host cannot sandbox (bubblewrap, user namespaces or cgroups missing)',
}, async (t0) => {
  const sb = makeSandbox();
  const restoreEnv = useSandboxEnv(sb);
  t0.after(async () => {
    restoreEnv();
    await sb.cleanup();
  });
  const home = sb.env.CELL_HOME as string;
  // A loose CELL_HOME left by someone: the Root tightens it.
  mkdirSync(home, { recursive: true, mode: 0o755 });
  chmodSync(home, 0o755);
  // What the Root hands a cell whose manifest names NATS credentials: present on the host, so the
  // probe below proves the attacker cannot see it, not merely that it does not exist.
  mkdirSync(join(home, 'secrets', 'victim'), { recursive: true, mode: 0o700 });
  writeFileSync(join(home, 'secrets', 'victim', 'tokenFile-nats.token'), randomBytes(8).toString('hex'), {
    mode: 0o400,
  });
  const listener = createServer((s) => s.destroy());
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  t0.after(() => listener.close());
  const secret = `s3cret-${randomBytes(8).toString('hex')}`;

  sb.cell('victim', echoCell('victim'));
  sb.cell('bystander', echoCell('bystander'));
  sb.cell('attacker', ATTACKER_SOURCE);
  const cells = {
    victim: { dna: './dna/victim' },
    bystander: { dna: './dna/bystander', autostart: false },
    attacker: {
      dna: './dna/attacker',
      calls: ['victim'],
      env: {
        PROBE_HOME: home,
        PROBE_PORT: String((listener.address() as { port: number }).port),
        PROBE_SECRET: secret,
      },
    },
  };

  await t0.test('reserved variables in a manifest env are refused before anything starts', async () => {
    for (const key of ['LD_PRELOAD', 'NODE_OPTIONS', 'CELL_SOCKET_DIR']) {
      sb.manifest({ ...cells, attacker: { ...cells.attacker, env: { ...cells.attacker.env, [key]: '/tmp/p.so' } } });
      const up = await sb.cli('up');
      assert.equal(up.code, 1, `${key}: ${up.stdout}`);
      assert.match(up.stderr, new RegExp(`env "${key}" is refused`));
      await sb.cli('down');
    }
  });

  await t0.test('the Ribosome builds only what the manifest names; limits are bounded', async () => {
    sb.cell('thief', "import s from '/etc/shadow' with { type: 'text' };\nconsole.log(s.length);\n");
    sb.manifest({ thief: { dna: './dna/thief' } });
    const thief = await sb.cli('up');
    assert.equal(thief.code, 1, thief.stdout);
    const said = thief.stdout + thief.stderr;
    assert.match(said, /\/etc\/shadow/);
    assert.doesNotMatch(said, /root:/, 'the refused file is never quoted');
    sb.manifest({ hog: { dna: './dna/victim', limits: { memory: '99999999T' } } });
    const hog = await sb.cli('up');
    assert.equal(hog.code, 1, hog.stdout);
    assert.match(hog.stderr, /limits\.memory/);
    await sb.cli('down');
  });

  sb.manifest(cells);
  const up = await sb.cli('up');
  assert.equal(up.code, 0, `${up.stderr}\n${up.stdout}`);
  const attacker = await Synapse.grow(Attacker, { waitMs: 20_000, timeoutMs: 60_000 });
  t0.after(() => attacker.$close());
  const r = JSON.parse(await attacker.probe(undefined)) as Record<string, Attempt>;
  t0.diagnostic(`attempts: ${JSON.stringify(r)}`);

  await t0.test('the control plane is out of sight: control socket, pid file, registry, logs, signing key', () => {
    for (const name of [
      'statControlSocket',
      'connectControlSocket',
      'writeRootPid',
      'readRegistry',
      'readVictimLog',
      'readSigningKey',
      'readSecrets',
    ]) {
      denied(r, name, 'ENOENT', 'EROFS', 'EACCES');
    }
  });

  await t0.test("the cell's channel answers only growing the peers it calls", () => {
    for (const name of [
      'rootList',
      'rootAdd',
      'rootLoad',
      'rootStopVictim',
      'rootSpawnUnlisted',
      'rootLogsVictim',
      'rootSwapVictim',
      'rootShutdown',
    ]) {
      denied(r, name, 'E_PERMISSION_DENIED');
    }
    // A listed peer's state is visible, its pid and DNA path are not.
    assert.deepEqual(r.rootStatusPeer, { ok: true, value: { state: 'running', pid: 0, dna: '' } });
  });

  await t0.test("another cell's socket can be dialled, not removed, replaced or shadowed", () => {
    assert.deepEqual(r.connectVictim, { ok: true, value: 'connected' });
    for (const name of ['unlinkVictim', 'renameOverVictim', 'bindInVictimDir', 'createInRendezvous']) {
      denied(r, name, 'EROFS', 'EACCES', 'EPERM', 'EXDEV');
    }
    assert.deepEqual(r.writeOwnDir, { ok: true, value: 'done' });
    denied(r, 'connectVictimTap', 'ENOENT', 'EACCES');
    // Its health answers any caller; its metrics only the operator, on a socket no cell sees.
    denied(r, 'connectVictimInspect', 'ENOENT', 'EACCES');
    denied(r, 'victimMetrics', 'E_PERMISSION_DENIED');
  });

  await t0.test('setuid is useless: an unprivileged owner on the host, nosuid inside', () => {
    assert.equal(r.setuidFile?.ok, true, JSON.stringify(r.setuidFile));
    const st = statSync(join(sb.env.CELL_SOCKET_DIR as string, 'attacker', 'suid'));
    assert.notEqual(st.uid, 0, 'a cell-made file is never owned by host root');
    assert.equal(r.ownDirNosuid?.ok, true, JSON.stringify(r.ownDirNosuid));
    assert.match(String((r.ownDirNosuid as { value: string }).value), /(^|,)nosuid(,|$)/);
  });

  await t0.test('no host files, no host network, no host processes, no privileges', () => {
    denied(r, 'readShadow', 'ENOENT', 'EACCES');
    denied(r, 'hostTcp', 'ENETUNREACH', 'ECONNREFUSED', 'EHOSTUNREACH');
    assert.ok(r.processes?.ok && (r.processes.value as number) <= 2, JSON.stringify(r.processes));
    denied(r, 'killInit', 'EPERM', 'ESRCH');
    const status = (r.status as { value: Record<string, unknown> }).value;
    assert.notEqual(status.uid, 0);
    assert.equal(status.seccomp, '2');
    assert.equal(status.noNewPrivs, '1');
    assert.equal(status.capEff, '0000000000000000');
  });

  await t0.test('secrets: the manifest env reaches the cell and no argv on the host', () => {
    assert.deepEqual(r.secretEnv, { ok: true, value: secret });
    assert.deepEqual(r.argvSecret, { ok: true, value: false });
    assert.ok(!allCommandLines().includes(secret), 'the secret is in some process argv');
    // Host-side helpers (the shell, bubblewrap) run with an empty environment.
    for (const pid of processesMentioning(sb.dir)) {
      let environ = '';
      try {
        environ = readFileSync(`/proc/${pid}/environ`, 'latin1');
      } catch {}
      assert.ok(!environ.includes(secret), `pid ${pid} carries the secret in its environment`);
    }
  });

  await t0.test('private directories are private: CELL_HOME tightened, control dir 0700', () => {
    assert.equal(statSync(home).mode & 0o777, 0o700);
    assert.equal(statSync(join(home, 'root')).mode & 0o777, 0o700);
    assert.equal(statSync(join(home, 'root', 'mitosis.sock')).mode & 0o777, 0o600);
  });

  await t0.test('another local user can neither drive the Root nor reach a cell', async (t) => {
    const user = `cellprobe${randomBytes(3).toString('hex')}`;
    const made = spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', user], {
      encoding: 'utf8',
    });
    if (made.status !== 0) {
      t.skip(`cannot create a throwaway user: ${made.stderr.trim() || made.error?.message}`);
      return;
    }
    t.after(() => spawnSync('userdel', [user]));
    const probe = (target: string) =>
      spawnSync(
        'runuser',
        [
          '-u',
          user,
          '--',
          process.execPath,
          '-e',
          `require('net').connect(${JSON.stringify(target)}).on('connect',()=>{console.log('connected');process.exit(0)}).on('error',(e)=>{console.log(e.code);process.exit(0)})`,
        ],
        { encoding: 'utf8', timeout: 10_000 },
      ).stdout.trim();
    assert.equal(probe(join(home, 'root', 'mitosis.sock')), 'EACCES');
    assert.equal(probe(join(sb.env.CELL_SOCKET_DIR as string, 'victim', 'victim.sock')), 'EACCES');
  });

  await t0.test('cell down signals only the Root it proved, never a pid a file names', async () => {
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    t0.after(() => sleeper.kill('SIGKILL'));
    writeFileSync(join(home, 'root', 'root.pid'), `${sleeper.pid}\n`);
    const down = await sb.cli('down');
    assert.equal(down.code, 0, down.stderr);
    assert.equal(sleeper.exitCode, null);
    assert.equal(sleeper.signalCode, null);
    process.kill(sleeper.pid as number, 0);
  });
});
