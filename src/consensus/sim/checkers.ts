import { type CheckOutcome, checkOperations, type KvOperation, kvModel } from '../linearizability/index.js';
import { Role } from '../raft/types.js';
import type { SimNode } from './node.js';

/**
 * The Raft safety properties, checked against every node after every event: election safety, log
 * matching, leader completeness, state machine safety (same entry and same state hash at each index
 * everywhere), commit monotonicity and nothing applied beyond what is durable. `fail` throws.
 */
export class SafetyChecker {
  /** Terms in which some node became leader. */
  leaders = 0;
  private readonly leaderOf = new Map<number, number>();
  /** index -> term of every entry any node has seen committed. */
  readonly committedTerm: number[] = [];
  /** index -> the term of the first node seen holding it committed: the term it was committed in, or
   * later (a follower learns of a commit after the leader). */
  private readonly committedIn: number[] = [];
  readonly committedData: Uint8Array[] = [];
  /** index -> state machine hash after applying it. */
  private readonly smHash: number[] = [0]; // the empty state's hash
  private checks = 0;

  constructor(
    private readonly fail: (what: string) => never,
    /** The highest index a node holds durably (what it may have applied). */
    private readonly durableIndex: (n: SimNode) => number,
  ) {}

  /** For a shell that hands the state machine only commands (not the leader's no-ops or configuration
   * entries): `index` follows what was applied, and holds the same data everywhere. */
  checkCommand(n: SimNode, index: number, data: Uint8Array): void {
    if (index <= n.sm.index) this.fail(`node ${n.id} applies ${index} after ${n.sm.index}`);
    const prev = this.committedData[index];
    if (prev !== undefined && !bytesEqual(prev, data))
      this.fail(`state machine safety: node ${n.id} applies different data at ${index}`);
    this.committedData[index] = data;
  }

  /** The node's state machine hash at its applied index matches every other node's there. */
  checkSmAt(n: SimNode, what: string): void {
    const h = this.smHash[n.sm.index];
    if (h === undefined) this.smHash[n.sm.index] = n.sm.hash;
    else if (h !== n.sm.hash) this.fail(`state machine safety (${what}): node ${n.id} state at ${n.sm.index} differs`);
  }

  afterEvent(nodes: readonly SimNode[]): void {
    for (const n of nodes) if (n.up) this.checkNode(n);
    if (++this.checks % 64 === 0) this.checkLogMatching(nodes);
  }

  private checkNode(n: SimNode): void {
    const c = n.core;
    const log = c.log;
    if (c.role === Role.Leader) {
      const l = this.leaderOf.get(c.term);
      if (l === undefined) {
        this.leaderOf.set(c.term, n.id);
        this.leaders++;
        this.checkLeaderCompleteness(n);
      } else if (l !== n.id) this.fail(`election safety: nodes ${l} and ${n.id} both lead term ${c.term}`);
    }
    if (log.committed < n.lastCommit) this.fail(`node ${n.id} commit went back ${n.lastCommit} -> ${log.committed}`);
    n.lastCommit = log.committed;
    if (!(log.applied <= log.committed && log.committed <= log.lastIndex())) {
      this.fail(`node ${n.id}: applied ${log.applied} committed ${log.committed} last ${log.lastIndex()}`);
    }
    const durableLast = this.durableIndex(n);
    if (n.sm.index > durableLast) this.fail(`node ${n.id} applied ${n.sm.index} beyond durable ${durableLast}`);
    // Record newly committed entries and check them against what others committed.
    for (let i = Math.max(n.commitSeen, log.snapIndex) + 1; i <= log.committed; i++) {
      const t = log.term(i);
      const known = this.committedTerm[i];
      if (known === undefined) {
        this.committedTerm[i] = t;
        this.committedIn[i] = c.term;
      } else if (known !== t) this.fail(`node ${n.id} commits term ${t} at ${i}, others committed term ${known}`);
    }
    if (log.committed > n.commitSeen) n.commitSeen = log.committed;
  }

  private checkLeaderCompleteness(n: SimNode): void {
    const log = n.core.log;
    // Leader completeness binds leaders of later terms only: a stale candidate can still win an older
    // term from delayed votes, and it can commit nothing.
    for (let i = log.snapIndex + 1; i < this.committedTerm.length; i++) {
      const t = this.committedTerm[i];
      if (t === undefined || (this.committedIn[i] ?? 0) >= n.core.term) continue;
      if (log.term(i) !== t)
        this.fail(`leader completeness: leader ${n.id} (term ${n.core.term}) lacks committed entry ${i}`);
    }
  }

  /** Any two logs that hold an entry with the same index and term agree up to it, data included. */
  checkLogMatching(nodes: readonly SimNode[]): void {
    const up = nodes.filter((n) => n.up);
    for (let a = 0; a < up.length; a++) {
      for (let b = a + 1; b < up.length; b++) {
        const la = up[a].core.log;
        const lb = up[b].core.log;
        const lo = Math.max(la.snapIndex, lb.snapIndex) + 1;
        let i = Math.min(la.lastIndex(), lb.lastIndex());
        while (i >= lo && la.term(i) !== lb.term(i)) i--;
        for (; i >= lo; i--) {
          const ea = la.entry(i);
          const eb = lb.entry(i);
          if (ea.term !== eb.term || !bytesEqual(ea.data, eb.data)) {
            this.fail(`log matching: nodes ${up[a].id} and ${up[b].id} differ at ${i}`);
          }
        }
      }
    }
  }

  /** At the end: every voter applied every acknowledged write, to the same state, and each acknowledged
   * write is committed at the index it was acknowledged at. */
  checkFinal(voters: readonly SimNode[], acked: ReadonlyMap<number, number>, maxAckedIndex: number): void {
    for (const n of voters) {
      if (n.sm.index < maxAckedIndex) this.fail(`node ${n.id} applied ${n.sm.index} < acknowledged ${maxAckedIndex}`);
      if (this.smHash[n.sm.index] !== n.sm.hash) this.fail(`node ${n.id} final state differs`);
    }
    for (const [value, index] of acked) {
      const d = this.committedData[index];
      if (!d || new DataView(d.buffer, d.byteOffset, 8).getFloat64(0, true) !== value) {
        this.fail(`acknowledged write ${value} at ${index} lost`);
      }
    }
  }
}

/**
 * The clients' view must be linearizable. A put whose outcome is unknown and whose (unique) value
 * nobody read is equivalent to one that never took effect, so it is left out: it only widens the
 * search. Values are unique, so a put observed by a read took effect before that read returned: its
 * open end can be closed there without changing which histories are linearizable.
 */
export function checkHistory(
  history: readonly KvOperation[],
  timeoutMs: number,
): CheckOutcome<KvOperation['input'], KvOperation['output']> {
  const observedBy = new Map<string, number>();
  for (const op of history) {
    if (op.input.op === 'get') {
      const v = (op.output as { value: string | null }).value;
      if (v !== null) observedBy.set(v, Math.min(observedBy.get(v) ?? Number.POSITIVE_INFINITY, op.ret));
    }
  }
  const ops: KvOperation[] = [];
  for (const op of history) {
    if (op.ret !== Number.POSITIVE_INFINITY) ops.push(op);
    else if (op.input.op === 'put' && observedBy.has(op.input.value)) {
      ops.push({ ...op, ret: Math.max(op.call, observedBy.get(op.input.value)!) });
    }
  }
  return checkOperations(kvModel, ops, { timeoutMs });
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
