import { dirname } from 'node:path';
import { crc32 } from 'node:zlib';
import { CellError } from '../../errors/index.js';
import type { Entry, HardState, Snapshot } from '../raft/types.js';
import { crc32Range } from './crc.js';
import { joinPath, nodeFs, type WalFile, type WalFs } from './fs.js';
import {
  appendRecovered,
  COMMIT_PAYLOAD,
  REC_HEADER,
  RecordType,
  r64,
  SEG_HEADER,
  scanSegment,
  segHeader,
  w64,
} from './scan.js';

/*
 * On-disk format: see scan.ts (segments of CRC-checked records, each batch closed by a COMMIT record).
 * One write and one fdatasync per batch. Snapshots live in their own files (encodeSnapshotFile).
 */

const SNAP_MAGIC = new TextEncoder().encode('CELLSNP1');

export interface WalOptions {
  dir: string;
  fs?: WalFs;
  /** A segment is closed and a new one started once it grows past this (default 64 MiB). */
  segmentBytes?: number;
  /** Records longer than this are treated as corrupt before anything is allocated (default 64 MiB). */
  maxRecordBytes?: number;
  /** Name used in error messages. */
  cell?: string;
}

/** What recovery found: the state to construct the Raft core with. */
export interface WalState {
  hardState: HardState;
  snapshot: Snapshot | null;
  entries: Entry[];
  /** Bytes cut from a torn tail (0 when the log ended cleanly). */
  truncatedBytes: number;
}

export interface WalStats {
  batches: number;
  syncs: number;
  records: number;
  bytes: number;
  segments: number;
}

interface Segment {
  seq: number;
  name: string;
  /** Highest entry index recorded in the segment (0: none). */
  maxIndex: number;
}

/** What the segments say, accumulated in file order. */
interface RecoveredLog {
  hard: HardState;
  entries: Entry[];
  /** The latest snapshot marker (the snapshot point the log was compacted to). */
  markIndex: number;
  markTerm: number;
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

function segName(seq: number): string {
  return `wal-${seq.toString(16).padStart(16, '0')}.log`;
}

function snapName(index: number): string {
  return `snap-${index.toString(16).padStart(16, '0')}.snap`;
}

/** Encodes records into one growable buffer (one per batch). */
class BatchWriter {
  buf = new Uint8Array(64 * 1024);
  dv = new DataView(this.buf.buffer);
  len = 0;
  records = 0;
  maxIndex = 0;

  private ensure(n: number): void {
    if (this.len + n <= this.buf.byteLength) return;
    let cap = this.buf.byteLength * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.dv = new DataView(next.buffer);
  }

  /** Reserves a record of `payload` bytes; returns the payload offset. */
  private begin(type: number, payload: number): number {
    this.ensure(REC_HEADER + payload);
    const at = this.len;
    this.dv.setUint32(at + 4, payload, true);
    this.buf[at + 8] = type;
    this.len += REC_HEADER + payload;
    this.records++;
    return at + REC_HEADER;
  }

  private seal(recStart: number): void {
    this.dv.setUint32(recStart, crc32(this.buf.subarray(recStart + 8, this.len)), true);
  }

  /** The checksum is computed over the record as written in the batch buffer (crc32Range: no view of
   * the batch per record, no native call). */
  entry(e: Entry): void {
    const start = this.len;
    const p = this.begin(RecordType.Entry, 17 + e.data.byteLength);
    w64(this.dv, p, e.index);
    w64(this.dv, p + 8, e.term);
    this.buf[p + 16] = e.type;
    this.buf.set(e.data, p + 17);
    this.dv.setUint32(start, crc32Range(this.buf, start + 8, this.len), true);
    if (e.index > this.maxIndex) this.maxIndex = e.index;
  }

  hardState(hs: HardState): void {
    const start = this.len;
    const p = this.begin(RecordType.HardState, 20);
    w64(this.dv, p, hs.term);
    this.dv.setUint32(p + 8, hs.vote, true);
    w64(this.dv, p + 12, hs.commit);
    this.seal(start);
  }

  snapshot(index: number, term: number): void {
    const start = this.len;
    const p = this.begin(RecordType.Snapshot, 16);
    w64(this.dv, p, index);
    w64(this.dv, p + 8, term);
    this.seal(start);
  }

  commit(): void {
    const batchLen = this.len;
    const crc = crc32(this.buf.subarray(0, batchLen));
    const start = this.len;
    const p = this.begin(RecordType.Commit, COMMIT_PAYLOAD);
    this.dv.setUint32(p, batchLen, true);
    this.dv.setUint32(p + 4, crc, true);
    this.seal(start);
  }

