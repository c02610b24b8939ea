import { crc32 } from 'node:zlib';
import type { Entry, EntryType, HardState } from '../raft/types.js';

/*
 * The WAL's on-disk format (little-endian) and its pure reader. A segment file `wal-<seq:16 hex>.log`
 * starts with a 16-byte header: "CELLWAL1", u32 seq, u32 CRC-32 of the previous 12 bytes. Then records:
 *   u32 crc32(type .. payload end) | u32 payload length | u8 type | payload
 * Every batch ends with a COMMIT record whose payload is u32 batch length (bytes of the batch's records
 * before it) and u32 CRC-32 of those bytes. A batch counts only when its commit record and its CRC
 * check out. The checksum is IEEE CRC-32 (node:zlib crc32), not CRC-32C: Node has no built-in
 * Castagnoli.
 */

export const MAGIC = new TextEncoder().encode('CELLWAL1');
export const SEG_HEADER = 16;
export const REC_HEADER = 9;
export const RecordType = { Entry: 1, HardState: 2, Snapshot: 3, Commit: 4 } as const;
export const COMMIT_PAYLOAD = 8;

export function w64(dv: DataView, off: number, n: number): void {
  dv.setUint32(off, n % 0x100000000, true);
  dv.setUint32(off + 4, Math.floor(n / 0x100000000), true);
}

export function r64(dv: DataView, off: number): number {
  return dv.getUint32(off, true) + dv.getUint32(off + 4, true) * 0x100000000;
}

export function segHeader(seq: number): Uint8Array {
  const h = new Uint8Array(SEG_HEADER);
  h.set(MAGIC);
  const dv = new DataView(h.buffer);
  dv.setUint32(8, seq, true);
  dv.setUint32(12, crc32(h.subarray(0, 12)), true);
  return h;
}

/** One record of a committed batch, decoded. */
export type WalRecord =
  | { type: typeof RecordType.Entry; entry: Entry }
  | { type: typeof RecordType.HardState; hardState: HardState }
  | { type: typeof RecordType.Snapshot; index: number; term: number };

/** Where a segment stops being readable. */
export interface SegmentDamage {
  /** Byte offset of the first record that does not check out. */
  offset: number;
  reason: string;
  /** Whether a complete, checksummed batch lies after the damage: then acknowledged data follows it,
   * so the damage is not a torn tail and must not be cut away. */
  committedAfter: boolean;
}

/** What a segment holds, from its bytes alone. */
export interface SegmentScan {
  /** False when the header is missing or does not check out (nothing else was read). */
  headerOk: boolean;
  /** The records of committed batches, in file order. */
  records: WalRecord[];
  /** Highest entry index among `records` (0: none). */
  maxIndex: number;
  /** End of the valid prefix: the bytes after it belong to no committed batch. */
  validEnd: number;
  /** Null when the segment ends exactly at `validEnd`. */
  damage: SegmentDamage | null;
}

/**
 * Reads a segment (`buf`, whose file name carries `seq`) without any I/O: every committed batch's
 * records, where the valid prefix ends, and what lies damaged after it. Never throws on any input;
 * never returns a record whose checksum, or whose batch's checksum, does not hold.
 */
export function scanSegment(buf: Uint8Array, seq: number, maxRecord: number): SegmentScan {
  const out: SegmentScan = { headerOk: false, records: [], maxIndex: 0, validEnd: 0, damage: null };
  if (!headerOk(buf, seq)) return out;
  out.headerOk = true;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = SEG_HEADER;
  let batchStart = off;
  // Offsets of the current batch's records: decoded only once its commit record checks out.
  let batch: number[] = [];
  let why = '';
  while (off < buf.byteLength) {
    why = recordProblem(buf, dv, off, maxRecord);
    if (why !== '') break;
    const len = dv.getUint32(off + 4, true);
    if (buf[off + 8] === RecordType.Commit) {
      if (!batchChecks(buf, dv, off, batchStart)) {
        why = 'batch checksum mismatch';
        break;
      }
      for (const at of batch) out.records.push(decodeRecord(buf, dv, at));
      batch = [];
      off += REC_HEADER + len;
      batchStart = off;
      continue;
    }
    batch.push(off);
    off += REC_HEADER + len;
  }
  out.validEnd = batchStart;
  for (const r of out.records)
    if (r.type === RecordType.Entry && r.entry.index > out.maxIndex) out.maxIndex = r.entry.index;
  if (why === '' && batchStart < buf.byteLength) why = 'batch without a commit record';
  if (why !== '') {
    const at = off < buf.byteLength && why !== 'batch without a commit record' ? off : batchStart;
    out.damage = { offset: at, reason: why, committedAfter: hasCommittedBatchAfter(buf, at) };
  }
  return out;
}

