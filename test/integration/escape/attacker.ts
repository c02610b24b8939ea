// The source of a hostile cell, as the escape suite registers it with a real Root. It serves one
// method, `probe`, which tries every way out it knows and answers one JSON object: for each attempt,
// { ok: true, value } when it worked or { ok: false, error } (an errno or CellError code) when it did not.
// It receives the host's paths through its manifest env (PROBE_HOME, PROBE_PORT): an attacker knows them.
export const ATTACKER_SOURCE = `
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Membrane, Synapse, rpc, service, t } from 'cell';
import { RootService, connectRoot } from 'cell/host';

const home = process.env.PROBE_HOME;
const port = Number(process.env.PROBE_PORT);
const run = process.env.CELL_SOCKET_DIR;
const own = path.dirname(process.env.CELL_BIND_PATH);

async function attempt(report, name, fn) {
  try {
    const value = await fn();
    report[name] = { ok: true, value: value === undefined ? 'done' : value };
  } catch (err) {
    report[name] = { ok: false, error: err?.code ?? String(err?.message ?? err) };
  }
}

function connect(p) {
  return new Promise((resolve, reject) => {
    const s = net.connect(p);
    s.once('connect', () => { s.destroy(); resolve('connected'); });
    s.once('error', reject);
  });
}

async function rootCall(method, arg) {
  const root = await connectRoot({ timeoutMs: 10000 });
  try {
    const out = await root[method](arg);
    return out === undefined ? 'answered' : JSON.parse(JSON.stringify(out, (_k, v) => (typeof v === 'bigint' ? String(v) : v)));
  } finally {
    await root.$close();
  }
}

async function probe() {
  const r = {};
  // 1-4: the control plane and the Root's files are not in the sandbox at all.
  await attempt(r, 'statControlSocket', () => fs.statSync(path.join(home, 'root', 'mitosis.sock')).mode);
  await attempt(r, 'connectControlSocket', () => connect(path.join(home, 'root', 'mitosis.sock')));
  await attempt(r, 'writeRootPid', () => fs.writeFileSync(path.join(home, 'root', 'root.pid'), '1'));
  await attempt(r, 'readRegistry', () => fs.readdirSync(path.join(home, 'dna')));
  await attempt(r, 'readVictimLog', () => fs.readFileSync(path.join(home, 'logs', 'victim.log'), 'utf8').length);
  await attempt(r, 'readSigningKey', () => fs.readFileSync(path.join(home, 'root', 'identity.key'), 'utf8').length);
  // Credentials the Root hands other cells (their manifest's nats files) are not in this sandbox.
  await attempt(r, 'readSecrets', () => fs.readdirSync(path.join(home, 'secrets')));
  // 5-11: the cell's channel answers only 'spawn'/'status' of the peers it calls.
  await attempt(r, 'rootList', () => rootCall('list', undefined));
  await attempt(r, 'rootAdd', () => rootCall('add', { name: 'evil', dna: own }));
  await attempt(r, 'rootLoad', () => rootCall('load', { path: '/', start: true }));
  await attempt(r, 'rootStopVictim', () => rootCall('stop', { name: 'victim' }));
  await attempt(r, 'rootSpawnUnlisted', () => rootCall('spawn', { name: 'bystander', wait: true }));
  await attempt(r, 'rootLogsVictim', () => rootCall('logs', { name: 'victim', lines: 10 }));
  await attempt(r, 'rootSwapVictim', () => rootCall('swap', { name: 'victim' }));
  await attempt(r, 'rootShutdown', () => rootCall('shutdown', undefined));
  await attempt(r, 'rootStatusPeer', () => rootCall('status', { name: 'victim' }).then((row) => ({ state: row.state, pid: row.pid, dna: row.dna })));
  // 12-15: names are bound to cells: another cell's socket can be reached, not removed or shadowed.
  const victimSock = path.join(run, 'victim', 'victim.sock');
  await attempt(r, 'connectVictim', () => connect(victimSock));
  await attempt(r, 'unlinkVictim', () => fs.unlinkSync(victimSock));
  await attempt(r, 'renameOverVictim', () => {
    fs.writeFileSync(path.join(own, 'x'), '');
    fs.renameSync(path.join(own, 'x'), victimSock);
  });
  await attempt(r, 'bindInVictimDir', () => new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(path.join(run, 'victim', 'evil.sock'), () => { server.close(); resolve('bound'); });
  }));
  await attempt(r, 'createInRendezvous', () => fs.mkdirSync(path.join(run, 'shadow')));
  await attempt(r, 'writeOwnDir', () => fs.writeFileSync(path.join(own, 'note.txt'), 'mine'));
  // 16: another cell's tap is the operator's.
  await attempt(r, 'connectVictimTap', () => connect(path.join(home, 'cells', 'victim', 'tap.sock')));
  // 17: so are its metrics: its inspection socket is out of sight, its public one refuses them.
  await attempt(r, 'connectVictimInspect', () => connect(path.join(home, 'cells', 'victim', 'inspect.sock')));
  await attempt(r, 'victimMetrics', async () => {
    const victim = await Synapse.inspect('victim', { timeoutMs: 10000 });
    try {
      const health = await victim.health();
      if (health?.status !== 'ok') return 'no health: ' + JSON.stringify(health);
      return await victim.metrics();
    } finally {
      await victim.close();
    }
  });
  // 17: a setuid file in its own dir is owned by the cell's unprivileged uid and the mount is nosuid.
  await attempt(r, 'setuidFile', () => {
    const p = path.join(own, 'suid');
    fs.copyFileSync(process.execPath, p);
    fs.chmodSync(p, 0o4755);
    return (fs.statSync(p).mode & 0o7777).toString(8);
  });
  await attempt(r, 'ownDirNosuid', () => {
    const line = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\\n').find((l) => l.split(' ')[4] === own);
    return line === undefined ? 'no mount' : line.split(' ')[5];
  });
  // 18-20: host files, host network, host processes.
  await attempt(r, 'readShadow', () => fs.readFileSync('/etc/shadow', 'utf8').length);
  await attempt(r, 'hostTcp', () => connect({ host: '127.0.0.1', port }));
  await attempt(r, 'processes', () => fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p)).length);
  await attempt(r, 'killInit', () => process.kill(1, 'SIGKILL'));
  // 21: what the kernel enforces on this process.
  await attempt(r, 'status', () => {
    const s = fs.readFileSync('/proc/self/status', 'utf8');
    const f = (k) => new RegExp('^' + k + ':\\\\s*(\\\\S+)', 'm').exec(s)?.[1];
    return { uid: process.getuid(), seccomp: f('Seccomp'), noNewPrivs: f('NoNewPrivs'), capEff: f('CapEff'), capBnd: f('CapBnd') };
  });
  // 22: its environment holds what the manifest gave, and the secret is not in any argv it can see.
  await attempt(r, 'secretEnv', () => process.env.PROBE_SECRET);
  await attempt(r, 'argvSecret', () => fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p)).some((p) => {
    try { return fs.readFileSync('/proc/' + p + '/cmdline', 'utf8').includes(process.env.PROBE_SECRET); } catch { return false; }
  }));
  return JSON.stringify(r);
}

const Attacker = service('attacker', { probe: rpc(t.unit, t.string) });
await Membrane.bind(Attacker, { probe });
console.log('attacker ready');
`;