  reset(): void {
    this.len = 0;
    this.records = 0;
    this.maxIndex = 0;
  }
}

export function encodeSnapshotFile(s: Snapshot): Uint8Array {
  const payload = 20 + 4 * s.voters.length + s.data.byteLength;
  const out = new Uint8Array(16 + payload);
  const dv = new DataView(out.buffer);
  out.set(SNAP_MAGIC);
  dv.setUint32(12, payload, true);
  w64(dv, 16, s.index);
  w64(dv, 24, s.term);
  dv.setUint32(32, s.voters.length, true);
  for (let i = 0; i < s.voters.length; i++) dv.setUint32(36 + 4 * i, s.voters[i], true);
  out.set(s.data, 36 + 4 * s.voters.length);
  dv.setUint32(8, crc32(out.subarray(12)), true);
  return out;
}

export function decodeSnapshotFile(b: Uint8Array): Snapshot | null {
  if (b.byteLength < 36) return null;
  for (let i = 0; i < 8; i++) if (b[i] !== SNAP_MAGIC[i]) return null;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const payload = dv.getUint32(12, true);
  if (16 + payload !== b.byteLength) return null;
  if (crc32(b.subarray(12)) !== dv.getUint32(8, true)) return null;
  const n = dv.getUint32(32, true);
  if (36 + 4 * n > b.byteLength) return null;
  const voters: number[] = [];
  for (let i = 0; i < n; i++) voters.push(dv.getUint32(36 + 4 * i, true));
  return { index: r64(dv, 16), term: r64(dv, 24), voters, data: b.slice(36 + 4 * n) };
}

/**
 * The write-ahead log of one Raft node: entries, hard state and snapshot markers in CRC-checked
 * records, appended in batches with one fdatasync per batch (group commit: appends that arrive while
 * a sync is in flight ride the next one). An fdatasync error is fatal: the WAL refuses every later
 * append, because after a failed fsync the kernel may have dropped the dirty pages and a retry can
 * falsely succeed.
 */
export class Wal {
  readonly dir: string;
  private readonly fs: WalFs;
  private readonly segmentBytes: number;
  private readonly cell: string | undefined;
  private segments: Segment[] = [];
  private file: WalFile | null = null;
  private fileSize = 0;
  private pending = new BatchWriter();
  private spare = new BatchWriter();
  private waiters: Waiter[] = [];
  private flushing = false;
  private lastHard: HardState = { term: 0, vote: 0, commit: 0 };
  private snapshotIndex = 0;
  private snapshotTerm = 0;
  private closed = false;
  /** Set after an I/O error; every later call fails with it. */
  failed: CellError | null = null;
  readonly stats: WalStats = { batches: 0, syncs: 0, records: 0, bytes: 0, segments: 0 };

  private constructor(opts: WalOptions) {
    this.dir = opts.dir;
    this.fs = opts.fs ?? nodeFs;
    this.segmentBytes = opts.segmentBytes ?? 64 * 1024 * 1024;
    this.cell = opts.cell;
  }

  /** Opens (creating if needed) the WAL in `dir` and recovers its state. */
  static async open(opts: WalOptions): Promise<{ wal: Wal; state: WalState }> {
    const wal = new Wal(opts);
    const state = await wal.recover(opts.maxRecordBytes ?? 64 * 1024 * 1024);
    return { wal, state };
  }

  private corrupt(file: string, offset: number, what: string): CellError {
    return new CellError(
      'E_WAL_CORRUPT',
      `write-ahead log ${joinPath(this.dir, file)} is corrupt at byte ${offset} (${what}), before data that was acknowledged; refusing to start rather than drop committed entries.`,
      {
        ...(this.cell === undefined ? {} : { cell: this.cell }),
        fix: "move this node's data directory aside and let it rejoin the cluster empty (it catches up from the leader by snapshot), or restore the directory from a backup.",
        details: { file: joinPath(this.dir, file), offset },
      },
    );
  }

