import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import type { Entry, HardState } from '../../src/consensus/raft/types.js';
import { crc32Range } from '../../src/consensus/wal/crc.js';
import { RecordType, type SegmentScan, scanSegment, type WalRecord } from '../../src/consensus/wal/scan.js';

// The segment format written out from its description (scan.ts), independently of the WAL's writer,
// so these tests check the reader against the format rather than against itself.

const SEQ = 7;
const MAX_RECORD = 1 << 20;

function u32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}
function u64(n: number): number[] {
  return [...u32(n % 0x100000000), ...u32(Math.floor(n / 0x100000000))];
}

function record(type: number, payload: number[] | Uint8Array): Uint8Array {
  const body = Uint8Array.from([type, ...payload]);
  return Uint8Array.from([...u32(crc32(body)), ...u32(payload.length), ...body]);
}

function encodeRecord(r: WalRecord): Uint8Array {
  if (r.type === RecordType.Entry) {
    const e = r.entry;
    return record(RecordType.Entry, [...u64(e.index), ...u64(e.term), e.type, ...e.data]);
  }
  if (r.type === RecordType.HardState) {
    const h = r.hardState;
    return record(RecordType.HardState, [...u64(h.term), ...u32(h.vote), ...u64(h.commit)]);
  }
  return record(RecordType.Snapshot, [...u64(r.index), ...u64(r.term)]);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A batch's bytes: its records, then the commit record over them. */
function encodeBatch(records: WalRecord[]): Uint8Array {
  const body = concat(records.map(encodeRecord));
  return concat([body, record(RecordType.Commit, [...u32(body.length), ...u32(crc32(body))])]);
}

function header(seq: number): Uint8Array {
  const h = Uint8Array.from([...new TextEncoder().encode('CELLWAL1'), ...u32(seq)]);
  return concat([h, Uint8Array.from(u32(crc32(h)))]);
}

function segment(batches: Uint8Array[]): Uint8Array {
  return concat([header(SEQ), ...batches]);
}

const u53 = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const entryArb: fc.Arbitrary<WalRecord> = fc
  .record({ index: u53, term: u53, type: fc.integer({ min: 0, max: 1 }), data: fc.uint8Array({ maxLength: 40 }) })
  .map((e) => ({ type: RecordType.Entry, entry: { ...e } as Entry }));
const hardArb: fc.Arbitrary<WalRecord> = fc
  .record({ term: u53, vote: fc.integer({ min: 0, max: 0xffffffff }), commit: u53 })
  .map((h) => ({ type: RecordType.HardState, hardState: { ...h } as HardState }));
const markArb: fc.Arbitrary<WalRecord> = fc
  .record({ index: u53, term: u53 })
  .map((m) => ({ type: RecordType.Snapshot, index: m.index, term: m.term }));
const recordArb = fc.oneof({ weight: 4, arbitrary: entryArb }, hardArb, markArb);
/** Batches of records (an empty batch is never written, but the format allows it). */
const batchesArb = fc.array(fc.array(recordArb, { maxLength: 5 }), { maxLength: 6 });

/** Comparable form: byte arrays as plain arrays. */
const plain = (rs: WalRecord[]) =>
  rs.map((r) => (r.type === RecordType.Entry ? { ...r, entry: { ...r.entry, data: [...r.entry.data] } } : r));

function scan(buf: Uint8Array, maxRecord = MAX_RECORD): SegmentScan {
  const s = scanSegment(buf, SEQ, maxRecord);
  // Whatever the input, the answer is well formed.
  assert.ok(s.validEnd >= 0 && s.validEnd <= buf.length);
  if (s.headerOk) assert.ok(s.validEnd >= 16);
  if (s.damage) assert.ok(s.damage.offset >= s.validEnd && s.damage.offset <= buf.length && s.damage.reason !== '');
  else assert.equal(s.validEnd, s.headerOk ? buf.length : 0);
  return s;
}

/** Byte offsets where each batch ends. */
function boundaries(batches: Uint8Array[]): number[] {
  const out = [16];
  for (const b of batches) out.push(out[out.length - 1] + b.length);
  return out;
}

test('scan: a well-formed segment reads back every record of every batch', () => {
  fc.assert(
    fc.property(batchesArb, (batches) => {
      const s = scan(segment(batches.map(encodeBatch)));
      assert.equal(s.headerOk, true);
      assert.equal(s.damage, null);
      assert.deepEqual(plain(s.records), plain(batches.flat()));
      const idx = batches.flat().flatMap((r) => (r.type === RecordType.Entry ? [r.entry.index] : []));
      assert.equal(s.maxIndex, Math.max(0, ...idx));
    }),
    { numRuns: 300 },
  );
});

test('scan: random bytes, with or without a valid header, give a typed answer and never a record', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), fc.boolean(), (bytes, withHeader) => {
      const buf = withHeader ? concat([header(SEQ), bytes]) : bytes;
      const s = scan(buf);
      // A record needs its CRC and its batch's CRC to match: random bytes essentially never do.
      assert.deepEqual(s.records, []);
      if (withHeader) assert.equal(s.headerOk, true);
    }),
    { numRuns: 2000 },
  );
});

