import type { Entry, HardState, Ready, Snapshot } from '../raft/types.js';
import type { Prng } from './prng.js';

/** What survives a crash. */
export interface DiskState {
  hardState: HardState;
  snapshot: Snapshot | null;
  entries: Entry[];
}

type DiskRecord = { kind: 'snapshot'; s: Snapshot } | { kind: 'entries'; es: Entry[] } | { kind: 'hard'; h: HardState };

/**
 * One node's simulated disk, at the level of the records a WAL writes: a Ready is staged as unsynced
 * records and becomes durable when its sync completes. A crash loses the unsynced records, or (torn
 * writes) keeps a prefix of them with the last entries record cut at an entry boundary, as a WAL that
 * recovers whole records leaves it. Snapshots are written atomically.
 */
export class SimDiskState {
  durable: DiskState = { hardState: { term: 0, vote: 0, commit: 0 }, snapshot: null, entries: [] };
  private unsynced: DiskRecord[] = [];
  /** The latest hard state handed out (written, or a commit-only change waiting for the next write). */
  private lastHard: HardState = { term: 0, vote: 0, commit: 0 };

  /** After a restart: nothing unsynced, the hard state as recovered. */
  reset(): void {
    this.unsynced = [];
    this.lastHard = { ...this.durable.hardState };
  }

  /** Stages a Ready's writes as RaftNode does: only when the core says it must be synced, and then with
   * the latest hard state (a commit-index change alone rides the next write; a restart may re-learn a
   * lower commit). */
  stage(rd: Ready): void {
    if (rd.snapshot) this.unsynced.push({ kind: 'snapshot', s: rd.snapshot });
    if (rd.hardState) this.lastHard = rd.hardState;
    if (!rd.mustSync) return;
    if (rd.entries.length > 0) this.unsynced.push({ kind: 'entries', es: rd.entries });
    this.unsynced.push({ kind: 'hard', h: this.lastHard });
  }

  /** The sync completed: everything staged is durable. */
  synced(): void {
    for (const r of this.unsynced) persist(this.durable, r);
    this.unsynced = [];
  }

  /** A local snapshot goes to its own file, synced and renamed into place: atomic and durable. */
  saveSnapshot(s: Snapshot, compactedTo: number): void {
    this.durable.snapshot = s;
    this.durable.entries = this.durable.entries.filter((e) => e.index > compactedTo);
  }

  /** Power loss: unsynced records are lost, or with `torn` a random prefix of them reached the disk. */
  crash(torn: boolean, rng: Prng): void {
    if (torn && this.unsynced.length > 0) {
      const recs = this.unsynced;
      const keep = rng.int(0, recs.length);
      for (let i = 0; i < keep; i++) {
        const rec = recs[i];
        if (rec.kind === 'entries' && i === keep - 1) {
          const k = rng.int(1, rec.es.length);
          persist(this.durable, { kind: 'entries', es: rec.es.slice(0, k) });
        } else persist(this.durable, rec);
      }
    }
    this.unsynced = [];
  }

  /** Drops the last `n` durable entries (a disk that acknowledged syncs it did not do); returns the
   * lost range. */
  loseTail(n: number): { from: number; to: number } {
    const d = this.durable;
    const to = d.entries[d.entries.length - 1].index;
    const keep = Math.max(0, d.entries.length - n);
    const from = d.entries[keep].index;
    d.entries.length = keep;
    return { from, to };
  }

  /** The highest index the durable state holds (log or snapshot). */
  lastIndex(): number {
    const d = this.durable;
    return Math.max(
      d.snapshot ? d.snapshot.index : 0,
      d.entries.length > 0 ? d.entries[d.entries.length - 1].index : 0,
    );
  }
}

function persist(d: DiskState, r: DiskRecord): void {
  if (r.kind === 'snapshot') {
    d.snapshot = r.s;
    d.entries = [];
  } else if (r.kind === 'entries') {
    const first = r.es[0].index;
    let k = d.entries.length;
    while (k > 0 && d.entries[k - 1].index >= first) k--;
    d.entries.length = k;
    for (const e of r.es) d.entries.push(e);
  } else {
    d.hardState = { ...r.h };
  }
}
