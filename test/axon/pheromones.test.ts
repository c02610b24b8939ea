import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import type { MeshIdentity } from '../../src/axon/identity/index.js';
import {
  createJoinRequest,
  initMesh,
  installJoinBundle,
  loadMeshIdentity,
  signJoinRequest,
} from '../../src/axon/identity/index.js';
import type { Announcement } from '../../src/axon/pheromones/index.js';
import {
  decodeAnnouncement,
  encodeAnnouncement,
  KIND_ANNOUNCE,
  KIND_QUERY,
  PheromoneCache,
} from '../../src/axon/pheromones/index.js';

let dir: string;
let alpha: MeshIdentity;
let beta: MeshIdentity;
let stranger: MeshIdentity;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cell-pheromones-'));
  await initMesh({ home: join(dir, 'a'), hostName: 'alpha' });
  const req = await createJoinRequest({ home: join(dir, 'b'), hostName: 'beta' });
  installJoinBundle((await signJoinRequest(req.csrPem, { home: join(dir, 'a') })).bundlePem, { home: join(dir, 'b') });
  await initMesh({ home: join(dir, 's'), hostName: 'beta' });
  alpha = loadMeshIdentity({ home: join(dir, 'a') });
  beta = loadMeshIdentity({ home: join(dir, 'b') });
  stranger = loadMeshIdentity({ home: join(dir, 's') });
});
after(() => rmSync(dir, { recursive: true, force: true }));

let clock = Date.now();
const now = () => clock;
let seq = 1n;
function ann(over: Partial<Announcement> = {}): Announcement {
  return {
    kind: KIND_ANNOUNCE,
    name: 'exchange',
    fingerprint: 0x1234_5678_9abc_def0n,
    address: '10.77.0.2',
    port: 7070,
    load: 3,
    ttlMs: 3_000,
    timestampMs: clock,
    seq: seq++,
    instanceId: Buffer.from('abcdefgh'),
    ...over,
  };
}
const cacheFor = (id: MeshIdentity, extra: Partial<ConstructorParameters<typeof PheromoneCache>[0]> = {}) =>
  new PheromoneCache({ ca: id.ca, now, ...extra });

test('a signed announcement round-trips and is found until its TTL runs out', () => {
  const cache = cacheFor(alpha);
  const r = cache.receive(encodeAnnouncement(ann(), beta.certDer, beta.privateKey));
  assert.equal(r.ok, true);
  const [inst] = cache.lookup('exchange');
  assert.equal(inst?.address, '10.77.0.2');
  assert.equal(inst?.port, 7070);
  assert.equal(inst?.load, 3);
  assert.equal(inst?.hostName, 'beta');
  assert.equal(inst?.hostFingerprint, beta.hostFingerprint);
  assert.equal(inst?.fingerprint, 0x1234_5678_9abc_def0n);
  clock += 3_001;
  assert.deepEqual(cache.lookup('exchange'), []);
});

test('forged, foreign, replayed, stale and tampered announcements are ignored', () => {
  const cache = cacheFor(alpha);
  // Beta's certificate with a signature by a key that is not beta's.
  const forged = encodeAnnouncement(ann(), beta.certDer, stranger.privateKey);
  assert.deepEqual(cache.receive(forged), { ok: false, reason: 'bad-signature' });
  // A host certificate from another mesh, correctly self-consistent.
  assert.deepEqual(cache.receive(encodeAnnouncement(ann(), stranger.certDer, stranger.privateKey)), {
    ok: false,
    reason: 'untrusted-cert',
  });
  // The CA certificate itself is not a host certificate.
  assert.deepEqual(cache.receive(encodeAnnouncement(ann(), alpha.ca.raw, alpha.privateKey)), {
    ok: false,
    reason: 'untrusted-cert',
  });
  const good = encodeAnnouncement(ann(), beta.certDer, beta.privateKey);
  assert.equal(cache.receive(good).ok, true);
  assert.deepEqual(cache.receive(good), { ok: false, reason: 'replay' });
  const older = encodeAnnouncement(ann({ seq: 0n }), beta.certDer, beta.privateKey);
  assert.deepEqual(cache.receive(older), { ok: false, reason: 'replay' });
  const stale = encodeAnnouncement(ann({ timestampMs: clock - 60_000 }), beta.certDer, beta.privateKey);
  assert.deepEqual(cache.receive(stale), { ok: false, reason: 'stale' });
  const future = encodeAnnouncement(ann({ timestampMs: clock + 60_000 }), beta.certDer, beta.privateKey);
  assert.deepEqual(cache.receive(future), { ok: false, reason: 'stale' });
  // Redirect attempt: flip the port of a genuine announcement.
  const tampered = Buffer.from(encodeAnnouncement(ann(), beta.certDer, beta.privateKey));
  const portAt = 7 + 'exchange'.length + 8 + 4;
  tampered.writeUInt16LE(6666, portAt);
  assert.deepEqual(cache.receive(tampered), { ok: false, reason: 'bad-signature' });
  assert.equal(cache.lookup('exchange').length, 1);
  assert.equal(cache.lookup('exchange')[0]?.port, 7070);
});

test('own echoes are dropped; queries verify but add no instance; TTL 0 withdraws', () => {
  const cache = cacheFor(alpha);
  const id = Buffer.from('selfself');
  assert.deepEqual(cache.receive(encodeAnnouncement(ann({ instanceId: id }), alpha.certDer, alpha.privateKey), id), {
    ok: false,
    reason: 'own-echo',
  });
  const q = cache.receive(encodeAnnouncement(ann({ kind: KIND_QUERY, port: 0 }), beta.certDer, beta.privateKey));
  assert.equal(q.ok, true);
  assert.equal(cache.size, 0);
  assert.equal(cache.receive(encodeAnnouncement(ann(), beta.certDer, beta.privateKey)).ok, true);
  assert.equal(cache.receive(encodeAnnouncement(ann({ ttlMs: 0 }), beta.certDer, beta.privateKey)).ok, true);
  assert.equal(cache.lookup('exchange').length, 0);
});

test('the instance table is bounded: the least recently refreshed entry goes first', () => {
  const cache = cacheFor(alpha, { maxInstances: 8 });
  for (let port = 1; port <= 20; port++) {
    assert.equal(cache.receive(encodeAnnouncement(ann({ port }), beta.certDer, beta.privateKey)).ok, true);
  }
  const ports = cache.lookup('exchange').map((i) => i.port);
  assert.deepEqual(ports, [13, 14, 15, 16, 17, 18, 19, 20]);
});

test('arbitrary bytes and truncations never throw and never add an instance', () => {
  const cache = cacheFor(alpha);
  const good = encodeAnnouncement(ann(), beta.certDer, beta.privateKey);
  assert.equal(cache.receive(good).ok, true);
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 1500 }),
      fc.nat(good.length),
      fc.nat(good.length - 1),
      fc.integer({ min: 1, max: 255 }),
      (junk, cut, flipAt, flip) => {
        assert.equal(cache.receive(Buffer.from(junk)).ok, false);
        assert.equal(cache.receive(good.subarray(0, cut)).ok, false);
        const bent = Buffer.from(good);
        bent[flipAt] = (bent[flipAt] as number) ^ flip;
        assert.equal(cache.receive(bent).ok, false);
        assert.equal(cache.size, 1);
        assert.equal(decodeAnnouncement(randomBytes(200)), undefined);
      },
    ),
    { numRuns: 200 },
  );
});
