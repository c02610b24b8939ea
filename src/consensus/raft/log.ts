import { CellError } from '../../errors/index.js';
import type { Entry, Snapshot } from './types.js';

/**
 * The in-memory view of one node's log: entries after the compaction point, plus the indexes the
 * Raft invariants are stated in (applied <= committed, stabled = last index known durable).
 */
export class RaftLog {
  /** Index and term of the last compacted entry (0/0 for a fresh log). */
  snapIndex = 0;
  snapTerm = 0;
  /** entries[i].index === snapIndex + 1 + i */
  entries: Entry[] = [];
  committed = 0;
  applied = 0;
  stabled = 0;

  lastIndex(): number {
    return this.snapIndex + this.entries.length;
  }

  lastTerm(): number {
    return this.entries.length > 0 ? this.entries[this.entries.length - 1].term : this.snapTerm;
  }

  /** Term of entry `i`, or -1 when it is compacted away or beyond the end. */
  term(i: number): number {
    if (i === this.snapIndex) return this.snapTerm;
    if (i < this.snapIndex || i > this.lastIndex()) return -1;
    return this.entries[i - this.snapIndex - 1].term;
  }

  matchTerm(i: number, t: number): boolean {
    return this.term(i) === t;
  }

  entry(i: number): Entry {
    return this.entries[i - this.snapIndex - 1];
  }

  /** Entries [lo, hi) — both must lie after the compaction point. */
  slice(lo: number, hi: number): Entry[] {
    return this.entries.slice(lo - this.snapIndex - 1, hi - this.snapIndex - 1);
  }

  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  /** Largest index <= `index` whose term is <= `term` (fast log back-tracking, as etcd-raft does). */
  findConflictByTerm(index: number, term: number): [number, number] {
    let i = Math.min(index, this.lastIndex());
    for (; i > this.snapIndex; i--) {
      const t = this.term(i);
      if (t <= term) return [i, t];
    }
    return [this.snapIndex, this.snapTerm <= term ? this.snapTerm : 0];
  }

  /** Follower append. Returns the last new index, or -1 when prev does not match. */
  maybeAppend(prevIndex: number, prevTerm: number, commit: number, ents: Entry[]): number {
    if (!this.matchTerm(prevIndex, prevTerm)) return -1;
    const lastNew = prevIndex + ents.length;
    let k = 0;
    for (; k < ents.length; k++) {
      const e = ents[k];
      if (!this.matchTerm(e.index, e.term)) break;
    }
    if (k < ents.length) {
      const first = ents[k].index;
      if (first <= this.committed) {
        throw new CellError(
          'E_INTERNAL',
          `raft: entry ${first} conflicts with committed entry (commit ${this.committed})`,
        );
      }
      this.truncateAndAppend(k === 0 ? ents : ents.slice(k));
    }
    this.commitTo(Math.min(commit, lastNew));
    return lastNew;
  }

  append(ents: Entry[]): void {
    for (const e of ents) this.entries.push(e);
  }

  truncateAndAppend(ents: Entry[]): void {
    const first = ents[0].index;
    this.entries.length = first - this.snapIndex - 1;
    for (const e of ents) this.entries.push(e);
    if (this.stabled >= first) this.stabled = first - 1;
  }

  commitTo(i: number): void {
    if (i > this.committed) {
      if (i > this.lastIndex())
        throw new CellError('E_INTERNAL', `raft: commit ${i} beyond last index ${this.lastIndex()}`);
      this.committed = i;
    }
  }

  /** Entries unknown to be durable. */
  unstable(): Entry[] {
    return this.stabled >= this.lastIndex()
      ? []
      : this.slice(Math.max(this.stabled, this.snapIndex) + 1, this.lastIndex() + 1);
  }

  /** Committed, durable and not yet applied. */
  nextCommitted(maxCount: number): Entry[] {
    const lo = Math.max(this.applied, this.snapIndex) + 1;
    const hi = Math.min(this.committed, this.stabled, lo + maxCount - 1);
    return hi < lo ? [] : this.slice(lo, hi + 1);
  }

  /** Drop entries up to `index` (which must be applied). */
  compact(index: number): void {
    if (index <= this.snapIndex) return;
    if (index > this.applied)
      throw new CellError('E_INTERNAL', `raft: compact ${index} beyond applied ${this.applied}`);
    const t = this.term(index);
    this.entries = this.entries.slice(index - this.snapIndex);
    this.snapIndex = index;
    this.snapTerm = t;
  }

  restore(s: Snapshot): void {
    this.entries = [];
    this.snapIndex = s.index;
    this.snapTerm = s.term;
    this.committed = s.index;
    this.stabled = s.index;
  }
}