test('scan: a segment cut at every offset keeps exactly the batches that ended before the cut', () => {
  fc.assert(
    fc.property(batchesArb, (batches) => {
      const encoded = batches.map(encodeBatch);
      const full = segment(encoded);
      const ends = boundaries(encoded);
      for (let cut = 0; cut <= full.length; cut++) {
        const s = scan(full.subarray(0, cut));
        if (cut < 16) {
          assert.equal(s.headerOk, false, `cut ${cut}`);
          continue;
        }
        const whole = ends.filter((e) => e <= cut).length - 1;
        assert.equal(s.validEnd, ends[whole], `cut ${cut}`);
        assert.deepEqual(plain(s.records), plain(batches.slice(0, whole).flat()), `cut ${cut}`);
        assert.equal(s.damage === null, ends.includes(cut), `cut ${cut}`);
        if (s.damage) assert.equal(s.damage.committedAfter, false, 'a torn tail has nothing committed after it');
      }
    }),
    { numRuns: 60 },
  );
});

test('scan: a flipped bit is never accepted; the batches before it are, and the damage says whether any follow', () => {
  fc.assert(
    fc.property(
      fc.array(fc.array(recordArb, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 5 }),
      fc.nat(),
      fc.integer({ min: 0, max: 7 }),
      (batches, at, bit) => {
        const encoded = batches.map(encodeBatch);
        const buf = segment(encoded).slice();
        const pos = at % buf.length;
        buf[pos] ^= 1 << bit;
        const s = scan(buf);
        if (pos < 16) {
          assert.equal(s.headerOk, false);
          assert.deepEqual(s.records, []);
          return;
        }
        const ends = boundaries(encoded);
        const hit = ends.findIndex((e) => e > pos) - 1; // the batch holding the flipped byte
        assert.equal(s.validEnd, ends[hit]);
        assert.deepEqual(plain(s.records), plain(batches.slice(0, hit).flat()));
        assert.ok(s.damage, 'the damaged batch is reported');
        assert.equal(s.damage.committedAfter, hit < batches.length - 1);
      },
    ),
    { numRuns: 2000 },
  );
});

test('scan: records reordered or duplicated across batches yield only whole original batches', () => {
  fc.assert(
    fc.property(
      fc.array(fc.array(recordArb, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 4 }),
      fc.array(fc.nat(), { minLength: 1, maxLength: 30 }),
      (batches, picks) => {
        // Cut the segment into its records (commit records included) and lay them out again in any
        // order, with repeats.
        const chunks: Uint8Array[] = [];
        for (const b of batches) {
          for (const r of b) chunks.push(encodeRecord(r));
          const body = concat(b.map(encodeRecord));
          chunks.push(record(RecordType.Commit, [...u32(body.length), ...u32(crc32(body))]));
        }
        const s = scan(segment(picks.map((p) => chunks[p % chunks.length])));
        // What was read must split into original batches, each whole and in its own order.
        let got = plain(s.records);
        const originals = batches.map(plain);
        while (got.length > 0) {
          const b = originals.find((o) => o.length <= got.length && isDeepEqual(got.slice(0, o.length), o));
          assert.ok(b, `records that form no original batch were accepted: ${JSON.stringify(got.slice(0, 3))}`);
          got = got.slice(b.length);
        }
      },
    ),
    { numRuns: 2000 },
  );
});

test('scan: a record longer than the limit is damage, found before anything is allocated for it', () => {
  const batch = encodeBatch([
    { type: RecordType.Entry, entry: { index: 1, term: 1, type: 0, data: new Uint8Array(100) } },
  ]);
  const s = scan(segment([batch]), 64);
  assert.deepEqual(s.records, []);
  assert.match(s.damage?.reason ?? '', /beyond the limit/);
  assert.equal(s.validEnd, 16);
});

test('scan: a header naming another segment is not accepted', () => {
  const s = scanSegment(concat([header(SEQ + 1), encodeBatch([])]), SEQ, MAX_RECORD);
  assert.equal(s.headerOk, false);
  assert.deepEqual(s.records, []);
});

function isDeepEqual(a: unknown, b: unknown): boolean {
  try {
    assert.deepEqual(a, b);
    return true;
  } catch {
    return false;
  }
}

test('wal crc: crc32Range of any range equals node:zlib crc32 of that range', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.nat(), fc.nat(), (bytes, a, b) => {
      const start = bytes.length === 0 ? 0 : a % (bytes.length + 1);
      const end = start + (bytes.length === 0 ? 0 : b % (bytes.length - start + 1));
      assert.equal(crc32Range(bytes, start, end), crc32(bytes.subarray(start, end)));
    }),
    { numRuns: 2000 },
  );
});
