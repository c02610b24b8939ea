import { EventEmitter } from 'node:events';
import { CellError } from '../../errors/index.js';
import { Raft, type RaftConfig } from '../raft/raft.js';
import {
  type Entry,
  EntryType,
  type HardState,
  type Message,
  MsgType,
  NONE,
  type ReadState,
  type Ready,
  Role,
  roleName,
  type Snapshot,
} from '../raft/types.js';
import type { WalFs } from '../wal/fs.js';
import { Wal, type WalStats } from '../wal/wal.js';
import type { RaftTransport } from './transport.js';

/** The replicated state machine: `apply` runs on every node, in log order, once per committed command. */
export interface StateMachine<R = unknown> {
  apply(cmd: Uint8Array, index: number): R;
  /** The whole state, for snapshots. */
  snapshot(): Uint8Array;
  restore(data: Uint8Array): void;
}

export interface RaftNodeOptions<R> {
  /** This node's id (a positive integer). */
  id: number;
  /** The founding voters (used when the data directory holds no configuration yet). */
  peers: number[];
  /** Data directory for the write-ahead log and snapshots. */
  dir: string;
  stateMachine: StateMachine<R>;
  transport: RaftTransport;
  /** File system for the WAL (the real disk by default; SimDisk in tests). */
  fs?: WalFs;
  /** Milliseconds per Raft tick (default 10). */
  tickMs?: number;
  /** Election timeout in ticks, randomized in [n, 2n) (default 20). */
  electionTick?: number;
  /** Heartbeat interval in ticks (default 2). */
  heartbeatTick?: number;
  /** Take a snapshot and compact the log every this many applied entries (default 10 000). */
  snapshotEvery?: number;
  /** Entries kept behind a snapshot so slow followers catch up without one (default 1 000). */
  snapshotKeep?: number;
  /** A read that has not become safe within this time fails with E_TIMEOUT (default 2 s). */
  readTimeoutMs?: number;
  /** Proposals beyond this many uncommitted entries fail with E_OVERLOADED (default 65 536). */
  maxUncommittedEntries?: number;
  /** WAL segment size (default 64 MiB). */
  segmentBytes?: number;
  /** Name used in error messages. */
  cell?: string;
  /** Where the node's time comes from (Node's timers by default; the simulator passes a virtual clock). */
  timers?: RaftTimers;
  /** Randomness for the election timeout (Math.random by default; the simulator passes a seeded PRNG). */
  random?: () => number;
  /** Core settings beyond the defaults (pre-vote and check-quorum on, 4096 entries per append, 64
   * appends in flight); the simulator varies them per seed. */
  core?: Partial<Pick<RaftConfig, 'preVote' | 'checkQuorum' | 'maxMsgEntries' | 'maxInflight' | 'maxApplyEntries'>>;
}

/** The timers a RaftNode uses: its tick, read timeouts, and the turn it yields between Readies. */
export interface RaftTimers {
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** Runs `fn` after pending I/O (a later turn of the event loop). */
  setImmediate(fn: () => void): void;
}

const isConfig = (e: Entry): boolean => e.type === EntryType.Config;
/** An append without entries: it only tells a follower the leader's commit index. */
const commitOnly = (m: Message): boolean => m.type === MsgType.App && (m.entries?.length ?? 0) === 0;

const nodeTimers: RaftTimers = {
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  setImmediate: (fn) => {
    setImmediate(fn);
  },
};

export interface LeaderEvent {
  leader: number;
  term: number;
  role: 'follower' | 'pre-candidate' | 'candidate' | 'leader';
}

/** A snapshot stored: taken locally (and the log compacted), or installed from the leader. */
export interface SnapshotEvent {
  index: number;
  installed: boolean;
}

export interface RaftNodeStats {
  /** Entries applied to the state machine. */
  applied: number;
  /** Iterations of the Ready loop. */
  readies: number;
  wal: WalStats;
}

interface PendingProposal<R> {
  term: number;
  resolve: (r: R) => void;
  reject: (e: Error) => void;
}

interface ReadWaiter {
  resolve: () => void;
  reject: (e: Error) => void;
}

interface ReadBatch {
  ctx: number;
  index: number;
  waiters: ReadWaiter[];
  timer: unknown;
}

