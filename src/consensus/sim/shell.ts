import type { CheckResult } from '../linearizability/index.js';
import { RaftNode, type RaftTimers, type StateMachine } from '../node/node.js';
import type { RaftTransport } from '../node/transport.js';
import { Role } from '../raft/types.js';
import type { WalFile, WalFs } from '../wal/fs.js';
import { checkHistory, SafetyChecker } from './checkers.js';
import { EventKind, mix, Scheduler, type SimEvent } from './events.js';
import { SimNetwork } from './network.js';
import { applyToSm, decodeSm, emptySm, encodeSm, SimNode } from './node.js';
import { Prng } from './prng.js';
import { type LostTailReport, pickSwarm, SimFailure, type Swarm } from './swarm.js';
import { cutWalTail } from './tail.js';
import { Workload } from './workload.js';

/**
 * The deterministic simulation of the shell itself: every node is a real `RaftNode` — its Ready loop,
 * its WAL on a `SimDisk` (whose fdatasyncs take virtual time and whose crashes lose or tear unsynced
 * writes), its timers on the virtual clock — over the simulated network (delay, loss, duplication,
 * partitions), with crashes, restarts, pauses, clock skew, leadership transfers and membership changes,
 * and clients going through `propose()` and `read()`. The Raft safety invariants (checkers.ts) are
 * checked after every event and the client history for linearizability at the end; a violation throws
 * with the seed. Same seed, same history: nothing here reads the real clock, and every promise chain
 * settles between two events.
 */

export interface ShellSimOptions {
  seed: number;
  /** Virtual milliseconds of faults before the liveness phase. */
  faultMs: number;
  /** Virtual milliseconds the healed cluster gets to converge. */
  livenessMs: number;
  /** Budget for the linearizability check of the recorded history (default 5000). */
  checkTimeoutMs?: number;
  /** Deliberately broken client behaviour, to show the checks catch it: 'stale-reads' serves reads
   * from any node's local state without ReadIndex. */
  sabotage?: 'stale-reads';
  /** A scenario instead of the random faults: the network neither drops nor partitions, and at `atMs`
   * a follower of the leader crashes and restarts at once with the WAL batches holding the last
   * `entries` entries of its log gone — entries it had synced and acknowledged, as a disk that lies
   * about fsync loses them. See `lostTailReport`. */
  lostTail?: { atMs: number; entries: number };
  /** Overrides the swarm's snapshot interval (in applied entries); Infinity: no snapshots, so a lagging
   * follower can only be caught up from the log. */
  snapshotEvery?: number;
}

export interface ShellSimResult {
  seed: number;
  events: number;
  traceHash: number;
  commits: number;
  acked: number;
  reads: number;
  leaders: number;
  crashes: number;
  pauses: number;
  membershipChanges: number;
  historyOps: number;
  linearizability: CheckResult | 'skipped';
  /** Virtual ms from healing until a write was acknowledged. */
  recoveryMs: number;
  /** Virtual ms from healing until every voter had applied every acknowledged write. */
  convergedMs: number;
}

const TICK_MS = 10;
const DIR = '/data';

interface Handle {
  cancelled: boolean;
}