function headerOk(buf: Uint8Array, seq: number): boolean {
  if (buf.byteLength < SEG_HEADER) return false;
  for (let i = 0; i < MAGIC.length; i++) if (buf[i] !== MAGIC[i]) return false;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return dv.getUint32(8, true) === seq && dv.getUint32(12, true) === crc32(buf.subarray(0, 12));
}

/** Why the record at `off` cannot be read ('' when its header, length, checksum and type hold). */
function recordProblem(buf: Uint8Array, dv: DataView, off: number, maxRecord: number): string {
  if (off + REC_HEADER > buf.byteLength) return 'incomplete record header';
  const len = dv.getUint32(off + 4, true);
  if (len > maxRecord) return `record length ${len} beyond the limit`;
  if (off + REC_HEADER + len > buf.byteLength) return 'record runs past the end of the file';
  if (crc32(buf.subarray(off + 8, off + REC_HEADER + len)) !== dv.getUint32(off, true)) {
    return 'record checksum mismatch';
  }
  const type = buf[off + 8];
  if (type === RecordType.Commit) return len === COMMIT_PAYLOAD ? '' : 'batch checksum mismatch';
  if (type === RecordType.Entry) return len >= 17 ? '' : `entry record of ${len} bytes`;
  if (type === RecordType.HardState) return len === 20 ? '' : `hard state record of ${len} bytes`;
  if (type === RecordType.Snapshot) return len === 16 ? '' : `snapshot record of ${len} bytes`;
  return `unknown record type ${type}`;
}

/** Whether the commit record at `off` matches the batch that began at `batchStart`. */
function batchChecks(buf: Uint8Array, dv: DataView, off: number, batchStart: number): boolean {
  const blen = dv.getUint32(off + REC_HEADER, true);
  const bcrc = dv.getUint32(off + REC_HEADER + 4, true);
  return blen === off - batchStart && crc32(buf.subarray(batchStart, off)) === bcrc;
}

function decodeRecord(buf: Uint8Array, dv: DataView, at: number): WalRecord {
  const len = dv.getUint32(at + 4, true);
  const p = at + REC_HEADER;
  const type = buf[at + 8];
  if (type === RecordType.Entry) {
    const entry: Entry = {
      index: r64(dv, p),
      term: r64(dv, p + 8),
      type: buf[p + 16] as EntryType,
      data: buf.slice(p + 17, p + len),
    };
    return { type, entry };
  }
  if (type === RecordType.HardState) {
    return { type, hardState: { term: r64(dv, p), vote: dv.getUint32(p + 8, true), commit: r64(dv, p + 12) } };
  }
  return { type: RecordType.Snapshot, index: r64(dv, p), term: r64(dv, p + 8) };
}

/** Whether a complete, checksummed batch (its commit record and its CRC) lies after `from`. */
export function hasCommittedBatchAfter(buf: Uint8Array, from: number): boolean {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const end = buf.byteLength - (REC_HEADER + COMMIT_PAYLOAD);
  for (let p = from + 1; p <= end; p++) {
    if (buf[p + 8] !== RecordType.Commit || dv.getUint32(p + 4, true) !== COMMIT_PAYLOAD) continue;
    if (crc32(buf.subarray(p + 8, p + REC_HEADER + COMMIT_PAYLOAD)) !== dv.getUint32(p, true)) continue;
    const blen = dv.getUint32(p + REC_HEADER, true);
    if (blen === 0 || blen > p - SEG_HEADER) continue;
    if (crc32(buf.subarray(p - blen, p)) === dv.getUint32(p + REC_HEADER + 4, true)) return true;
  }
  return false;
}

/** Appending entry i replaces every recovered entry >= i (the Ready contract); a gap restarts the log. */
export function appendRecovered(entries: Entry[], e: Entry): Entry[] {
  if (entries.length === 0) {
    entries.push(e);
    return entries;
  }
  const first = entries[0].index;
  const last = entries[entries.length - 1].index;
  if (e.index === last + 1) {
    entries.push(e);
    return entries;
  }
  if (e.index > last + 1 || e.index < first) return [e];
  entries.length = e.index - first;
  entries.push(e);
  return entries;
}