/**
 * One member of a Raft group: drives the deterministic core's Ready loop — send, persist (one WAL
 * batch, one fdatasync per iteration) while applying what was already committed, send what had to
 * wait for the write, advance — on a tick timer. Proposals that arrive while a sync is in flight are
 * appended together and ride the next sync (group commit).
 *
 * Events: 'leader' (LeaderEvent) on every leader or role change; 'membership' (voters: number[]) when
 * a configuration entry is applied; 'snapshot' (SnapshotEvent); 'warning' (string) when the core finds
 * that a node's storage lost entries it had synced (it repairs them; without a listener the message
 * becomes a process warning); 'fatal' (CellError) when the WAL fails — the node has stopped.
 */
export class RaftNode<R = unknown> extends EventEmitter {
  readonly id: number;
  private readonly raft: Raft;
  private readonly wal: Wal;
  private readonly sm: StateMachine<R>;
  private readonly transport: RaftTransport;
  private readonly opts: RaftNodeOptions<R>;
  private readonly proposals = new Map<number, PendingProposal<R>>();
  private readonly confWaiters = new Map<number, PendingProposal<void>>();
  private readQueue: ReadWaiter[] = [];
  private readonly reads = new Map<number, ReadBatch>();
  /** Reads whose index is known, waiting for apply to reach it. */
  private readsAwaitingApply: ReadBatch[] = [];
  private readCtx = 0;
  private ticker: unknown = null;
  private readonly timers: RaftTimers;
  private running = false;
  private again = false;
  /** A Ready's WAL write is in flight. */
  private writing = false;
  private earlyScheduled = false;
  /** A leader's appends that only carry a new commit index, held for its next send (see send()). */
  private held: Message[] = [];
  private stopped: CellError | null = null;
  private loopDone: Promise<void> = Promise.resolve();
  private appliedIndex = 0;
  private snapIndex = 0;
  private latestHard: HardState;
  private leaderId = NONE;
  private currentRole: Role = Role.Follower;
  readonly stats: RaftNodeStats;

  private constructor(opts: RaftNodeOptions<R>, wal: Wal, raft: Raft, hard: HardState, snapIndex: number) {
    super();
    this.opts = opts;
    this.id = opts.id;
    this.sm = opts.stateMachine;
    this.transport = opts.transport;
    this.timers = opts.timers ?? nodeTimers;
    this.wal = wal;
    this.raft = raft;
    this.latestHard = hard;
    this.snapIndex = snapIndex;
    this.appliedIndex = snapIndex;
    // Read numbers start at random: a ReadIndex answer still in flight for the previous incarnation
    // of this node must not release a read of this one (it would carry an older read index).
    this.readCtx = Math.floor((opts.random ?? Math.random)() * 2 ** 31);
    this.stats = { applied: 0, readies: 0, wal: wal.stats };
  }

  /** Recovers the node from `dir` (WAL + newest snapshot), starts its transport and ticker. */
  static async open<R>(opts: RaftNodeOptions<R>): Promise<RaftNode<R>> {
    if (!Number.isInteger(opts.id) || opts.id <= 0) {
      throw new CellError('E_INVALID_ARGUMENT', `raft node id must be a positive integer, got ${opts.id}.`);
    }
    const { wal, state } = await Wal.open({
      dir: opts.dir,
      ...(opts.fs ? { fs: opts.fs } : {}),
      ...(opts.segmentBytes ? { segmentBytes: opts.segmentBytes } : {}),
      ...(opts.cell ? { cell: opts.cell } : {}),
    });
    if (state.snapshot) opts.stateMachine.restore(state.snapshot.data);
    // Warnings raised while the core recovers are emitted once the caller could have listened.
    let node: RaftNode<R> | undefined;
    const early: string[] = [];
    const warn = (message: string): void => {
      if (node) node.warn(message);
      else early.push(message);
    };
    const raft = new Raft(
      {
        id: opts.id,
        peers: opts.peers,
        electionTick: opts.electionTick ?? 20,
        heartbeatTick: opts.heartbeatTick ?? 2,
        preVote: true,
        checkQuorum: true,
        maxMsgEntries: 4096,
        maxInflight: 64,
        ...opts.core,
        maxUncommittedEntries: opts.maxUncommittedEntries ?? 65_536,
        random: opts.random ?? Math.random,
        warn,
      },
      { hardState: state.hardState, snapshot: state.snapshot, entries: state.entries },
    );
    node = new RaftNode<R>(opts, wal, raft, state.hardState, state.snapshot?.index ?? 0);
    if (early.length > 0) {
      const n = node;
      n.timers.setImmediate(() => {
        for (const m of early) n.warn(m);
      });
    }
    await opts.transport.start(opts.id, (msgs) => node.receive(msgs));
    node.ticker = node.timers.setInterval(() => node.tick(), opts.tickMs ?? 10);
    node.wake();
    return node;
  }

