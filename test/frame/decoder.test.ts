import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { isCellError } from '../../src/errors/index.js';
import {
  ATTEST_CHALLENGE_BYTES,
  decodeHandshake,
  encodeFrame,
  encodeHandshake,
  FrameDecoder,
  FrameType,
  HandshakeFlag,
  HEADER_SIZE,
  helloChallenge,
  welcomeAttestation,
} from '../../src/frame/index.js';

interface Frame {
  type: number;
  method: number;
  id: number;
  payload: Uint8Array;
}

const frameArb = fc.record({
  type: fc.integer({ min: 0, max: 255 }),
  method: fc.integer({ min: 0, max: 0xffff }),
  id: fc.integer({ min: 0, max: 0xffffffff }),
  payload: fc.uint8Array({ maxLength: 300 }),
});

function collect(maxFrame = 1 << 20): { decoder: FrameDecoder; out: Frame[] } {
  const out: Frame[] = [];
  const decoder = new FrameDecoder(
    {
      onFrame(type, _flags, method, id, bytes, start, end) {
        out.push({ type, method, id, payload: Uint8Array.from(bytes.subarray(start, end)) });
      },
    },
    maxFrame,
  );
  return { decoder, out };
}

/** Splits `bytes` at the given cut points (sorted, deduplicated, clamped). */
function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    chunks.push(bytes.subarray(prev, p));
    prev = p;
  }
  chunks.push(bytes.subarray(prev));
  return chunks;
}

test('any chunking of a valid frame stream decodes to the same frames', () => {
  fc.assert(
    fc.property(fc.array(frameArb, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), (frames, cuts) => {
      const stream = Buffer.concat(frames.map((f) => encodeFrame(f.type, f.method, f.id, f.payload)));
      const { decoder, out } = collect();
      for (const chunk of split(stream, cuts)) decoder.push(chunk);
      assert.equal(out.length, frames.length);
      for (let i = 0; i < frames.length; i++) {
        assert.equal(out[i].type, frames[i].type);
        assert.equal(out[i].method, frames[i].method);
        assert.equal(out[i].id, frames[i].id);
        assert.deepEqual(out[i].payload, Uint8Array.from(frames[i].payload));
      }
      assert.equal(decoder.buffered, 0);
    }),
    { numRuns: 500 },
  );
});

test('pausing mid-chunk and resuming delivers every frame exactly once, in order', () => {
  fc.assert(
    fc.property(
      fc.array(frameArb, { minLength: 1, maxLength: 20 }),
      fc.array(fc.nat(), { maxLength: 10 }),
      (frames, cuts) => {
        const stream = Buffer.concat(frames.map((f) => encodeFrame(f.type, f.method, f.id, f.payload)));
        const ids: number[] = [];
        const decoder: FrameDecoder = new FrameDecoder({
          onFrame(_t, _f, _m, id) {
            ids.push(id);
            decoder.pause();
          },
        });
        for (const chunk of split(stream, cuts)) decoder.push(chunk);
        for (let i = 0; i < frames.length + 1; i++) decoder.resume();
        assert.deepEqual(
          ids,
          frames.map((f) => f.id),
        );
      },
    ),
    { numRuns: 300 },
  );
});

test('garbage yields frames or a clean framing CellError, never another exception or a huge allocation', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 20 }), (chunks) => {
      const { decoder } = collect(4096);
      try {
        for (const c of chunks) decoder.push(Buffer.from(c));
      } catch (err) {
        assert.ok(isCellError(err), String(err));
        assert.ok(err.code === 'E_FRAME_MALFORMED' || err.code === 'E_FRAME_TOO_LARGE', err.code);
        assert.ok(decoder.isStopped);
      }
      assert.ok(decoder.buffered <= 4096);
    }),
    { numRuns: 1000 },
  );
});

