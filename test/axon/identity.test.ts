import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  createJoinRequest,
  initMesh,
  installJoinBundle,
  loadMeshIdentity,
  meshPaths,
  signJoinRequest,
} from '../../src/axon/identity/index.js';
import { connectMesh, listenMesh } from '../../src/axon/tls/index.js';
import { isCellError } from '../../src/errors/index.js';
import { FramedChannel, serveFrames } from '../support/framed.js';

function tempHome(t: { after: (fn: () => void) => void }, label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `cell-axon-${label}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('init, join, sign and install: keys stay 0600, the chain verifies, the CA key never moves', async (t) => {
  const caHome = tempHome(t, 'ca');
  const joinHome = tempHome(t, 'join');
  const init = await initMesh({ home: caHome, hostName: 'alpha' });
  const caPaths = meshPaths(caHome);
  for (const p of [caPaths.caKey, caPaths.hostKey]) assert.equal(statSync(p).mode & 0o777, 0o600, p);
  assert.equal(statSync(caPaths.dir).mode & 0o777, 0o700);

  const req = await createJoinRequest({ home: joinHome, hostName: 'beta', passphrase: 'correct horse' });
  const joinPaths = meshPaths(joinHome);
  assert.match(readFileSync(joinPaths.hostKey, 'utf8'), /BEGIN ENCRYPTED PRIVATE KEY/);
  assert.equal(statSync(joinPaths.hostKey).mode & 0o777, 0o600);
  const signed = await signJoinRequest(req.csrPem, { home: caHome });
  assert.equal(signed.hostName, 'beta');
  const installed = installJoinBundle(signed.bundlePem, {
    home: joinHome,
    passphrase: 'correct horse',
    expectCaFingerprint: init.caFingerprint,
  });
  assert.equal(installed.caFingerprint, init.caFingerprint);
  assert.equal(installed.hostName, 'beta');
  assert.throws(() => statSync(joinPaths.caKey), /ENOENT/);

  const beta = loadMeshIdentity({ home: joinHome, passphrase: 'correct horse' });
  assert.ok(beta.cert.verify(new X509Certificate(readFileSync(caPaths.caCert)).publicKey));
  assert.throws(
    () => loadMeshIdentity({ home: joinHome, passphrase: 'wrong' }),
    (e) => isCellError(e, 'E_MESH_IDENTITY'),
  );
});

test('a tampered CSR, a bundle for another key and a bundle from another CA are refused', async (t) => {
  const caHome = tempHome(t, 'ca');
  const otherCa = tempHome(t, 'other');
  const joinHome = tempHome(t, 'join');
  await initMesh({ home: caHome, hostName: 'alpha' });
  const other = await initMesh({ home: otherCa, hostName: 'omega' });
  const req = await createJoinRequest({ home: joinHome, hostName: 'beta' });
  const body = req.csrPem.split('\n');
  body[3] = `${(body[3] as string).slice(0, 10)}${(body[3] as string)[10] === 'A' ? 'B' : 'A'}${(body[3] as string).slice(11)}`;
  await assert.rejects(signJoinRequest(body.join('\n'), { home: caHome }), (e) => isCellError(e, 'E_MESH_IDENTITY'));

  const signed = await signJoinRequest(req.csrPem, { home: caHome });
  assert.throws(
    () => installJoinBundle(signed.bundlePem, { home: joinHome, expectCaFingerprint: other.caFingerprint }),
    (e) => isCellError(e, 'E_MESH_IDENTITY'),
  );
  // A fresh join replaces host.key, so the earlier certificate no longer matches it.
  await createJoinRequest({ home: joinHome, hostName: 'beta', force: true });
  assert.throws(() => installJoinBundle(signed.bundlePem, { home: joinHome }), /another key/);
});

test('mutual TLS 1.3: mesh hosts talk, a host of another mesh is refused both ways', async (t) => {
  const caHome = tempHome(t, 'ca');
  const joinHome = tempHome(t, 'join');
  const strangerHome = tempHome(t, 'stranger');
  await initMesh({ home: caHome, hostName: 'alpha' });
  const req = await createJoinRequest({ home: joinHome, hostName: 'beta' });
  installJoinBundle((await signJoinRequest(req.csrPem, { home: caHome })).bundlePem, { home: joinHome });
  await initMesh({ home: strangerHome, hostName: 'alpha' });
  const alpha = loadMeshIdentity({ home: caHome });
  const beta = loadMeshIdentity({ home: joinHome });
  const stranger = loadMeshIdentity({ home: strangerHome });

  const refused: string[] = [];
  const server = await listenMesh({
    identity: alpha,
    host: '127.0.0.1',
    onSocket: (s) => serveFrames(s, (p) => Buffer.concat([Buffer.from('echo:'), p])),
    onRefused: (err) => refused.push(err.message),
  });
  t.after(() => server.close());
  const port = (server.address() as { port: number }).port;

  const socket = await connectMesh({ identity: beta, host: '127.0.0.1', port, fingerprint: alpha.hostFingerprint });
  assert.equal(socket.getProtocol(), 'TLSv1.3');
  const ch = new FramedChannel(socket, 'alpha');
  assert.equal(String(await ch.call(Buffer.from('hi'))), 'echo:hi');
  ch.close();

  // Pinning: beta expects a different host's fingerprint at this address.
  await assert.rejects(
    connectMesh({ identity: beta, host: '127.0.0.1', port, fingerprint: beta.hostFingerprint }),
    (e) => isCellError(e, 'E_TLS'),
  );
  // A stranger's server certificate is not trusted by the client...
  await assert.rejects(connectMesh({ identity: stranger, host: '127.0.0.1', port }), (e) => isCellError(e, 'E_TLS'));
  // ...and the server refuses its client certificate and never answers a frame.
  const before = refused.length;
  await assert.rejects(
    (async () => {
      const { default: tls } = await import('node:tls');
      const s = tls.connect({
        host: '127.0.0.1',
        port,
        key: stranger.keyPem,
        cert: stranger.certPem,
        ca: alpha.caPem,
        minVersion: 'TLSv1.3',
        checkServerIdentity: () => undefined,
        ALPNProtocols: ['cell-axon/1'],
      });
      await new Promise((res, rej) => {
        s.once('secureConnect', res);
        s.once('error', rej);
      });
      return new FramedChannel(s, 'alpha').call(Buffer.from('let me in'), 3_000);
    })(),
    (e) => isCellError(e, 'E_CONNECTION_LOST'),
  );
  for (let i = 0; i < 100 && refused.length === before; i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(refused.length > before, 'the server reported the refused handshake');
});