  /** Reads the directory back: the newest valid snapshot, then every segment through the pure scanner
   * (scan.ts), repairing a torn tail of the last one; refuses damage anywhere else. */
  private async recover(maxRecord: number): Promise<WalState> {
    await this.fs.mkdirp(this.dir);
    const names = await this.fs.list(this.dir);
    // Leftovers of a snapshot write that never reached its rename.
    for (const n of names) if (n.endsWith('.tmp')) await this.fs.unlink(joinPath(this.dir, n));
    const snapshot = await this.newestSnapshot(names);
    const segs = names.filter((n) => /^wal-[0-9a-f]{16}\.log$/.test(n)).sort();
    const log: RecoveredLog = { hard: { term: 0, vote: 0, commit: 0 }, entries: [], markIndex: 0, markTerm: 0 };
    let truncatedBytes = 0;
    for (let si = 0; si < segs.length; si++) {
      truncatedBytes += await this.recoverSegment(segs[si], si === segs.length - 1, maxRecord, log);
    }
    const entries = this.entriesAfter(snapshot, log.entries);
    const snapIndex = snapshot ? snapshot.index : 0;
    this.snapshotIndex = Math.max(snapIndex, log.markIndex);
    this.snapshotTerm = snapshot ? snapshot.term : log.markTerm;
    const hard = log.hard;
    if (hard.commit < snapIndex) hard.commit = snapIndex;
    this.lastHard = hard;
    if (this.segments.length === 0) {
      // A new log: make the data directory's own entry durable too, or a crash could lose the whole
      // directory after this node had already voted or acknowledged entries.
      await this.fs.fsyncDir(dirname(this.dir));
      await this.createSegment(1);
    } else {
      const s = this.segments[this.segments.length - 1];
      this.file = await this.fs.openAppend(joinPath(this.dir, s.name), false);
    }
    this.stats.segments = this.segments.length;
    return { hardState: hard, snapshot, entries, truncatedBytes };
  }

  private async newestSnapshot(names: string[]): Promise<Snapshot | null> {
    const snaps = names.filter((n) => /^snap-[0-9a-f]{16}\.snap$/.test(n)).sort();
    for (let i = snaps.length - 1; i >= 0; i--) {
      const s = decodeSnapshotFile(await this.fs.readFile(joinPath(this.dir, snaps[i])));
      if (s) return s;
    }
    return null;
  }

  /** Scans one segment into `log`; returns the bytes cut from a torn tail. Only the last segment may
   * end torn (its last batch never finished its fdatasync, so nobody was told it was durable). */
  private async recoverSegment(name: string, last: boolean, maxRecord: number, log: RecoveredLog): Promise<number> {
    const path = joinPath(this.dir, name);
    const buf = await this.fs.readFile(path);
    const scan = scanSegment(buf, Number.parseInt(name.slice(4, 20), 16), maxRecord);
    if (!scan.headerOk) {
      if (!last) throw this.corrupt(name, 0, 'bad segment header');
      // A segment whose creation was cut short never held an acknowledged batch.
      await this.fs.unlink(path);
      await this.fs.fsyncDir(this.dir);
      return buf.byteLength;
    }
    const d = scan.damage;
    if (d && (!last || d.committedAfter)) throw this.corrupt(name, d.offset, d.reason);
    for (const r of scan.records) {
      if (r.type === RecordType.Entry) log.entries = appendRecovered(log.entries, r.entry);
      else if (r.type === RecordType.HardState) log.hard = r.hardState;
      else {
        log.markIndex = r.index;
        log.markTerm = r.term;
      }
    }
    if (d) {
      await this.fs.truncate(path, scan.validEnd);
      const f = await this.fs.openAppend(path, false);
      await f.datasync();
      await f.close();
    }
    this.segments.push({ seq: Number.parseInt(name.slice(4, 20), 16), name, maxIndex: scan.maxIndex });
    // The last segment kept is the one appended to.
    this.fileSize = scan.validEnd;
    return buf.byteLength - scan.validEnd;
  }

  /** Entries the snapshot covers are dropped; if the log disagrees with the snapshot at its index (a
   * snapshot installed from the leader over a divergent log), the whole log is stale. */
  private entriesAfter(snapshot: Snapshot | null, entries: Entry[]): Entry[] {
    if (snapshot) {
      const at = entries.find((e) => e.index === snapshot.index);
      const kept = at && at.term !== snapshot.term ? [] : entries.filter((e) => e.index > snapshot.index);
      return kept.length > 0 && kept[0].index !== snapshot.index + 1 ? [] : kept;
    }
    if (entries.length > 0 && entries[0].index !== 1) {
      throw this.corrupt(
        this.segments[0].name,
        SEG_HEADER,
        `log starts at index ${entries[0].index} but no snapshot file covers the entries before it`,
      );
    }
    return entries;
  }

  /** New segment: header, fdatasync, then fsync of the directory so the file itself survives a crash. */
  private async createSegment(seq: number): Promise<void> {
    const name = segName(seq);
    const f = await this.fs.openAppend(joinPath(this.dir, name), true);
    await f.write(segHeader(seq));
    await f.datasync();
    await this.fs.fsyncDir(this.dir);
    if (this.file) await this.file.close();
    this.file = f;
    this.fileSize = SEG_HEADER;
    this.segments.push({ seq, name, maxIndex: 0 });
    this.stats.segments = this.segments.length;
  }

