import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { isCellError } from '../../src/errors/index.js';
import {
  attest,
  CHALLENGE_BYTES,
  callerRootKey,
  decodeCert,
  exportRootPublicKey,
  identityCert,
  issueIdentity,
  loadOrCreateRootKey,
  servingIdentity,
  verifyAttestation,
  verifyCert,
} from '../../src/identity/index.js';
import { rootKeyPath } from '../../src/paths/index.js';

/** A private CELL_HOME for one test. */
function home(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'cell-identity-'));
  const prev = process.env.CELL_HOME;
  process.env.CELL_HOME = dir;
  t.after(() => {
    if (prev === undefined) delete process.env.CELL_HOME;
    else process.env.CELL_HOME = prev;
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

const rootKey = generateKeyPairSync('ed25519').privateKey;
const rootPublic = createPublicKey(rootKey);
const otherRoot = generateKeyPairSync('ed25519').privateKey;

test('the root key is created on first use (0600 in a 0700 dir) and read back the same', (t) => {
  home(t);
  const key = loadOrCreateRootKey();
  assert.equal(key.asymmetricKeyType, 'ed25519');
  const path = rootKeyPath();
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(statSync(dirname(path)).mode & 0o777, 0o700);
  assert.equal(exportRootPublicKey(loadOrCreateRootKey()), exportRootPublicKey(key));
  const caller = callerRootKey();
  assert.ok(caller.key !== undefined);
  assert.equal(exportRootPublicKey(caller.key), exportRootPublicKey(key));
});

test('a root key other users may read is refused with the fix', (t) => {
  home(t);
  loadOrCreateRootKey();
  chmodSync(rootKeyPath(), 0o644);
  assert.throws(
    () => loadOrCreateRootKey(),
    (e: unknown) =>
      isCellError(e, 'E_PERMISSION_DENIED') && /mode 644/.test(e.message) && /chmod 600/.test(e.fix ?? ''),
  );
  // A caller without a usable key skips the check and says why.
  const caller = callerRootKey();
  assert.equal(caller.key, undefined);
  assert.match(String(caller.reason), /mode 644/);
  assert.equal(servingIdentity('bank').identity, undefined);
});

test('a root key another user owns is refused', (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root to give the file to another user');
    return;
  }
  home(t);
  loadOrCreateRootKey();
  chownSync(rootKeyPath(), 65534, 65534);
  assert.throws(
    () => loadOrCreateRootKey(),
    (e: unknown) => isCellError(e, 'E_PERMISSION_DENIED') && /owned by uid 65534/.test(e.message),
  );
});

test('processes racing to create the root key all end up with the same one', (t) => {
  const dir = home(t);
  const entry = fileURLToPath(new URL('../../src/identity/index.js', import.meta.url));
  const script = `import(${JSON.stringify(entry)}).then((m) => console.log(m.exportRootPublicKey(m.loadOrCreateRootKey())))`;
  const runs = Array.from({ length: 4 }, () =>
    spawnSync(
      '/bin/sh',
      ['-c', `for i in 1 2 3; do "${process.execPath}" --input-type=module -e '${script}' & done; wait`],
      { env: { ...process.env, CELL_HOME: dir }, encoding: 'utf8' },
    ),
  );
  const keys = new Set(runs.flatMap((r) => r.stdout.trim().split('\n')));
  assert.equal(keys.size, 1, [...keys].join('\n'));
  assert.equal([...keys][0], exportRootPublicKey(loadOrCreateRootKey()));
});

test('an issued identity carries a certificate that round-trips', () => {
  const before = Date.now();
  const id = issueIdentity(rootKey, { cell: 'bank', generation: 7 });
  const cert = identityCert(id);
  assert.equal(cert.version, 1);
  assert.equal(cert.cell, 'bank');
  assert.equal(cert.generation, 7);
  assert.ok(cert.issuedAt >= before && cert.issuedAt <= Date.now());
  assert.equal(cert.publicKey.length, 32);
  const bytes = Buffer.from(id.cert, 'base64');
  assert.equal(bytes.length, 110 + 'bank'.length);
  assert.deepEqual(verifyCert(bytes, rootPublic), cert);
  assert.deepEqual(decodeCert(bytes), cert);
  assert.throws(
    () => verifyCert(bytes, createPublicKey(otherRoot)),
    (e: unknown) => isCellError(e, 'E_IDENTITY_MISMATCH'),
  );
  assert.throws(
    () => issueIdentity(rootKey, { cell: '../etc', generation: 0 }),
    (e: unknown) => isCellError(e, 'E_NAME_INVALID'),
  );
});

test('a certificate with any one byte changed is rejected', () => {
  const bytes = Buffer.from(issueIdentity(rootKey, { cell: 'ledger', generation: 3 }).cert, 'base64');
  for (let i = 0; i < bytes.length; i++) {
    for (const bit of [0x01, 0x80]) {
      const bad = Buffer.from(bytes);
      bad[i] ^= bit;
      assert.throws(
        () => verifyCert(bad, rootPublic),
        (e: unknown) => isCellError(e, 'E_IDENTITY_MISMATCH'),
        `byte ${i} ^ ${bit}`,
      );
    }
  }
});

test('property: random mutations of a certificate never verify', () => {
  const bytes = Buffer.from(issueIdentity(rootKey, { cell: 'exchange', generation: 1 }).cert, 'base64');
  const mutation = fc.oneof(
    fc.record({
      kind: fc.constant('flip' as const),
      at: fc.nat(bytes.length - 1),
      xor: fc.integer({ min: 1, max: 255 }),
    }),
    fc.record({ kind: fc.constant('cut' as const), at: fc.nat(bytes.length - 1) }),
    fc.record({ kind: fc.constant('grow' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
  );
  fc.assert(
    fc.property(fc.array(mutation, { minLength: 1, maxLength: 5 }), (mutations) => {
      let b = Buffer.from(bytes);
      for (const m of mutations) {
        if (m.kind === 'flip') b[m.at % b.length] ^= m.xor;
        else if (m.kind === 'cut') b = b.subarray(0, m.at % b.length);
        else b = Buffer.concat([b, m.extra]);
      }
      if (b.equals(bytes)) return; // the mutations cancelled out
      assert.throws(
        () => verifyCert(b, rootPublic),
        (e: unknown) => isCellError(e, 'E_IDENTITY_MISMATCH'),
      );
    }),
    { numRuns: 2000 },
  );
});

test('an attestation verifies only for its cell, root, challenge, fingerprint and service name', () => {
  const id = issueIdentity(rootKey, { cell: 'bank', generation: 2 });
  const challenge = randomBytes(CHALLENGE_BYTES);
  const fp = 0xfeedfacecafebeefn;
  const a = attest(id, challenge, fp, 'bank-service');
  assert.equal(verifyAttestation(a, rootPublic, 'bank', challenge, fp, 'bank-service').generation, 2);
  // Twice: the second check takes the cached certificate and verifies only the signature.
  assert.equal(verifyAttestation(a, rootPublic, 'bank', challenge, fp, 'bank-service').cell, 'bank');

  const refused = (
    bytes: Buffer | undefined,
    root = rootPublic,
    cell = 'bank',
    ch = challenge,
    f = fp,
    svc = 'bank-service',
  ) => {
    let err: unknown;
    try {
      verifyAttestation(bytes, root, cell, ch, f, svc, 'unix:/run/bank.sock');
    } catch (e) {
      err = e;
    }
    assert.ok(isCellError(err, 'E_IDENTITY_MISMATCH'), String(err));
    assert.match(err.message, /unix:\/run\/bank\.sock/);
    assert.ok(err.fix !== undefined && /cell spawn/.test(err.fix));
    return err;
  };
  const other = refused(a, rootPublic, 'vault');
  assert.equal(other.cell, 'vault');
  assert.match(other.message, /certificate for cell 'bank'/);
  assert.equal(other.details?.presented, 'bank');
  assert.match(refused(undefined).message, /presented no identity/);
  assert.match(refused(a, createPublicKey(otherRoot)).message, /not signed by this Root \(bad signature\)/);
  assert.match(
    refused(a, rootPublic, 'bank', randomBytes(CHALLENGE_BYTES)).message,
    /challenge is not \(bad signature\)/,
  );
  refused(a, rootPublic, 'bank', challenge, fp + 1n);
  refused(a, rootPublic, 'bank', challenge, fp, 'bank-servicf');
  refused(a.subarray(0, a.length - 1));
  refused(Buffer.alloc(1));
  for (const at of [0, 1, 5, a.length - 1]) {
    const bad = Buffer.from(a);
    bad[at] ^= 0x10;
    refused(bad);
  }
  // A Mallory holding a genuine identity of its own cannot answer for another cell.
  const mallory = issueIdentity(rootKey, { cell: 'mallory', generation: 0 });
  assert.match(refused(attest(mallory, challenge, fp, 'bank-service')).message, /certificate for cell 'mallory'/);
  // Nor can a process that signs its own certificate with another key.
  const forged = issueIdentity(otherRoot, { cell: 'bank', generation: 0 });
  refused(attest(forged, challenge, fp, 'bank-service'));
});

test('an operator process self-issues one identity per cell name from the root key', (t) => {
  home(t);
  const a = servingIdentity('bank');
  assert.ok(a.identity !== undefined);
  assert.equal(servingIdentity('bank').identity, a.identity, 'issued once per name');
  assert.equal(identityCert(a.identity).cell, 'bank');
  assert.equal(identityCert(a.identity).generation, 0);
  const root = callerRootKey().key;
  assert.ok(root !== undefined);
  const challenge = randomBytes(CHALLENGE_BYTES);
  verifyAttestation(attest(a.identity, challenge, 1n, 's'), root, 'bank', challenge, 1n, 's');
});
