import { CellError } from '../../errors/index.js';
import { RaftLog } from './log.js';
import { isQuorum, majorityIndex, VoteResult, voteResult } from './quorum.js';
import {
  decodeVoters,
  type Entry,
  EntryType,
  encodeVoters,
  type HardState,
  type Message,
  MsgType,
  message,
  NONE,
  type ReadState,
  type Ready,
  Role,
  type Snapshot,
} from './types.js';

export interface RaftConfig {
  id: number;
  /** Voters to start with when storage holds no configuration (all founding members pass the same list). */
  peers: number[];
  /** Ticks without hearing from a leader before campaigning (randomized in [n, 2n)). */
  electionTick: number;
  heartbeatTick: number;
  preVote: boolean;
  checkQuorum: boolean;
  /** Entries per append message (batching). */
  maxMsgEntries: number;
  /** Append messages in flight per follower (pipelining). */
  maxInflight: number;
  /** Proposals are refused (propose returns 0) while this many entries wait for commit: flow control,
   * so a leader whose followers are slow does not grow its log without bound. Default: unlimited. */
  maxUncommittedEntries?: number;
  /** Committed entries handed out per Ready. */
  maxApplyEntries?: number;
  /** Deterministic randomness in [0, 1) (the simulator passes a seeded PRNG). */
  random: () => number;
  /** Called with a message when the core sees what a healthy disk cannot produce: a follower that no
   * longer holds entries it acknowledged, or a recovered log shorter than its recorded commit index
   * (storage that lost synced writes). The core repairs what it can; the default ignores the message. */
  warn?: (message: string) => void;
}

export interface RaftStorageState {
  hardState: HardState;
  snapshot: Snapshot | null;
  entries: Entry[];
}

const ProgressState = { Probe: 0, Replicate: 1, Snapshot: 2 } as const;
type ProgressState = (typeof ProgressState)[keyof typeof ProgressState];

/** What the leader knows about one voter. */
class Progress {
  match = 0;
  next = 1;
  state: ProgressState = ProgressState.Probe;
  probeSent = false;
  /** Last index of each append in flight, oldest first. */
  inflights: number[] = [];
  pendingSnapshot = 0;
  snapElapsed = 0;
  recentActive = false;
  /** Highest read sequence this voter has acknowledged via heartbeat. */
  readAck = 0;
  /** Appends (and snapshots) sent to this voter in this term, each stamped with its number in `ctx`,
   * which the voter echoes in its response. */
  sendSeq = 0;
  /** sendSeq when `match` last grew: an append numbered above it was sent after the voter had
   * acknowledged `match`, so a rejection of it at or below `match` means the voter lost entries. */
  matchSeq = 0;
  /** sendSeq when such a loss was found: acknowledgements of earlier appends predate the loss and are
   * ignored. */
  lostSeq = 0;

  constructor(next: number) {
    this.next = next;
  }

  becomeProbe(): void {
    if (this.state === ProgressState.Snapshot) {
      this.next = Math.max(this.match + 1, this.pendingSnapshot + 1);
      this.pendingSnapshot = 0;
    } else {
      this.next = this.match + 1;
    }
    this.state = ProgressState.Probe;
    this.probeSent = false;
    this.inflights.length = 0;
  }

  becomeReplicate(): void {
    this.state = ProgressState.Replicate;
    this.next = this.match + 1;
    this.inflights.length = 0;
    this.probeSent = false;
  }

  paused(maxInflight: number): boolean {
    if (this.state === ProgressState.Probe) return this.probeSent;
    if (this.state === ProgressState.Replicate) return this.inflights.length >= maxInflight;
    return true;
  }

  freeTo(index: number): void {
    let k = 0;
    while (k < this.inflights.length && this.inflights[k] <= index) k++;
    if (k > 0) this.inflights.splice(0, k);
  }
}

interface PendingRead {
  seq: number;
  index: number;
  ctx: number;
  from: number;
}

/**
 * The Raft algorithm as a deterministic state machine with no I/O, after etcd-raft: inputs are
 * `tick()`, `step(msg)`, `propose()`, `readIndex()`, `transferLeadership()`; the output is a `Ready`
 * the shell persists, sends and applies before calling `advance()`.
 */
