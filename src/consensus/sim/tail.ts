import { RecordType, SEG_HEADER, type SegmentScan, scanSegment, type WalRecord } from '../wal/scan.js';
import type { SimDisk } from '../wal/simdisk.js';

const MAX_RECORD = 64 * 1024 * 1024;

/**
 * What a disk that lied about fsync leaves of a WAL: the newest segment cut back at a batch boundary
 * so that the batches holding (at least) the last `entries` entries are gone — synced, acknowledged
 * data, hard-state records in those batches included. Batches up to the newest snapshot marker stay
 * (the snapshot file itself is intact). The cut is made durable. Returns the range of entry indexes
 * lost, or null when the segment holds no entry that could be lost.
 */
export async function cutWalTail(
  disk: SimDisk,
  dir: string,
  entries: number,
): Promise<{ from: number; to: number } | null> {
  const segs = (await disk.list(dir)).filter((n) => /^wal-[0-9a-f]{16}\.log$/.test(n)).sort();
  if (segs.length === 0) return null;
  const name = segs[segs.length - 1];
  const path = `${dir}/${name}`;
  const buf = await disk.readFile(path);
  const scan = (len: number): SegmentScan =>
    scanSegment(buf.subarray(0, len), Number.parseInt(name.slice(4, 20), 16), MAX_RECORD);
  const full = scan(buf.byteLength);
  const keep = recordsToKeep(full.records, entries);
  if (keep < 0) return null;
  // Records of a prefix only grow with its length: the longest prefix with at most `keep` records ends
  // at the batch boundary before the first lost entry.
  let lo = SEG_HEADER;
  let hi = full.validEnd;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (scan(mid).records.length <= keep) lo = mid;
    else hi = mid - 1;
  }
  const prefix = scan(lo);
  const lost = full.records.slice(prefix.records.length).filter((r) => r.type === RecordType.Entry);
  if (lost.length === 0) return null;
  await disk.truncate(path, prefix.validEnd);
  const f = await disk.openAppend(path, false);
  await f.datasync();
  await f.close();
  const idx = lost.map((r) => (r as Extract<WalRecord, { type: 1 }>).entry.index);
  return { from: Math.min(...idx), to: Math.max(...idx) };
}

/** How many of `records` to keep so that the last `entries` entry records go, never cutting into the
 * newest snapshot marker; -1 when no entry follows it. */
function recordsToKeep(records: WalRecord[], entries: number): number {
  let floor = 0;
  for (let i = 0; i < records.length; i++) if (records[i].type === RecordType.Snapshot) floor = i + 1;
  let seen = 0;
  let keep = records.length;
  for (let i = records.length - 1; i >= floor && seen < entries; i--) {
    if (records[i].type === RecordType.Entry) {
      seen++;
      keep = i;
    }
  }
  return seen === 0 ? -1 : keep;
}