  /**
   * Queues entries and (optionally) a hard state; resolves once they are durable. Appends made while
   * a sync is in flight are written and synced together afterwards.
   */
  append(entries: readonly Entry[], hardState: HardState | null): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.closed) return Promise.reject(new CellError('E_CLOSED', 'write-ahead log is closed.'));
    const b = this.pending;
    for (let i = 0; i < entries.length; i++) b.entry(entries[i]);
    if (hardState) {
      b.hardState(hardState);
      this.lastHard = hardState;
    }
    return this.enqueue();
  }

  private enqueue(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.waiters.length > 0 && !this.failed) {
        const waiters = this.waiters;
        this.waiters = [];
        const b = this.pending;
        this.pending = this.spare;
        this.spare = b;
        try {
          if (this.fileSize + b.len > this.segmentBytes && this.fileSize > SEG_HEADER) {
            await this.createSegment(this.segments[this.segments.length - 1].seq + 1);
            // Each segment restates the hard state (and the snapshot point) so older ones can go.
            const head = new BatchWriter();
            head.hardState(this.lastHard);
            if (this.snapshotIndex > 0) head.snapshot(this.snapshotIndex, this.snapshotTerm);
            const body = b.buf.subarray(0, b.len);
            head.buf = concat(head.buf.subarray(0, head.len), body);
            head.len += b.len;
            head.records += b.records;
            head.maxIndex = b.maxIndex;
            head.dv = new DataView(head.buf.buffer);
            await this.writeBatch(head);
          } else {
            await this.writeBatch(b);
          }
        } catch (err) {
          this.fail(err);
          for (const w of waiters) w.reject(this.failed!);
          break;
        }
        b.reset();
        for (const w of waiters) w.resolve();
      }
      if (this.failed) {
        const rest = this.waiters;
        this.waiters = [];
        for (const w of rest) w.reject(this.failed);
      }
    } finally {
      this.flushing = false;
    }
  }

  private async writeBatch(b: BatchWriter): Promise<void> {
    if (b.len === 0) return;
    b.commit();
    const f = this.file!;
    const bytes = b.buf.subarray(0, b.len);
    if (f.writeDurable) await f.writeDurable(bytes);
    else {
      await f.write(bytes);
      await f.datasync();
    }
    this.fileSize += b.len;
    const seg = this.segments[this.segments.length - 1];
    if (b.maxIndex > seg.maxIndex) seg.maxIndex = b.maxIndex;
    this.stats.batches++;
    this.stats.syncs++;
    this.stats.records += b.records;
    this.stats.bytes += b.len;
  }

  private fail(err: unknown): void {
    if (this.failed) return;
    this.failed = new CellError(
      'E_WAL_IO',
      `write-ahead log ${this.dir}: ${(err as Error).message}; the node stops (a failed fsync is never retried: the kernel may already have dropped the unsynced pages).`,
      {
        ...(this.cell === undefined ? {} : { cell: this.cell }),
        fix: 'check the disk (dmesg, free space), then restart the node; it recovers from its log and its peers.',
        cause: err,
      },
    );
  }

  /**
   * Stores a snapshot (temp file, fdatasync, rename, directory fsync), records its marker in the log,
   * then deletes the segments wholly before it and older snapshot files.
   */
  async saveSnapshot(s: Snapshot): Promise<void> {
    if (this.failed) throw this.failed;
    const name = snapName(s.index);
    const tmp = joinPath(this.dir, `${name}.tmp`);
    try {
      const f = await this.fs.openAppend(tmp, true);
      await f.write(encodeSnapshotFile(s));
      await f.datasync();
      await f.close();
      await this.fs.rename(tmp, joinPath(this.dir, name));
      await this.fs.fsyncDir(this.dir);
    } catch (err) {
      this.fail(err);
      throw this.failed;
    }
    this.snapshotIndex = s.index;
    this.snapshotTerm = s.term;
    this.pending.snapshot(s.index, s.term);
    await this.enqueue();
    await this.compact(s.index, name);
  }

  private async compact(index: number, keepSnap: string): Promise<void> {
    try {
      let removed = false;
      while (this.segments.length > 1 && this.segments[0].maxIndex <= index) {
        const seg = this.segments.shift()!;
        await this.fs.unlink(joinPath(this.dir, seg.name));
        removed = true;
      }
      for (const n of await this.fs.list(this.dir)) {
        if (/^snap-[0-9a-f]{16}\.snap$/.test(n) && n < keepSnap) {
          await this.fs.unlink(joinPath(this.dir, n));
          removed = true;
        }
      }
      if (removed) await this.fs.fsyncDir(this.dir);
    } catch (err) {
      this.fail(err);
      throw this.failed;
    }
    this.stats.segments = this.segments.length;
  }

  /** Segment file names, oldest first. */
  segmentNames(): string[] {
    return this.segments.map((s) => s.name);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.flushing) await new Promise((r) => setImmediate(r));
    try {
      await this.file?.close();
    } catch {
      // Closing after a failure may fail again; the WAL is done either way.
    }
    this.file = null;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}