export class Raft {
  readonly id: number;
  readonly log = new RaftLog();
  term = 0;
  vote = NONE;
  lead = NONE;
  role: Role = Role.Follower;
  /** The voters in force: those of the latest configuration entry in the log, committed or not
   * (Raft thesis §4.1), else those at the log's compaction point. */
  voters = new Set<number>();
  /** The configuration at the log's compaction point. */
  private baseVoters: number[] = [];
  /** Index and term of the latest configuration entry in the log (0 when none after the compaction point). */
  private confIndex = 0;
  private confTerm = 0;
  private readonly cfg: RaftConfig;
  private readonly prs = new Map<number, Progress>();
  private votes = new Map<number, boolean>();
  private msgs: Message[] = [];
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private pendingConfIndex = 0;
  leadTransferee = NONE;
  private readStates: ReadState[] = [];
  private readSeq = 0;
  private pendingReads: PendingRead[] = [];
  /** Reads that arrived before the leader committed an entry of its own term. */
  private readsAwaitingCommit: { ctx: number; from: number }[] = [];
  private snapshot: Snapshot | null = null;
  private pendingSnapshot: Snapshot | null = null;
  private prevHard: HardState = { term: 0, vote: 0, commit: 0 };
  private prevSoft = { lead: NONE, role: Role.Follower as Role, term: 0 };
  private readyOut: Ready | null = null;
  /** The Ready handed out writes a new term or vote (nothing of this term may leave before it). */
  private readyOutNewVote = false;
  private readonly maxApply: number;
  private readonly maxUncommitted: number;
  /** Reused for quorum counts (one per acknowledgement on the leader). */
  private readonly matchScratch: number[] = [];

  constructor(cfg: RaftConfig, storage: RaftStorageState) {
    this.cfg = cfg;
    this.id = cfg.id;
    this.maxApply = cfg.maxApplyEntries ?? 4096;
    this.maxUncommitted = cfg.maxUncommittedEntries ?? Number.POSITIVE_INFINITY;
    const hs = storage.hardState;
    this.term = hs.term;
    this.vote = hs.vote;
    let voters = cfg.peers;
    if (storage.snapshot) {
      const s = storage.snapshot;
      this.snapshot = s;
      this.log.snapIndex = s.index;
      this.log.snapTerm = s.term;
      this.log.applied = s.index;
      this.log.committed = s.index;
      voters = s.voters;
    }
    for (const e of storage.entries) {
      if (e.index <= this.log.snapIndex) continue;
      if (e.index !== this.log.lastIndex() + 1) {
        throw new CellError('E_WAL_CORRUPT', `raft: recovered log has a gap at index ${e.index}`);
      }
      this.log.entries.push(e);
    }
    this.log.stabled = this.log.lastIndex();
    if (hs.commit > this.log.lastIndex()) {
      cfg.warn?.(
        `raft node ${this.id}: the recovered log ends at index ${this.log.lastIndex()} but the hard state records ` +
          `commit ${hs.commit}: committed entries ${this.log.lastIndex() + 1}..${hs.commit} were lost after they were ` +
          'synced (storage that does not honour fsync?); the leader will send them again.',
      );
    }
    this.log.committed = Math.min(Math.max(this.log.committed, hs.commit), this.log.lastIndex());
    // A configuration takes effect as soon as it is in the log (committed or not), so the latest
    // configuration entry in the recovered log is the one in force.
    this.baseVoters = voters;
    this.voters = new Set(voters);
    this.refreshVoters(true);
    this.prevHard = { term: this.term, vote: this.vote, commit: this.log.committed };
    this.becomeFollower(this.term, NONE);
  }

  // ---- inputs -------------------------------------------------------------------------------

