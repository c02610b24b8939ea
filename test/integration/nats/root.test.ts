// A cell whose cell.json entry has `nats`: the Root hands it its NATS settings and its own copies of
// the named secret files (never argv, never the originals), and the cell serves on NATS from inside
// the sandbox; a caller with no local path reaches it through NATS alone.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { closeNats, natsResolver, natsSettings } from '../../../src/nats/index.js';
import { Synapse } from '../../../src/synapse/index.js';
import { canSandbox, echoCell, echoContract, makeSandbox, useSandboxEnv } from '../root/harness.js';
import { NatsCluster, natsServerAvailable } from './cluster.js';

/** Every process's command line and environment on the host that this user may read. */
function everyProcessText(): string {
  let text = '';
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    for (const f of ['cmdline', 'environ']) {
      try {
        text += `${readFileSync(`/proc/${p}/${f}`, 'latin1')}\n`;
      } catch {}
    }
  }
  return text;
}

test('a cell.json "nats" entry: the Root hands the settings and a private copy of the token file to a sandboxed cell that serves on NATS', {
  skip: !natsServerAvailable()
    ? 'needs nats-server (apt-get install nats-server)'
    : !canSandbox() && 'this host cannot sandbox (bubblewrap, user namespaces or cgroups missing)',
}, async (t) => {
  const sb = makeSandbox();
  const restoreEnv = useSandboxEnv(sb);
  const token = `tok${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`;
  const server = await NatsCluster.start({
    dir: sb.dir,
    addresses: ['127.0.0.1'],
    extra: `authorization { token: "${token}" }`,
  });
  t.after(async () => {
    await closeNats();
    await server.stop();
    restoreEnv();
    await sb.cleanup();
  });
  const tokenFile = join(sb.dir, 'nats.token');
  // Readable by the operator only: the cell (another uid when the Root is root) gets its own copy.
  writeFileSync(tokenFile, token, { mode: 0o600 });

  sb.cell('natsecho', echoCell('natsecho'));
  sb.manifest({ natsecho: { dna: './dna/natsecho', nats: { servers: [server.url(0)], tokenFile: './nats.token' } } });
  const up = await sb.cli('up');
  assert.equal(up.code, 0, `${up.stderr}\n${up.stdout}`);

  // A caller that finds cells through NATS only (no local socket, no Root) reaches the sandboxed cell.
  const settings = natsSettings({ servers: server.url(0), tokenFile }, {});
  const c = await Synapse.grow(echoContract('natsecho'), { resolvers: [natsResolver(() => settings)], waitMs: 15_000 });
  t.after(() => c.$close());
  assert.equal(c.$synapse.transport?.transport, 'nats');
  assert.equal(await c.echo('over nats'), 'natsecho:over nats');
  assert.equal(await c.add({ a: 20, b: 22 }), 42);

  // The secret itself is in no process's argv or environment; the cell's copy is private to it.
  assert.ok(!everyProcessText().includes(token), 'the NATS token appears in a command line or environment');
  // Written by the Root outside anything the cell can write, bound read-only into its sandbox alone.
  const copyDir = join(sb.env.CELL_HOME as string, 'secrets', 'natsecho');
  const [copy] = readdirSync(copyDir);
  assert.ok(copy !== undefined);
  const st = statSync(join(copyDir, copy));
  assert.equal(st.mode & 0o777, 0o400);
  assert.equal(statSync(copyDir).mode & 0o777, 0o500);
  assert.equal(statSync(join(copyDir, '..')).mode & 0o777, 0o700);
  if (process.getuid?.() === 0) assert.notEqual(st.uid, 0, 'the copy belongs to the sandbox user');
  assert.equal(readFileSync(join(copyDir, copy), 'utf8'), token);
  const down = await sb.cli('down');
  assert.equal(down.code, 0, down.stderr);
  assert.throws(() => statSync(copyDir), /ENOENT/, 'the copies go with the cell');
});

test('a malformed "nats" entry is refused before anything starts, naming the field', {
  skip: !canSandbox() && 'this host cannot sandbox (bubblewrap, user namespaces or cgroups missing)',
}, async (t) => {
  const sb = makeSandbox();
  t.after(() => sb.cleanup());
  sb.cell('natsecho', echoCell('natsecho'));
  for (const [nats, said] of [
    [{ server: 'nats://127.0.0.1:4222' }, /unknown field "server".*did you mean "servers"/s],
    [
      { servers: 'nats://127.0.0.1:4222', tls: { cafile: '/x' } },
      /nats\.tls has an unknown field "cafile".*did you mean "caFile"/s,
    ],
    ['http://example.com', /"http:\/\/example\.com" is not one/],
    [42, /must be false, a URL, a list of URLs or an object/],
  ] as const) {
    sb.manifest({ natsecho: { dna: './dna/natsecho', nats } });
    const up = await sb.cli('up');
    assert.equal(up.code, 1, `${JSON.stringify(nats)}: ${up.stdout}`);
    assert.match(up.stderr + up.stdout, said);
    await sb.cli('down');
  }
});