  private yieldToIo(): Promise<void> {
    return new Promise((resolve) => this.timers.setImmediate(resolve));
  }

  /** The Raft core this node runs, for tests and the simulator to inspect (never to drive). */
  get core(): Raft {
    return this.raft;
  }

  /** The leader this node knows of (0: none). */
  get leader(): number {
    return this.leaderId;
  }

  get isLeader(): boolean {
    return this.currentRole === Role.Leader;
  }

  get term(): number {
    return this.raft.term;
  }

  get voters(): number[] {
    return [...this.raft.voters].sort((a, b) => a - b);
  }

  /** Index of the last entry applied to the state machine. */
  get applied(): number {
    return this.appliedIndex;
  }

  private notLeader(): CellError {
    const lead = this.raft.lead;
    return new CellError(
      'E_NOT_LEADER',
      lead === NONE
        ? `raft node ${this.id} is not the leader and knows of none (election in progress).`
        : `raft node ${this.id} is not the leader; node ${lead} is.`,
      {
        ...(this.opts.cell ? { cell: this.opts.cell } : {}),
        fix: lead === NONE ? 'retry after a short wait.' : `send the request to node ${lead}.`,
        details: { leader: lead },
      },
    );
  }

  /**
   * Replicates `cmd` and resolves with the state machine's result once it is committed and applied
   * here. Rejects with E_NOT_LEADER (details.leader = the leader hint) on a follower, or when the
   * entry was overwritten by a new leader.
   */
  propose(cmd: Uint8Array): Promise<R> {
    if (this.stopped) return Promise.reject(this.stopped);
    if (cmd.byteLength === 0) {
      return Promise.reject(new CellError('E_INVALID_ARGUMENT', 'raft: an empty command cannot be proposed.'));
    }
    const index = this.raft.propose(cmd);
    if (index === 0) {
      if (this.raft.role === Role.Leader && this.raft.leadTransferee === NONE) {
        return Promise.reject(
          new CellError(
            'E_OVERLOADED',
            `raft node ${this.id}: too many uncommitted entries (followers not keeping up).`,
            {
              ...(this.opts.cell ? { cell: this.opts.cell } : {}),
              fix: 'retry later; check that a quorum of nodes is up.',
            },
          ),
        );
      }
      return Promise.reject(this.notLeader());
    }
    return new Promise<R>((resolve, reject) => {
      this.proposals.set(index, { term: this.raft.term, resolve, reject });
      this.wake();
    });
  }

  /**
   * Resolves once this node's state machine reflects every write committed before the call
   * (ReadIndex): read the state machine right after. Concurrent calls share one quorum round.
   */
  read(): Promise<void> {
    if (this.stopped) return Promise.reject(this.stopped);
    if (this.raft.lead === NONE) return Promise.reject(this.notLeader());
    return new Promise<void>((resolve, reject) => {
      this.readQueue.push({ resolve, reject });
      if (this.reads.size === 0) this.issueRead();
    });
  }

  private issueRead(): void {
    if (this.readQueue.length === 0) return;
    const waiters = this.readQueue;
    this.readQueue = [];
    const ctx = ++this.readCtx;
    if (!this.raft.readIndex(ctx)) {
      const err = this.notLeader();
      for (const w of waiters) w.reject(err);
      return;
    }
    const timer = this.timers.setTimeout(() => this.failRead(ctx), this.opts.readTimeoutMs ?? 2000);
    this.reads.set(ctx, { ctx, index: -1, waiters, timer });
    this.wake();
  }

  private failRead(ctx: number): void {
    const b = this.reads.get(ctx);
    if (!b) return;
    this.reads.delete(ctx);
    this.readsAwaitingApply = this.readsAwaitingApply.filter((x) => x !== b);
    const err = new CellError(
      'E_TIMEOUT',
      `raft node ${this.id}: read did not become safe in time (leader unreachable?).`,
      {
        fix: 'retry; if it persists, check that a quorum of nodes is up.',
      },
    );
    for (const w of b.waiters) w.reject(err);
    this.issueRead();
  }