  tick(): void {
    if (this.role === Role.Leader) {
      this.tickHeartbeat();
      return;
    }
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.campaign(this.cfg.preVote ? 'pre' : 'elect', false);
    }
  }

  /** Append a command if this node leads. Returns its index, or 0 when not leader (or transferring). */
  propose(data: Uint8Array): number {
    if (this.role !== Role.Leader || this.leadTransferee !== NONE) return 0;
    if (this.log.lastIndex() - this.log.committed >= this.maxUncommitted) return 0;
    return this.appendEntry(EntryType.Normal, data);
  }

  /** Propose the full new voter set; it takes effect at once (when appended), on each node when the
   * entry reaches its log. Only one change may be pending (the previous one must be applied); the
   * caller adds or removes one voter. */
  proposeConfChange(voters: number[]): number {
    if (this.role !== Role.Leader || this.leadTransferee !== NONE) return 0;
    if (this.pendingConfIndex > this.log.applied) return 0;
    const idx = this.appendEntry(EntryType.Config, encodeVoters(voters));
    this.pendingConfIndex = idx;
    // In force from now on: the entry is replicated and committed under the new configuration.
    this.confIndex = idx;
    this.confTerm = this.term;
    this.setVoters(voters);
    return idx;
  }

  /** Ask for a linearizable read point; the answer arrives as a ReadState with the same ctx. */
  readIndex(ctx: number): boolean {
    if (this.role === Role.Leader) {
      this.leaderRead(ctx, this.id);
      return true;
    }
    if (this.lead === NONE) return false;
    const m = message(MsgType.ReadIndex, this.lead, this.id, this.term);
    m.ctx = ctx;
    this.send(m);
    return true;
  }

  transferLeadership(to: number): boolean {
    if (this.role !== Role.Leader || to === this.id || !this.voters.has(to)) return false;
    this.leadTransferee = to;
    this.electionElapsed = 0;
    const pr = this.prs.get(to)!;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to);
    return true;
  }

  /** False while a snapshot received from the leader is being installed (applied lags the log's
   * compaction point until that Ready is advanced); compact() must wait. */
  canCompact(): boolean {
    return this.log.applied >= this.log.snapIndex && this.pendingSnapshot === null;
  }

  /** Record that the state machine holds a snapshot at the applied index; drop log entries before
   * applied - keep (trailing entries let slow followers catch up without a snapshot). */
  compact(data: Uint8Array, keep: number): Snapshot {
    if (!this.canCompact()) {
      throw new CellError(
        'E_INTERNAL',
        'raft: compact() while a snapshot is being installed; check canCompact() first',
      );
    }
    const index = this.log.applied;
    const s: Snapshot = { index, term: this.log.term(index), voters: this.confAt(index), data };
    if (s.term < 0) throw new CellError('E_INTERNAL', `raft: cannot snapshot at compacted index ${index}`);
    this.snapshot = s;
    const upTo = Math.max(this.log.snapIndex, Math.min(index - keep, this.log.stabled));
    const base = this.confAt(upTo);
    this.log.compact(upTo);
    this.baseVoters = base;
    if (this.confIndex <= upTo) this.confIndex = 0;
    return s;
  }

  step(m: Message): void {
    if (!this.stepTerm(m)) return;
    if (m.type === MsgType.Vote || m.type === MsgType.PreVote) this.handleVote(m);
    else if (this.role === Role.Leader) this.stepLeader(m);
    else if (this.role === Role.Follower) this.stepFollower(m);
    else this.stepCandidate(m);
  }

  /** Compares the message's term with ours (Raft §5.1): a newer term makes this node a follower (unless
   * it is a campaign the leader lease ignores, or a pre-vote); an older one is answered where that helps
   * its sender and otherwise dropped. False when the message goes no further. */
  private stepTerm(m: Message): boolean {
    if (m.term > this.term) {
      if (m.type === MsgType.Vote || m.type === MsgType.PreVote) {
        const force = m.ctx === 1;
        const inLease = this.cfg.checkQuorum && this.lead !== NONE && this.electionElapsed < this.cfg.electionTick;
        // A node that heard from a live leader recently ignores campaigns (thesis §4.2.3).
        if (!force && inLease) return false;
      }
      if (m.type === MsgType.PreVote) {
        // Pre-votes never change our term.
      } else if (m.type === MsgType.PreVoteResp && !m.reject) {
        // A granted pre-vote carries the term we would campaign in.
      } else if (m.type === MsgType.App || m.type === MsgType.Heartbeat || m.type === MsgType.Snap) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if ((this.cfg.checkQuorum || this.cfg.preVote) && (m.type === MsgType.Heartbeat || m.type === MsgType.App)) {
        // Tell a stale leader about the newer term, or a partitioned node would never rejoin.
        this.send(message(MsgType.AppResp, m.from, this.id, this.term));
      } else if (m.type === MsgType.PreVote) {
        const r = message(MsgType.PreVoteResp, m.from, this.id, this.term);
        r.reject = true;
        this.send(r);
      }
      return false;
    }
    return true;
  }

  /** Grants a vote to a candidate whose log is at least as up to date as ours (Raft §5.4.1), once per
   * term; a pre-vote for a later term is granted on the log alone and changes nothing here. */
  private handleVote(m: Message): void {
    const canVote =
      this.vote === m.from ||
      (this.vote === NONE && this.lead === NONE) ||
      (m.type === MsgType.PreVote && m.term > this.term);
    const respType = m.type === MsgType.Vote ? MsgType.VoteResp : MsgType.PreVoteResp;
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      this.send(message(respType, m.from, this.id, m.term));
      if (m.type === MsgType.Vote) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      const r = message(respType, m.from, this.id, this.term);
      r.reject = true;
      this.send(r);
    }
  }

  // ---- Ready / advance ------------------------------------------------------------------------

  hasReady(): boolean {
    if (this.readyOut) return false;
    this.flushProposals();
    if (this.msgs.length > 0 || this.readStates.length > 0 || this.pendingSnapshot) return true;
    if (this.log.stabled < this.log.lastIndex()) return true;
    if (this.hardChanged() || this.softChanged()) return true;
    const lo = Math.max(this.log.applied, this.log.snapIndex) + 1;
    return Math.min(this.log.committed, this.log.stabled) >= lo;
  }

  ready(): Ready {
    if (this.readyOut) throw new CellError('E_INTERNAL', 'raft: ready() called twice without advance()');
    this.flushProposals();
    const prev = this.prevHard;
    const hard = this.hardChanged() ? { term: this.term, vote: this.vote, commit: this.log.committed } : null;
    const soft = this.softChanged() ? { lead: this.lead, role: this.role, term: this.term } : null;
    const entries = this.log.unstable();
    // The previous Ready's term and vote are durable: a Ready that changed them had to be synced
    // before advance(). So only a change against it needs a sync (etcd-raft's MustSync).
    const newVote = hard !== null && (hard.term !== prev.term || hard.vote !== prev.vote);
    const mustSync = entries.length > 0 || this.pendingSnapshot !== null || newVote;
    const rd: Ready = {
      hardState: hard,
      snapshot: this.pendingSnapshot,
      entries,
      mustSync,
      committedEntries: this.pendingSnapshot ? [] : this.log.nextCommitted(this.maxApply),
      messages: this.msgs,
      messagesAfterSync: [],
      readStates: this.readStates,
      softState: soft,
    };
    if (mustSync) this.splitMessages(rd, newVote);
    this.readyOutNewVote = newVote;
    this.msgs = [];
    this.readStates = [];
    if (hard) this.prevHard = hard;
    if (soft) this.prevSoft = soft;
    this.readyOut = rd;
    return rd;
  }

  /** With a write pending, only a leader's appends and heartbeats of its current term may leave before
   * it is durable, and only when the write carries no new term or vote they would depend on. */
  private splitMessages(rd: Ready, newVote: boolean): void {
    const all = rd.messages;
    if (newVote || this.role !== Role.Leader) {
      rd.messages = [];
      rd.messagesAfterSync = all;
      return;
    }
    const early: Message[] = [];
    const after: Message[] = [];
    for (const m of all) {
      if ((m.type === MsgType.App || m.type === MsgType.Heartbeat) && m.term === this.term) early.push(m);
      else after.push(m);
    }
    rd.messages = early;
    rd.messagesAfterSync = after;
  }

  /**
   * While a Ready is being persisted: a leader's appends and heartbeats of its current term produced
   * since (new proposals, answers to acknowledgements) may leave at once, under the same rule as
   * `Ready.messages` — the term and vote they carry are durable or already being written without a
   * change, and the leader counts itself only for what it has persisted. Their entries are written by
   * the next Ready. Everything else stays for the next Ready. Empty when no Ready is out.
   */
  earlyMessages(): Message[] {
    const h = this.prevHard;
    if (!this.readyOut || this.readyOutNewVote || this.role !== Role.Leader) return [];
    if (h.term !== this.term || h.vote !== this.vote) return [];
    this.flushProposals();
    if (this.msgs.length === 0) return [];
    const early: Message[] = [];
    const rest: Message[] = [];
    for (const m of this.msgs) {
      if ((m.type === MsgType.App || m.type === MsgType.Heartbeat) && m.term === this.term) early.push(m);
      else rest.push(m);
    }
    this.msgs = rest;
    return early;
  }

  advance(): void {
    const rd = this.readyOut;
    if (!rd) throw new CellError('E_INTERNAL', 'raft: advance() without ready()');
    this.readyOut = null;
    if (rd.snapshot) {
      if (rd.snapshot === this.pendingSnapshot) this.pendingSnapshot = null;
      if (rd.snapshot.index > this.log.applied) this.log.applied = rd.snapshot.index;
      if (!this.snapshot || rd.snapshot.index > this.snapshot.index) this.snapshot = rd.snapshot;
    }
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1];
      // The log may have been truncated while the Ready was being persisted.
      if (this.log.matchTerm(last.index, last.term) && last.index > this.log.stabled) this.log.stabled = last.index;
    }
    for (const e of rd.committedEntries) {
      if (e.index <= this.log.applied) continue;
      this.log.applied = e.index;
      if (e.type === EntryType.Config) this.applyConf();
    }
    if (this.role === Role.Leader) {
      const self = this.prs.get(this.id);
      if (self && this.log.stabled > self.match) {
        self.match = this.log.stabled;
        self.next = self.match + 1;
        if (this.maybeCommit()) this.bcastAppend();
      }
    }
  }

  // ---- introspection --------------------------------------------------------------------------

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  /** The latest snapshot known to this node (taken locally or installed). */
  latestSnapshot(): Snapshot | null {
    return this.snapshot;
  }

  progress(id: number): { match: number; next: number } | undefined {
    const p = this.prs.get(id);
    return p && { match: p.match, next: p.next };
  }

  // ---- roles ----------------------------------------------------------------------------------

  private promotable(): boolean {
    return this.voters.has(this.id) && this.pendingSnapshot === null;
  }

  private reset(term: number): void {
    if (term !== this.term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.cfg.electionTick + Math.floor(this.cfg.random() * this.cfg.electionTick);
    this.votes.clear();
    this.leadTransferee = NONE;
    this.pendingReads.length = 0;
    this.readsAwaitingCommit.length = 0;
  }

  private becomeFollower(term: number, lead: number): void {
    this.reset(term);
    this.lead = lead;
    this.role = Role.Follower;
  }

  private becomePreCandidate(): void {
    // Neither term nor vote changes: a pre-vote that fails leaves no trace.
    this.votes.clear();
    this.lead = NONE;
    this.role = Role.PreCandidate;
  }

  private becomeCandidate(): void {
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
  }

  private becomeLeader(): void {
    this.reset(this.term);
    this.lead = this.id;
    this.role = Role.Leader;
    this.prs.clear();
    const next = this.log.lastIndex() + 1;
    for (const v of this.voters) {
      const p = new Progress(next);
      if (v === this.id) {
        p.match = this.log.stabled;
        p.state = ProgressState.Replicate;
      }
      p.recentActive = true;
      this.prs.set(v, p);
    }
    this.appendEntry(EntryType.Normal, new Uint8Array(0));
    // No configuration change until everything before the leader's own no-op is applied (the fix to
    // the single-server membership bug: a leader must commit in its term first).
    this.pendingConfIndex = this.log.lastIndex();
  }

  private campaign(kind: 'pre' | 'elect', transfer: boolean): void {
    if (!this.promotable()) return;
    let voteTerm: number;
    let type: MsgType;
    if (kind === 'pre') {
      this.becomePreCandidate();
      voteTerm = this.term + 1;
      type = MsgType.PreVote;
    } else {
      this.becomeCandidate();
      voteTerm = this.term;
      type = MsgType.Vote;
    }
    if (this.poll(this.id, true) === VoteResult.Won) {
      if (kind === 'pre') this.campaign('elect', false);
      else this.becomeLeader();
      return;
    }
    for (const v of this.voters) {
      if (v === this.id) continue;
      const m = message(type, v, this.id, voteTerm);
      m.index = this.log.lastIndex();
      m.logTerm = this.log.lastTerm();
      m.ctx = transfer ? 1 : 0;
      this.send(m);
    }
  }

  /** Records a vote (the first from each node counts) and tallies the election. */
  private poll(from: number, granted: boolean): VoteResult {
    if (!this.votes.has(from)) this.votes.set(from, granted);
    return voteResult(this.voters, this.votes);
  }

  // ---- per-role step --------------------------------------------------------------------------

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MsgType.App:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppend(m);
        return;
      case MsgType.Heartbeat:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return;
      case MsgType.Snap:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return;
      case MsgType.TimeoutNow:
        // Leadership transfer: campaign at once, skipping pre-vote and the leader lease.
        this.campaign('elect', true);
        return;
      case MsgType.ReadIndex:
        if (this.lead !== NONE) {
          const f = { ...m, to: this.lead };
          this.send(f);
        }
        return;
      case MsgType.ReadIndexResp:
        this.readStates.push({ index: m.index, ctx: m.ctx });
        return;
    }
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case MsgType.App:
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        return;
      case MsgType.Heartbeat:
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case MsgType.Snap:
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      case MsgType.VoteResp:
      case MsgType.PreVoteResp: {
        const mine = this.role === Role.PreCandidate ? MsgType.PreVoteResp : MsgType.VoteResp;
        if (m.type !== mine) return;
        const r = this.poll(m.from, !m.reject);
        if (r === VoteResult.Won) {
          if (this.role === Role.PreCandidate) this.campaign('elect', false);
          else this.becomeLeader();
        } else if (r === VoteResult.Lost) {
          this.becomeFollower(this.term, NONE);
        }
        return;
      }
    }
  }

  private stepLeader(m: Message): void {
    if (m.type === MsgType.ReadIndex) {
      this.leaderRead(m.ctx, m.from);
      return;
    }
    const pr = this.prs.get(m.from);
    if (!pr) return;
    if (m.type === MsgType.AppResp) {
      pr.recentActive = true;
      if (m.reject) this.handleReject(pr, m);
      else this.handleAppResp(pr, m);
    } else if (m.type === MsgType.HeartbeatResp) {
      pr.recentActive = true;
      this.handleHeartbeatResp(pr, m);
    }
  }

  private handleAppResp(pr: Progress, m: Message): void {
    // An acknowledgement of an append sent before the voter was found to have lost entries may
    // describe entries it no longer holds.
    if (pr.lostSeq > 0 && m.ctx <= pr.lostSeq) return;
    const oldPaused = pr.paused(this.cfg.maxInflight);
    if (m.index > pr.match) {
      pr.match = m.index;
      pr.matchSeq = pr.sendSeq;
      pr.probeSent = false;
    }
    if (m.index + 1 > pr.next) pr.next = m.index + 1;
    if (pr.state === ProgressState.Probe) pr.becomeReplicate();
    else if (pr.state === ProgressState.Snapshot && pr.match >= pr.pendingSnapshot) {
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === ProgressState.Replicate) pr.freeTo(m.index);
    if (this.maybeCommit()) {
      this.bcastAppend();
    } else if (oldPaused || pr.match < this.log.lastIndex()) {
      this.sendAppendsTo(m.from, false);
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
  }

  private handleHeartbeatResp(pr: Progress, m: Message): void {
    pr.probeSent = false;
    if (pr.state === ProgressState.Replicate && pr.inflights.length >= this.cfg.maxInflight) {
      // A lost append would stall the pipeline forever; let one more through to provoke a reject.
      pr.inflights.shift();
    }
    // Even an empty append helps here: its rejection reveals an append lost on the way.
    if (pr.match < this.log.lastIndex()) this.sendAppend(m.from);
    if (m.ctx > pr.readAck) {
      pr.readAck = m.ctx;
      this.releaseReads();
    }
  }

  private handleReject(pr: Progress, m: Message): void {
    const nextProbe = m.logTerm > 0 ? this.log.findConflictByTerm(m.hint, m.logTerm)[0] : m.hint;
    // A rejection of an append sent after the voter had acknowledged `match` (numbered above
    // matchSeq) describes the voter's log after that acknowledgement. If it rejects at or below
    // `match`, or its hint (the highest index it may share with us) is below `match`, it no longer
    // holds entries it acknowledged: within a term a follower never drops the leader's entries, so its
    // storage lost them (it restarted from a log missing its synced tail). Such a rejection used to
    // look stale (Replicate) or be clamped back to match + 1 (Probe), and the leader probed at `match`
    // until a new leader came. Forget what the voter claimed and replicate again from its hint.
    if (m.ctx > pr.matchSeq && (m.index <= pr.match || m.hint < pr.match) && pr.state !== ProgressState.Snapshot) {
      const agreed = Math.min(m.hint, nextProbe);
      this.cfg.warn?.(
        `raft node ${this.id} (leader, term ${this.term}): follower ${m.from} had acknowledged entries up to ` +
          `${pr.match} but rejects an append at index ${m.index}; its log agrees with the leader's at most up to ` +
          `index ${agreed}: entries ${agreed + 1}..${pr.match} were lost from its storage after they were ` +
          'synced (a disk that does not honour fsync?); replicating them again.',
      );
      pr.match = 0;
      pr.matchSeq = pr.sendSeq;
      pr.lostSeq = pr.sendSeq;
      pr.becomeProbe();
      pr.next = Math.max(1, Math.min(m.index, nextProbe + 1));
      this.sendAppend(m.from);
      return;
    }
    if (pr.state === ProgressState.Replicate) {
      if (m.index <= pr.match) return; // stale: a later append already matched
      pr.becomeProbe();
    } else if (pr.state === ProgressState.Probe) {
      if (pr.next - 1 !== m.index) return; // stale: not the probe in flight
    } else {
      return;
    }
    pr.next = Math.max(Math.min(m.index, nextProbe + 1), pr.match + 1);
    pr.probeSent = false;
    this.sendAppend(m.from);
  }

  private handleAppend(m: Message): void {
    const r = message(MsgType.AppResp, m.from, this.id, this.term);
    r.ctx = m.ctx; // the leader's number for this append
    if (m.index < this.log.committed) {
      r.index = this.log.committed;
      this.send(r);
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries ?? []);
    if (lastNew >= 0) {
      r.index = lastNew;
      this.refreshVoters(false, m.entries);
    } else {
      const [hint, hintTerm] = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
      r.reject = true;
      r.index = m.index;
      r.hint = hint;
      r.logTerm = hintTerm;
    }
    this.send(r);
  }

  private handleHeartbeat(m: Message): void {
    // The leader sends min(match, commit) and that entry's term: commit only if this log holds that
    // very entry (a log that lost its synced tail, or reverted to older entries, may not).
    if (m.commit > this.log.committed && this.log.matchTerm(m.commit, m.logTerm)) this.log.commitTo(m.commit);
    const r = message(MsgType.HeartbeatResp, m.from, this.id, this.term);
    r.ctx = m.ctx;
    this.send(r);
  }

  private handleSnapshot(m: Message): void {
    const s = m.snapshot!;
    const r = message(MsgType.AppResp, m.from, this.id, this.term);
    r.ctx = m.ctx;
    if (s.index <= this.log.committed) {
      r.index = this.log.committed;
    } else if (this.log.matchTerm(s.index, s.term)) {
      this.log.commitTo(s.index);
      r.index = this.log.lastIndex();
    } else {
      this.log.restore(s);
      this.baseVoters = s.voters;
      this.refreshVoters(true);
      this.pendingSnapshot = s;
      r.index = s.index;
    }
    this.send(r);
  }

  // ---- leader machinery -----------------------------------------------------------------------

  private appendEntry(type: EntryType, data: Uint8Array): number {
    const index = this.log.lastIndex() + 1;
    this.log.entries.push({ term: this.term, index, type, data });
    // Replication happens in bcastAppend after the batch; the leader counts itself once durable.
    this.appendPending = true;
    return index;
  }

  private appendPending = false;

  /** Proposals are replicated when the next Ready is built, so a burst goes out as one append per
   * follower instead of one per proposal. */
  private flushProposals(): void {
    if (this.appendPending && this.role === Role.Leader) this.bcastAppend();
    this.appendPending = false;
  }

  private maybeCommit(): boolean {
    const matches = this.matchScratch;
    matches.length = 0;
    for (const v of this.voters) {
      const p = this.prs.get(v);
      matches.push(p ? p.match : 0);
    }
    const q = majorityIndex(matches);
    // Only entries of the current term commit by counting (Raft §5.4.2, Figure 8).
    if (q > this.log.committed && this.log.term(q) === this.term) {
      this.log.commitTo(q);
      if (this.readsAwaitingCommit.length > 0) {
        const waiting = this.readsAwaitingCommit;
        this.readsAwaitingCommit = [];
        for (const w of waiting) this.leaderRead(w.ctx, w.from);
      }
      return true;
    }
    return false;
  }

  private bcastAppend(): void {
    for (const v of this.voters) if (v !== this.id) this.sendAppendsTo(v);
  }

  /** Fill the pipeline to a follower. */
  private sendAppendsTo(to: number, sendIfEmpty = true): void {
    const pr = this.prs.get(to);
    if (!pr) return;
    let guard = this.cfg.maxInflight + 1;
    while (
      guard-- > 0 &&
      this.sendAppend(to, sendIfEmpty) &&
      pr.state === ProgressState.Replicate &&
      pr.next <= this.log.lastIndex()
    );
  }

  /** Returns true when a message was sent. An empty append only carries the commit index; answers to
   * responses never send one (duplicated responses would otherwise multiply into a message storm). */
  private sendAppend(to: number, sendIfEmpty = true): boolean {
    const pr = this.prs.get(to);
    if (!pr || pr.paused(this.cfg.maxInflight)) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm < 0) {
      const s = this.snapshot;
      if (!s) return false;
      const m = message(MsgType.Snap, to, this.id, this.term);
      m.snapshot = s;
      m.ctx = ++pr.sendSeq;
      pr.state = ProgressState.Snapshot;
      pr.pendingSnapshot = s.index;
      pr.snapElapsed = 0;
      pr.inflights.length = 0;
      this.send(m);
      return true;
    }
    const last = this.log.lastIndex();
    const hi = Math.min(last + 1, pr.next + this.cfg.maxMsgEntries);
    if (hi <= pr.next && !sendIfEmpty && pr.state === ProgressState.Replicate) return false;
    const m = message(MsgType.App, to, this.id, this.term);
    m.index = prevIndex;
    m.logTerm = prevTerm;
    m.commit = this.log.committed;
    m.entries = hi > pr.next ? this.log.slice(pr.next, hi) : [];
    m.ctx = ++pr.sendSeq;
    if (pr.state === ProgressState.Replicate) {
      if (m.entries.length > 0) {
        pr.next = hi;
        pr.inflights.push(hi - 1);
      }
    } else {
      pr.probeSent = true;
    }
    this.send(m);
    return true;
  }

  private sendTimeoutNow(to: number): void {
    this.send(message(MsgType.TimeoutNow, to, this.id, this.term));
  }

  private bcastHeartbeat(ctx: number): void {
    for (const v of this.voters) {
      if (v === this.id) continue;
      const pr = this.prs.get(v)!;
      const m = message(MsgType.Heartbeat, v, this.id, this.term);
      const commit = Math.min(pr.match, this.log.committed);
      const t = this.log.term(commit);
      if (t >= 0) {
        m.commit = commit;
        m.logTerm = t;
      }
      m.ctx = ctx;
      this.send(m);
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    for (const [id, pr] of this.prs) {
      if (pr.state === ProgressState.Snapshot && ++pr.snapElapsed > this.cfg.electionTick) {
        pr.becomeProbe();
        this.sendAppend(id);
      }
    }
    if (this.electionElapsed >= this.cfg.electionTick) {
      this.electionElapsed = 0;
      if (this.cfg.checkQuorum) {
        let active = 0;
        for (const v of this.voters) {
          const p = this.prs.get(v);
          if (v === this.id || p?.recentActive) active++;
          if (p && v !== this.id) p.recentActive = false;
        }
        if (!isQuorum(active, this.voters.size)) {
          this.becomeFollower(this.term, NONE);
          return;
        }
      }
      this.leadTransferee = NONE;
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatTick) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat(this.readSeq);
    }
  }

  private leaderRead(ctx: number, from: number): void {
    if (this.log.term(this.log.committed) !== this.term) {
      this.readsAwaitingCommit.push({ ctx, from });
      return;
    }
    if (this.voters.size === 1) {
      this.answerRead(this.log.committed, ctx, from);
      return;
    }
    this.readSeq++;
    this.pendingReads.push({ seq: this.readSeq, index: this.log.committed, ctx, from });
    this.bcastHeartbeat(this.readSeq);
  }

  /** Releases the reads whose heartbeat round a majority acknowledged (the leader acknowledges its
   * own rounds). */
  private releaseReads(): void {
    if (this.pendingReads.length === 0) return;
    const acks = this.matchScratch;
    acks.length = 0;
    for (const v of this.voters) acks.push(v === this.id ? this.readSeq : (this.prs.get(v)?.readAck ?? 0));
    const confirmed = majorityIndex(acks);
    while (this.pendingReads.length > 0 && this.pendingReads[0].seq <= confirmed) {
      const r = this.pendingReads.shift()!;
      this.answerRead(r.index, r.ctx, r.from);
    }
  }

  private answerRead(index: number, ctx: number, from: number): void {
    if (from === this.id) {
      this.readStates.push({ index, ctx });
      return;
    }
    const m = message(MsgType.ReadIndexResp, from, this.id, this.term);
    m.index = index;
    m.ctx = ctx;
    this.send(m);
  }

  /** The configuration in force at `index`: the latest configuration entry at or before it. */
  private confAt(index: number): number[] {
    for (let i = Math.min(index, this.log.lastIndex()); i > this.log.snapIndex; i--) {
      const e = this.log.entry(i);
      if (e.type === EntryType.Config) return decodeVoters(e.data);
    }
    return this.baseVoters;
  }

  /** Bring `voters` in line with the log after entries were appended or the log was cut. Cheap in the
   * common case: only a new configuration entry, or the loss of the known one, needs a look. */
  private refreshVoters(full: boolean, appended: Entry[] | null = null): void {
    let changed = full || (this.confIndex > 0 && !this.log.matchTerm(this.confIndex, this.confTerm));
    if (!changed && appended) for (const e of appended) if (e.type === EntryType.Config) changed = true;
    if (!changed) return;
    this.confIndex = 0;
    this.confTerm = 0;
    let voters = this.baseVoters;
    for (let i = this.log.lastIndex(); i > this.log.snapIndex; i--) {
      const e = this.log.entry(i);
      if (e.type === EntryType.Config) {
        voters = decodeVoters(e.data);
        this.confIndex = i;
        this.confTerm = e.term;
        break;
      }
    }
    this.setVoters(voters);
  }

  private setVoters(voters: number[]): void {
    const same = voters.length === this.voters.size && voters.every((v) => this.voters.has(v));
    if (same) return;
    this.voters = new Set(voters);
    if (this.role !== Role.Leader) return;
    for (const v of voters) {
      if (!this.prs.has(v)) {
        const p = new Progress(this.log.lastIndex() + 1);
        p.recentActive = true;
        this.prs.set(v, p);
      }
    }
    // A leader that removes itself keeps its own progress (it still replicates) but no longer counts
    // towards quorums, which iterate over `voters`; it steps down once the change is applied.
    for (const id of [...this.prs.keys()]) if (!this.voters.has(id) && id !== this.id) this.prs.delete(id);
    if (this.leadTransferee !== NONE && !this.voters.has(this.leadTransferee)) this.leadTransferee = NONE;
    this.maybeCommit();
    this.releaseReads();
  }

  /** A configuration entry was applied: it has been in force since it was appended; a leader that
   * it removed hands over now that the cluster has committed its own removal. */
  private applyConf(): void {
    if (this.role === Role.Leader && !this.voters.has(this.id)) this.becomeFollower(this.term, NONE);
  }

  private send(m: Message): void {
    this.msgs.push(m);
  }

  private hardChanged(): boolean {
    const h = this.prevHard;
    return h.term !== this.term || h.vote !== this.vote || h.commit !== this.log.committed;
  }

  private softChanged(): boolean {
    const s = this.prevSoft;
    return s.lead !== this.lead || s.role !== this.role || s.term !== this.term;
  }
}