test('an oversize length is refused from the first 4 bytes, before the rest arrives', () => {
  const { decoder, out } = collect(1024);
  assert.throws(
    () => decoder.push(Buffer.from([0x00, 0x10, 0x00, 0x00])),
    (e: unknown) => isCellError(e, 'E_FRAME_TOO_LARGE'),
  );
  assert.equal(out.length, 0);
  // stopped: later bytes are ignored
  decoder.push(encodeFrame(FrameType.REQUEST, 0, 1));
  assert.equal(out.length, 0);
});

test('a length shorter than the header is malformed', () => {
  const { decoder } = collect();
  assert.throws(
    () => decoder.push(Buffer.from([4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
    (e: unknown) => isCellError(e, 'E_FRAME_MALFORMED'),
  );
});

test('whole frames in one chunk are borrowed, split ones are owned', () => {
  const owned: boolean[] = [];
  const d = new FrameDecoder({
    onFrame(_t, _f, _m, _i, _b, _s, _e, isOwned) {
      owned.push(isOwned);
    },
  });
  const f = encodeFrame(FrameType.REQUEST, 1, 2, new Uint8Array(10));
  d.push(Buffer.concat([f, f.subarray(0, 5)]));
  d.push(f.subarray(5));
  assert.deepEqual(owned, [false, true]);
  assert.equal(f.length, HEADER_SIZE + 10);
});

test('handshake payloads round-trip and reject garbage', () => {
  const h = {
    version: 1,
    fingerprint: 0xfedcba9876543210n,
    name: 'exchange',
    maxFrame: 1 << 24,
    maxInFlight: 7,
    pid: 42,
  };
  const b = encodeHandshake(h);
  assert.deepEqual(decodeHandshake(b, 0, b.length), { ...h, flags: 0, trailer: undefined });
  assert.equal(b.readUInt16LE(6), 0, 'no flags unless asked');
  assert.throws(
    () => decodeHandshake(Buffer.alloc(10), 0, 10),
    (e: unknown) => isCellError(e, 'E_PROTOCOL'),
  );
  const bad = Buffer.from(b);
  bad[0] ^= 1;
  assert.throws(
    () => decodeHandshake(bad, 0, bad.length),
    (e: unknown) => isCellError(e, 'E_PROTOCOL'),
  );
  const long = Buffer.from(b);
  long.writeUInt16LE(500, 28);
  assert.throws(
    () => decodeHandshake(long, 0, long.length),
    (e: unknown) => isCellError(e, 'E_PROTOCOL'),
  );
});

test('the attest flag carries a trailer after the name; without the flag trailing bytes are ignored', () => {
  const base = { version: 1, fingerprint: 7n, name: 'bank', maxFrame: 0, maxInFlight: 0, pid: 1 };
  const challenge = Buffer.alloc(ATTEST_CHALLENGE_BYTES, 0xab);
  const hello = encodeHandshake({ ...base, flags: HandshakeFlag.ATTEST, trailer: challenge });
  assert.equal(hello.length, 30 + 4 + ATTEST_CHALLENGE_BYTES);
  const h = decodeHandshake(hello, 0, hello.length);
  assert.equal(h.flags, HandshakeFlag.ATTEST);
  assert.deepEqual(helloChallenge(h), challenge);
  // A short challenge is no challenge: the server answers without attestation.
  const short = decodeHandshake(hello, 0, hello.length - 1);
  assert.equal(helloChallenge(short), undefined);
  const welcome = encodeHandshake({ ...base, flags: HandshakeFlag.ATTEST, trailer: Buffer.from([1, 2, 3]) });
  assert.deepEqual(welcomeAttestation(decodeHandshake(welcome, 0, welcome.length)), Buffer.from([1, 2, 3]));
  // Unknown flags and bytes after the name without the flag change nothing.
  const plain = Buffer.concat([encodeHandshake({ ...base, flags: 0x8000 }), Buffer.from('extra')]);
  const p = decodeHandshake(plain, 0, plain.length);
  assert.equal(helloChallenge(p), undefined);
  assert.equal(welcomeAttestation(p), undefined);
  assert.equal(p.name, 'bank');
});