  private finishRead(b: ReadBatch): void {
    this.timers.clearTimeout(b.timer);
    this.reads.delete(b.ctx);
    for (const w of b.waiters) w.resolve();
  }

  transferLeadership(to: number): boolean {
    const ok = this.raft.transferLeadership(to);
    this.wake();
    return ok;
  }

  /** Adds a voter (one at a time); resolves when the change is applied here. */
  addNode(id: number): Promise<void> {
    const v = new Set(this.raft.voters);
    v.add(id);
    return this.changeVoters([...v].sort((a, b) => a - b));
  }

  removeNode(id: number): Promise<void> {
    const v = new Set(this.raft.voters);
    v.delete(id);
    return this.changeVoters([...v].sort((a, b) => a - b));
  }

  private changeVoters(voters: number[]): Promise<void> {
    if (this.stopped) return Promise.reject(this.stopped);
    if (!this.isLeader) return Promise.reject(this.notLeader());
    const index = this.raft.proposeConfChange(voters);
    if (index === 0) {
      return Promise.reject(
        new CellError('E_INVALID_ARGUMENT', 'raft: a membership change is already pending.', {
          fix: 'wait for it to be applied, then retry.',
        }),
      );
    }
    return new Promise<void>((resolve, reject) => {
      this.confWaiters.set(index, { term: this.raft.term, resolve, reject });
      this.wake();
    });
  }

  private receive(msgs: Message[]): void {
    if (this.stopped) return;
    for (const m of msgs) if (m.to === this.id) this.raft.step(m);
    this.wake();
  }

  private tick(): void {
    if (this.stopped) return;
    this.raft.tick();
    this.wake();
  }