/** Lets every promise chain that the last event started run to its end (no real I/O is involved). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class ShellSim {
  readonly rng: Prng;
  readonly swarm: Swarm;
  readonly nodes: SimNode[] = [];
  private readonly clock = new Scheduler();
  private readonly net: SimNetwork;
  private readonly checker: SafetyChecker;
  private readonly workload: Workload;
  private failure: Error | null = null;
  private trace = 0;
  private events = 0;
  private crashes = 0;
  private pauses = 0;
  private membershipChanges = 0;
  private linearizability: CheckResult | 'skipped' = 'skipped';
  /** Nodes whose RaftNode is being opened (recovering its WAL): not to be started twice. */
  private readonly starting = new Set<number>();
  /** Writes acknowledged before healing: liveness needs one more. */
  private ackedAtHeal = 0;
  private recoveryMs = -1;
  /** 'warning' events of the RaftNodes, with the virtual time. */
  readonly warnings: string[] = [];
  lostTailReport: LostTailReport | null = null;

  constructor(readonly opts: ShellSimOptions) {
    this.rng = new Prng(opts.seed);
    this.swarm = pickSwarm(this.rng);
    if (opts.snapshotEvery !== undefined) this.swarm.snapshotEvery = opts.snapshotEvery;
    const fail = (what: string): never => this.fail(what);
    this.net = new SimNetwork(this.rng, this.swarm, (delay, to, m) =>
      this.clock.schedule(delay, EventKind.Deliver, to, m),
    );
    // A RaftNode applies what its core has made durable: its stabled index bounds what it applies.
    this.checker = new SafetyChecker(fail, (n) => Math.max(n.core.log.stabled, n.core.log.snapIndex));
    this.workload = new Workload(this.rng, opts.sabotage === 'stale-reads', fail);
    for (let i = 1; i <= this.swarm.nodes; i++) {
      const n = new SimNode(i);
      n.up = false;
      n.skew = 0.8 + this.rng.next() * 0.4;
      this.nodes.push(n);
      this.boot(n);
    }
  }

  describe(): string {
    return JSON.stringify(this.swarm);
  }

  /** The clients' history (puts and reads), as checked for linearizability. */
  get history() {
    return this.workload.history;
  }

  /** Records the first failure (it may be raised inside a RaftNode callback, which would swallow it)
   * and throws it. */
  private fail(what: string): never {
    const e = new SimFailure(`seed ${this.opts.seed} at t=${this.clock.now}ms: ${what}`);
    this.failure ??= e;
    throw e;
  }

  private node(id: number): SimNode {
    return this.nodes[id - 1];
  }

  async run(): Promise<ShellSimResult> {
    await settle();
    this.clock.schedule(1, EventKind.Propose, 0, null);
    this.clock.schedule(1, EventKind.Read, 0, null);
    if (this.opts.lostTail) {
      this.net.faults = false;
      this.clock.schedule(this.opts.lostTail.atMs, EventKind.LoseTail, 0, null);
    } else {
      this.clock.schedule(this.swarm.nemesisEveryMs, EventKind.Nemesis, 0, null);
    }
    await this.runUntil(this.opts.faultMs, () => false);
    this.heal();
    const healedAt = this.clock.now;
    this.ackedAtHeal = this.workload.commits;
    const done = await this.runUntil(healedAt + this.opts.livenessMs, () => this.converged(healedAt));
    if (!done) this.fail(`liveness: no convergence within ${this.opts.livenessMs}ms after healing; ${this.status()}`);
    this.finalChecks();
    const w = this.workload;
    return {
      seed: this.opts.seed,
      events: this.events,
      traceHash: this.trace,
      commits: w.commits,
      acked: w.acked.size,
      reads: w.reads,
      leaders: this.checker.leaders,
      crashes: this.crashes,
      pauses: this.pauses,
      membershipChanges: this.membershipChanges,
      historyOps: w.history.length,
      linearizability: this.linearizability,
      recoveryMs: this.recoveryMs,
      convergedMs: this.clock.now - healedAt,
    };
  }

  /** Runs events up to `until`, checking the invariants after each; true once `stop()` holds. */
  private async runUntil(until: number, stop: () => boolean): Promise<boolean> {
    for (let e = this.clock.next(until); e; e = this.clock.next(until)) {
      this.events++;
      this.trace = mix(mix(mix(this.trace, e.kind), e.node), e.at | 0);
      try {
        this.dispatch(e);
        await settle();
        if (this.failure) throw this.failure;
        this.checker.afterEvent(this.nodes);
      } catch (err) {
        throw this.failure ?? err;
      }
      this.watchLostTail();
      if (stop()) return true;
    }
    return false;
  }

  private dispatch(e: SimEvent): void {
    switch (e.kind) {
      case EventKind.Timer:
        e.fn!();
        break;
      case EventKind.Deliver: {
        const n = this.node(e.node);
        const msg = e.msg!;
        if (n.up) this.onNode(n, n.incarnation, () => n.deliver?.([msg]));
        break;
      }
      case EventKind.Propose:
        if (this.workload.stopped) break;
        this.workload.putThroughShell(this.nodes, this.clock.now);
        this.clock.schedule(this.rng.int(1, this.swarm.proposeEveryMs), EventKind.Propose, 0, null);
        break;
      case EventKind.Read:
        if (this.workload.stopped) break;
        this.workload.readThroughShell(this.nodes, this.clock.now);
        this.clock.schedule(this.rng.int(1, this.swarm.readEveryMs), EventKind.Read, 0, null);
        break;
      case EventKind.Nemesis:
        if (!this.net.faults) break;
        this.nemesis();
        this.clock.schedule(this.rng.int(1, this.swarm.nemesisEveryMs * 2), EventKind.Nemesis, 0, null);
        break;
      case EventKind.Restart: {
        const n = this.node(e.node);
        if (!n.up && !this.starting.has(n.id)) this.boot(n);
        break;
      }
      case EventKind.Unpause: {
        const n = this.node(e.node);
        if (n.paused && n.incarnation === e.inc) this.unpause(n);
        break;
      }
      case EventKind.LoseTail:
        this.loseTail().catch((err: Error) => {
          this.failure ??= err;
        });
        break;
    }
  }

  /** Runs `fn` in node `n`'s process now or, while the process is paused, when it resumes; never in a
   * later incarnation. */
  private onNode(n: SimNode, inc: number, fn: () => void): void {
    if (n.incarnation !== inc) return;
    if (n.paused) n.heldCalls.push(fn);
    else fn();
  }

  // ---- one node: a RaftNode on a simulated disk, virtual timers and the simulated network --------

  /** Opens the node's RaftNode from what its disk holds; it is up once its WAL is recovered. */
  private boot(n: SimNode): void {
    const inc = n.incarnation;
    const rr = this.rng.fork();
    this.starting.add(n.id);
    RaftNode.open({
      id: n.id,
      // Founding voters start with the initial configuration; a spare node learns its own from the
      // leader once it is added.
      peers: n.id <= this.swarm.initialVoters ? Array.from({ length: this.swarm.initialVoters }, (_, i) => i + 1) : [],
      dir: DIR,
      stateMachine: this.stateMachine(n),
      transport: this.transport(n, inc),
      fs: this.slowDisk(n, inc),
      timers: this.timers(n, inc),
      random: () => rr.next(),
      tickMs: TICK_MS,
      electionTick: 10,
      heartbeatTick: 2,
      snapshotEvery: this.swarm.snapshotEvery,
      snapshotKeep: 5,
      readTimeoutMs: 1000,
      maxUncommittedEntries: 256,
      core: {
        preVote: this.swarm.preVote,
        checkQuorum: this.swarm.checkQuorum,
        maxMsgEntries: this.swarm.maxMsgEntries,
        maxInflight: this.swarm.maxInflight,
        maxApplyEntries: 64,
      },
    }).then(
      (node) => this.started(n, inc, node),
      (e: Error) => {
        if (n.incarnation !== inc) return;
        this.starting.delete(n.id);
        this.fail(`node ${n.id} failed to start: ${e.message}`);
      },
    );
  }

  private started(n: SimNode, inc: number, node: RaftNode): void {
    if (n.incarnation !== inc) {
      void node.close().catch(() => {});
      return;
    }
    this.starting.delete(n.id);
    node.on('warning', (w: string) => {
      this.warnings.push(`t=${this.clock.now}ms ${w}`);
      // The simulated disk keeps everything it synced (only unsynced writes are lost or torn), so
      // outside the lostTail scenario a report of lost synced entries is a false alarm.
      if (!this.opts.lostTail) this.fail(`storage loss reported, but no synced write was lost: ${w}`);
    });
    node.on('fatal', (e: Error) => this.fail(`node ${n.id} stopped: ${e.message}`));
    n.shell = node;
    n.core = node.core;
    n.up = true;
    n.commitSeen = node.core.log.snapIndex;
    n.lastCommit = node.core.log.committed;
  }

  private stateMachine(n: SimNode): StateMachine<unknown> {
    n.sm = emptySm();
    return {
      apply: (cmd, index) => {
        this.checker.checkCommand(n, index, cmd);
        applyToSm(n.sm, { index, term: 0, type: 0, data: cmd });
        this.checker.checkSmAt(n, 'apply');
        return undefined;
      },
      snapshot: () => encodeSm(n.sm),
      restore: (data) => {
        n.sm = decodeSm(data);
        this.checker.checkSmAt(n, 'restore');
      },
    };
  }

  private transport(n: SimNode, inc: number): RaftTransport {
    return {
      start: async (_id, deliver) => {
        if (n.incarnation === inc) n.deliver = deliver;
      },
      send: (msgs) => {
        if (n.incarnation !== inc) return;
        for (const m of msgs) this.net.send(m);
      },
      close: async () => {},
    };
  }

  /** The node's SimDisk, with each fdatasync and directory fsync taking a random virtual latency
   * before it makes anything durable (a crash meanwhile loses or tears the write; a pause delays its
   * completion until the process resumes). */
  private slowDisk(n: SimNode, inc: number): WalFs {
    const disk = n.fs;
    const latency = (): Promise<void> =>
      new Promise((resolve) =>
        this.clock.after(this.rng.int(this.swarm.diskMin, this.swarm.diskMax), n.id, () =>
          this.onNode(n, inc, resolve),
        ),
      );
    return {
      mkdirp: (d) => disk.mkdirp(d),
      list: (d) => disk.list(d),
      readFile: (p) => disk.readFile(p),
      truncate: (p, len) => disk.truncate(p, len),
      rename: (a, b) => disk.rename(a, b),
      unlink: (p) => disk.unlink(p),
      fsyncDir: async (d) => {
        await latency();
        await disk.fsyncDir(d);
      },
      openAppend: async (p, create): Promise<WalFile> => {
        const f = await disk.openAppend(p, create);
        return {
          write: (data) => f.write(data),
          datasync: async () => {
            await latency();
            await f.datasync();
          },
          close: () => f.close(),
        };
      },
    };
  }

  /** Virtual timers for one incarnation: they stop at a crash, wait out a pause (an interval fires
   * once on resume, as a stopped process's would), and the tick runs at the node's skew. */
  private timers(n: SimNode, inc: number): RaftTimers {
    const after = (ms: number, fn: () => void) => this.clock.after(ms, n.id, () => this.onNode(n, inc, fn));
    return {
      setInterval: (fn, ms) => {
        const h: Handle = { cancelled: false };
        const fire = () => {
          if (h.cancelled) return;
          fn();
          after(Math.max(1, Math.round(ms * n.skew)), fire);
        };
        after(Math.max(1, Math.round(ms * n.skew * this.rng.next())), fire);
        return h;
      },
      clearInterval: (h) => {
        (h as Handle).cancelled = true;
      },
      setTimeout: (fn, ms) => {
        const h: Handle = { cancelled: false };
        after(ms, () => {
          if (!h.cancelled) fn();
        });
        return h;
      },
      clearTimeout: (h) => {
        (h as Handle).cancelled = true;
      },
      setImmediate: (fn) => after(0, fn),
    };
  }

  // ---- faults -----------------------------------------------------------------------------------

  /** A leader whose process is running (one that is paused cannot be asked anything). */
  private leader(): SimNode | undefined {
    return this.nodes.find((n) => n.up && !n.paused && n.shell && n.core.role === Role.Leader);
  }

  private nemesis(): void {
    const r = this.rng;
    const ids = this.nodes.map((n) => n.id);
    const action = r.int(0, 11);
    if (action <= 1) this.net.split(ids);
    else if (action === 2) {
      const leader = this.leader();
      this.net.isolate(leader && r.chance(0.6) ? leader.id : r.pick(ids), ids);
    } else if (action === 3) this.net.cutOneWay(r.pick(ids), r.pick(ids));
    else if (action <= 5) this.net.heal();
    else if (action <= 7) {
      const n = r.pick(this.nodes);
      if (n.up) this.crash(n);
    } else if (action === 8) this.pause(r.pick(this.nodes));
    else if (action === 9) r.pick(this.nodes).skew = r.pick([0.5, 0.8, 1, 1.3, 2]);
    else if (action === 10) this.transfer();
    else this.changeMembership(ids);
    for (const n of this.nodes) {
      if (!n.up && !this.starting.has(n.id) && r.chance(0.4))
        this.clock.schedule(r.int(1, 200), EventKind.Restart, n.id, null);
    }
  }

  /** The process stops (SIGSTOP, a long GC pause): its timers, fsync completions and incoming
   * messages wait until it resumes. */
  private pause(n: SimNode): void {
    if (!n.up || n.paused) return;
    this.pauses++;
    n.paused = true;
    this.clock.schedule(this.rng.int(20, 400), EventKind.Unpause, n.id, null, n.incarnation);
  }

  private unpause(n: SimNode): void {
    n.paused = false;
    const held = n.heldCalls;
    n.heldCalls = [];
    for (const fn of held) if (!n.paused) this.onNode(n, n.incarnation, fn);
  }

  private transfer(): void {
    const leader = this.leader();
    const others = leader ? leader.shell!.voters.filter((v) => v !== leader.id) : [];
    if (leader && others.length > 0) leader.shell!.transferLeadership(this.rng.pick(others));
  }

  /** Adds or removes one voter through the leader's RaftNode (in swarms with spare nodes). */
  private changeMembership(ids: number[]): void {
    if (!this.swarm.membership) return;
    const r = this.rng;
    const leader = this.leader();
    if (!leader) return;
    const shell = leader.shell!;
    const voters = shell.voters;
    const outside = ids.filter((i) => !voters.includes(i));
    let change: Promise<void>;
    if ((voters.length <= 3 || r.chance(0.5)) && outside.length > 0) change = shell.addNode(r.pick(outside));
    else if (voters.length > 3) change = shell.removeNode(r.pick(voters));
    else return;
    this.membershipChanges++;
    change.catch(() => {}); // one already pending, or overwritten by a new leader: nothing to check
  }

  /** Power loss: the process is gone (its RaftNode stops, its timers and transport go dead) and its
   * disk is what a crash leaves: synced data, and unsynced writes lost, torn or intact. */
  private crash(n: SimNode): void {
    this.crashes++;
    const old = n.shell;
    n.up = false;
    n.paused = false;
    n.heldCalls = [];
    n.shell = null;
    n.deliver = null;
    n.incarnation++;
    n.fs = n.fs.afterCrash(() => this.rng.next(), this.swarm.torn ? 'torn' : 'clean');
    this.workload.dropReads(n.id);
    old?.close().catch(() => {});
  }

  /** The lostTail scenario: a follower of a settled leader restarts without the WAL batches that held
   * the tail of its log. */
  private async loseTail(): Promise<void> {
    const leader = this.leader();
    const followers = leader ? leader.shell!.voters.filter((v) => v !== leader.id) : [];
    const n = followers.length > 0 ? this.node(this.rng.pick(followers)) : null;
    if (!leader || !n?.up || n.paused) {
      this.clock.schedule(10, EventKind.LoseTail, 0, null); // no leader yet: try again soon
      return;
    }
    const report: LostTailReport = {
      node: n.id,
      leader: leader.id,
      term: leader.core.term,
      at: this.clock.now,
      lostFrom: 0,
      lostTo: 0,
      leaderCommit: leader.core.log.committed,
      leaderMatch: leader.core.progress(n.id)?.match ?? 0,
      caughtUpMs: -1,
      leadersBefore: this.checker.leaders,
    };
    this.crash(n);
    const lost = await cutWalTail(n.fs, DIR, this.opts.lostTail!.entries);
    if (!lost) {
      this.boot(n);
      this.clock.schedule(10, EventKind.LoseTail, 0, null); // nothing synced to lose yet: again soon
      return;
    }
    report.lostFrom = lost.from;
    report.lostTo = lost.to;
    this.lostTailReport = report;
    this.boot(n);
  }

  private watchLostTail(): void {
    const lt = this.lostTailReport;
    if (!lt || lt.caughtUpMs >= 0) return;
    const shell = this.node(lt.node).shell;
    if (shell && shell.applied >= lt.leaderCommit) lt.caughtUpMs = this.clock.now - lt.at;
  }

  private heal(): void {
    this.net.faults = false;
    this.net.heal();
    for (const n of this.nodes) {
      n.skew = 1;
      if (n.paused) this.unpause(n);
      if (!n.up && !this.starting.has(n.id)) this.clock.schedule(0, EventKind.Restart, n.id, null);
    }
  }

  // ---- liveness and the end ---------------------------------------------------------------------

  /** The clients stop once a write is acknowledged after healing (through some RaftNode's propose());
   * then every voter must apply every acknowledged write. */
  private converged(healedAt: number): boolean {
    if (!this.workload.stopped) {
      if (this.workload.commits > this.ackedAtHeal) {
        this.workload.stopped = true;
        this.recoveryMs = this.clock.now - healedAt;
      }
      return false;
    }
    this.workload.expire((id) => this.node(id), this.clock.now);
    const leader = this.leader();
    if (this.workload.outstanding > 0 || !leader) return false;
    return this.voters(leader).every((n) => n.up && n.sm.index >= this.workload.maxAckedIndex);
  }

  private voters(leader: SimNode): SimNode[] {
    return leader.shell!.voters.map((v) => this.node(v));
  }

  private finalChecks(): void {
    this.checker.checkLogMatching(this.nodes);
    const out = checkHistory(this.workload.history, this.opts.checkTimeoutMs ?? 5000);
    this.linearizability = out.result;
    if (out.result === 'illegal') {
      const part = out.illegal ?? [];
      this.fail(
        `history not linearizable (key ${part[0]?.input.key}, ${part.length} operations, longest linearizable prefix ${out.longestPrefix?.length})`,
      );
    }
    this.checker.checkFinal(this.voters(this.leader()!), this.workload.acked, this.workload.maxAckedIndex);
  }

  status(): string {
    return this.nodes
      .map((n) =>
        n.up
          ? `${n.id}:${n.paused ? 'paused' : 'up'} role=${n.core.role} term=${n.core.term} commit=${n.core.log.committed} applied=${n.shell?.applied} last=${n.core.log.lastIndex()} voters=${n.shell?.voters}`
          : `${n.id}: down`,
      )
      .join('; ');
  }
}

/** The one-line command that replays a seed. */
export function replayCommand(seed: number, faultMs: number): string {
  return `node dist/test/consensus/replay.js ${seed} ${faultMs}`;
}