  private wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      // Only a leader has early messages: a follower would schedule a turn per batch for nothing.
      if (this.writing && !this.earlyScheduled && this.raft.role === Role.Leader) {
        // Once the callers of this turn have proposed: one append per follower for all of them.
        this.earlyScheduled = true;
        this.timers.setImmediate(() => this.sendEarly());
      }
      return;
    }
    this.running = true;
    this.loopDone = this.loop();
  }

  /** A leader replicates what arrived while its own WAL write is in flight instead of waiting for the
   * write (and the next Ready): the followers' fsyncs overlap its own. */
  private sendEarly(): void {
    this.earlyScheduled = false;
    if (this.stopped || !this.writing) return;
    this.send(this.raft.earlyMessages());
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.again = false;
        while (!this.stopped && this.raft.hasReady()) {
          await this.handleReady();
          // Let the callers just resolved by apply propose again (and pending socket reads step in)
          // before the next Ready is cut, so they share its batch and its fsync.
          await this.yieldToIo();
        }
      } while (this.again && !this.stopped);
      this.sendHeld();
      // Nothing is left to answer what was delivered: replies held open for it go back empty.
      const t = this.transport;
      if (t.mark && t.settle) t.settle(t.mark());
    } catch (err) {
      this.fatal(err);
    } finally {
      this.running = false;
    }
  }

  private async handleReady(): Promise<void> {
    const rd = this.raft.ready();
    const mark = this.transport.mark?.() ?? 0;
    this.stats.readies++;
    if (rd.snapshot) await this.installSnapshot(rd.snapshot);
    if (rd.hardState) this.latestHard = rd.hardState;
    // The core says what may leave before the write (a leader's appends and heartbeats: Raft thesis
    // §10.2.1) and what must wait for it; a commit-index change alone is not synced.
    this.send(rd.messages);
    // Committed entries are durable here (the core hands out none beyond its stabled index) and on a
    // quorum: apply them and release their callers while this Ready's own write is in flight, so an
    // acknowledgement never waits for an unrelated fsync. Not with a configuration entry among them:
    // its caller may propose the next change, which the core accepts only after advance().
    const early = !rd.committedEntries.some(isConfig);
    const write = rd.mustSync ? this.wal.append(rd.entries, this.latestHard) : null;
    // Awaited below; if apply throws first, a later WAL failure must not surface as unhandled.
    write?.catch(() => {});
    if (early) this.applyReady(rd);
    if (write) {
      this.writing = true;
      try {
        await write;
      } finally {
        this.writing = false;
      }
    }
    this.send(rd.messagesAfterSync);
    if (!early) this.applyReady(rd);
    // Every message this Ready owed its senders is out (acknowledgements only after the write above).
    this.transport.settle?.(mark);
    const soft = rd.softState;
    this.raft.advance();
    if (soft) this.onSoftState(soft.lead, soft.role, soft.term);
    if (this.currentRole !== Role.Leader && (this.proposals.size > 0 || this.confWaiters.size > 0))
      this.dropTruncated();
    for (const e of rd.committedEntries) {
      if (e.type === EntryType.Config) this.emit('membership', this.voters);
    }
    // Not while a snapshot from the leader is being installed: the next applied batch tries again.
    if (this.appliedIndex - this.snapIndex >= (this.opts.snapshotEvery ?? 10_000) && this.raft.canCompact()) {
      await this.takeSnapshot();
    }
  }

  /**
   * A leader's appends without entries only tell the followers a new commit index. While callers
   * wait on proposals, they are about to be released (by this Ready's apply or the next) and to
   * propose again in the same turn, so such appends are held and go out in the same call per
   * follower as the next messages (the new entries' appends carry the commit index too) instead of
   * a call of their own. A message may be delayed anyway (Raft assumes nothing about delivery time);
   * held appends go out with the next send, a heartbeat's included, or when the loop goes idle.
   */
  private send(msgs: readonly Message[]): void {
    if (msgs.length === 0) return;
    if (this.proposals.size > 0 && this.raft.role === Role.Leader && msgs.every(commitOnly)) {
      for (const m of msgs) this.held.push(m);
      return;
    }
    this.transport.send(this.held.length > 0 ? this.takeHeld().concat(msgs) : msgs);
  }

  private takeHeld(): Message[] {
    const held = this.held;
    this.held = [];
    return held;
  }

  private sendHeld(): void {
    if (this.held.length > 0 && !this.stopped) this.transport.send(this.takeHeld());
  }

  private applyReady(rd: Ready): void {
    for (const e of rd.committedEntries) this.applyEntry(e);
    this.serveReads(rd.readStates);
  }

  private async installSnapshot(s: Snapshot): Promise<void> {
    await this.wal.saveSnapshot(s);
    this.sm.restore(s.data);
    this.appliedIndex = s.index;
    this.snapIndex = s.index;
    this.emit('snapshot', { index: s.index, installed: true } satisfies SnapshotEvent);
  }

  /** Applies one committed entry and settles the proposal or membership change waiting on its index. */
  private applyEntry(e: Entry): void {
    if (e.index <= this.appliedIndex) return;
    this.appliedIndex = e.index;
    this.stats.applied++;
    const p = this.proposals.get(e.index);
    // Only a normal entry with a command settles its proposal after apply; anything else at its index
    // means the proposal was overwritten.
    if (p && (e.type !== EntryType.Normal || e.data.byteLength === 0)) this.proposals.delete(e.index);
    if (e.type !== EntryType.Normal) {
      const c = this.confWaiters.get(e.index);
      if (c) {
        this.confWaiters.delete(e.index);
        if (c.term === e.term) c.resolve();
        else c.reject(this.lostProposal(e.index));
      }
      p?.reject(this.lostProposal(e.index));
      return;
    }
    // The leader's no-op: a proposal waiting at its index was overwritten.
    if (e.data.byteLength === 0) {
      p?.reject(this.lostProposal(e.index));
      return;
    }
    let result: R;
    try {
      result = this.sm.apply(e.data, e.index);
    } catch (err) {
      // The state machine must be deterministic; a throwing apply would diverge the replicas.
      throw new CellError(
        'E_INTERNAL',
        `raft node ${this.id}: state machine apply failed at index ${e.index}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    if (!p) return;
    this.proposals.delete(e.index);
    if (p.term === e.term) p.resolve(result);
    else p.reject(this.lostProposal(e.index));
  }

  /** Reads whose index is known are released once apply has reached it (ReadIndex). */
  private serveReads(readStates: readonly ReadState[]): void {
    for (const rs of readStates) {
      const b = this.reads.get(rs.ctx);
      if (!b) continue;
      b.index = rs.index;
      if (rs.index <= this.appliedIndex) this.finishRead(b);
      else this.readsAwaitingApply.push(b);
    }
    if (this.readsAwaitingApply.length > 0) {
      const still: ReadBatch[] = [];
      for (const b of this.readsAwaitingApply) {
        if (b.index <= this.appliedIndex) this.finishRead(b);
        else still.push(b);
      }
      this.readsAwaitingApply = still;
    }
    if (this.reads.size === 0 && this.readQueue.length > 0) this.issueRead();
  }

  /**
   * A deposed leader's uncommitted entries are cut when the new leader's log reaches them, or never if
   * it does not grow that far: fail the proposals whose entry is gone or now has another term, instead
   * of leaving them pending until the log happens to reach their index.
   */
  private dropTruncated(): void {
    const log = this.raft.log;
    const last = log.lastIndex();
    for (const waiters of [this.proposals, this.confWaiters] as Map<number, PendingProposal<unknown>>[]) {
      for (const [index, p] of waiters) {
        if (index <= this.appliedIndex) continue;
        if (index > last || log.term(index) !== p.term) {
          waiters.delete(index);
          p.reject(this.lostProposal(index));
        }
      }
    }
  }

  private lostProposal(index: number): CellError {
    return new CellError(
      'E_NOT_LEADER',
      `raft node ${this.id}: the entry at index ${index} was replaced by a new leader's; the command was not applied.`,
      {
        fix: 'retry against the current leader.',
        details: { leader: this.raft.lead },
      },
    );
  }

  private onSoftState(lead: number, role: Role, term: number): void {
    const wasLeader = this.currentRole === Role.Leader;
    this.leaderId = lead;
    this.currentRole = role;
    if (wasLeader && role !== Role.Leader) {
      // Reads in flight on a deposed leader will never be confirmed by a quorum.
      const err = this.notLeader();
      for (const b of [...this.reads.values()]) {
        this.timers.clearTimeout(b.timer);
        for (const w of b.waiters) w.reject(err);
      }
      this.reads.clear();
      this.readsAwaitingApply = [];
    }
    this.emit('leader', { leader: lead, term, role: roleName[role] } satisfies LeaderEvent);
  }

  private async takeSnapshot(): Promise<void> {
    const data = this.sm.snapshot();
    const s = this.raft.compact(data, this.opts.snapshotKeep ?? 1000);
    this.snapIndex = s.index;
    await this.wal.saveSnapshot(s);
    this.emit('snapshot', { index: s.index, installed: false } satisfies SnapshotEvent);
  }

  /** The core saw storage misbehave (see RaftConfig.warn): a 'warning' event, or a process warning
   * when nobody listens. */
  private warn(message: string): void {
    const text = this.opts.cell ? `${this.opts.cell}: ${message}` : message;
    if (this.listenerCount('warning') > 0) this.emit('warning', text);
    else process.emitWarning(text, { type: 'RaftWarning' });
  }

  private fatal(err: unknown): void {
    const e =
      err instanceof CellError
        ? err
        : new CellError('E_INTERNAL', `raft node ${this.id}: ${(err as Error).message}`, { cause: err });
    this.stop(e);
    this.emit('fatal', e);
  }

  private stop(err: CellError): void {
    if (this.stopped) return;
    this.stopped = err;
    if (this.ticker !== null) this.timers.clearInterval(this.ticker);
    this.ticker = null;
    for (const p of this.proposals.values()) p.reject(err);
    this.proposals.clear();
    for (const p of this.confWaiters.values()) p.reject(err);
    this.confWaiters.clear();
    for (const b of this.reads.values()) {
      this.timers.clearTimeout(b.timer);
      for (const w of b.waiters) w.reject(err);
    }
    this.reads.clear();
    for (const w of this.readQueue) w.reject(err);
    this.readQueue = [];
  }

  /** Whether the node stopped (closed, or after a fatal WAL error). */
  get closed(): boolean {
    return this.stopped !== null;
  }

  /** Stops ticking, fails pending calls with E_CLOSED, closes the transport and the WAL. */
  async close(): Promise<void> {
    this.stop(new CellError('E_CLOSED', `raft node ${this.id} is closed.`));
    await this.loopDone.catch(() => {});
    await this.transport.close();
    await this.wal.close();
  }
}
