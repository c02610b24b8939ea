import type { CheckResult } from '../linearizability/index.js';
import { RaftNode, type RaftTimers, type StateMachine } from '../node/node.js';
import type { RaftTransport } from '../node/transport.js';
import { type Message, Role } from '../raft/types.js';
import type { WalFile, WalFs } from '../wal/fs.js';
import { checkHistory, SafetyChecker } from './checkers.js';
import { pickSwarm, SimFailure, type Swarm } from './cluster.js';
import { EventKind, mix, Scheduler } from './events.js';
import { SimNetwork } from './network.js';
import { applyToSm, decodeSm, emptySm, encodeSm, SimNode } from './node.js';
import { Prng } from './prng.js';
import { Workload } from './workload.js';

/**
 * The simulation of the shell itself: every node is a real `RaftNode` — its Ready loop, its WAL on a
 * `SimDisk` (whose fdatasyncs take virtual time and whose crashes lose or tear unsynced writes), its
 * timers on the virtual clock — over the simulated network, with crashes, restarts, partitions, clock
 * skew and leadership transfers, and clients going through `propose()` and `read()`. Same seed, same
 * history: nothing here reads the real clock, and every promise chain settles between two events.
 * Slower than `ClusterSim` (which drives the cores directly), so it runs fewer seeds.
 */

export interface ShellSimOptions {
  seed: number;
  faultMs: number;
  livenessMs: number;
  checkTimeoutMs?: number;
}

export interface ShellSimResult {
  seed: number;
  events: number;
  traceHash: number;
  commits: number;
  reads: number;
  leaders: number;
  crashes: number;
  historyOps: number;
  linearizability: CheckResult | 'skipped';
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
  private linearizability: CheckResult | 'skipped' = 'skipped';
  /** Nodes whose RaftNode is being opened (recovering its WAL): not to be started twice. */
  private readonly starting = new Set<number>();
  /** Writes acknowledged before healing: liveness needs one more. */
  private ackedAtHeal = 0;

  constructor(readonly opts: ShellSimOptions) {
    this.rng = new Prng(opts.seed);
    this.swarm = pickSwarm(this.rng);
    // Membership changes and pauses are exercised by ClusterSim; here every node is a founding voter.
    this.swarm.initialVoters = this.swarm.nodes;
    const fail = (what: string): never => this.fail(what);
    this.net = new SimNetwork(this.rng, this.swarm, (delay, to, m) =>
      this.clock.schedule(delay, EventKind.Deliver, to, m),
    );
    // A RaftNode applies what its core has made durable: its stabled index bounds what it applies.
    this.checker = new SafetyChecker(fail, (n) => Math.max(n.core.log.stabled, n.core.log.snapIndex));
    this.workload = new Workload(this.rng, false, fail);
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

  get history() {
    return this.workload.history;
  }

  /** Records the first failure (it may be raised inside a RaftNode callback, which would swallow it)
   * and throws it. */
  private fail(what: string): never {
    const e = new SimFailure(`seed ${this.opts.seed} at t=${this.clock.now}ms (shell): ${what}`);
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
    this.clock.schedule(this.swarm.nemesisEveryMs, EventKind.Nemesis, 0, null);
    await this.runUntil(this.opts.faultMs, () => false);
    this.heal();
    const healedAt = this.clock.now;
    this.ackedAtHeal = this.workload.commits;
    const done = await this.runUntil(healedAt + this.opts.livenessMs, () => this.converged());
    if (!done) this.fail(`liveness: no convergence within ${this.opts.livenessMs}ms after healing; ${this.status()}`);
    this.finalChecks();
    const w = this.workload;
    return {
      seed: this.opts.seed,
      events: this.events,
      traceHash: this.trace,
      commits: w.commits,
      reads: w.reads,
      leaders: this.checker.leaders,
      crashes: this.crashes,
      historyOps: w.history.length,
      linearizability: this.linearizability,
      convergedMs: this.clock.now - healedAt,
    };
  }

  /** Runs events up to `until`, checking the invariants after each; true once `stop()` holds. */
  private async runUntil(until: number, stop: () => boolean): Promise<boolean> {
    for (let e = this.clock.next(until); e; e = this.clock.next(until)) {
      this.events++;
      this.trace = mix(mix(mix(this.trace, e.kind), e.node), e.at | 0);
      try {
        this.dispatch(e.kind, e.node, e.msg, e.fn);
        await settle();
        if (this.failure) throw this.failure;
        this.checker.afterEvent(this.nodes);
      } catch (err) {
        throw this.failure ?? err;
      }
      if (stop()) return true;
    }
    return false;
  }

  private dispatch(kind: EventKind, id: number, msg: Message | null, fn: (() => void) | null): void {
    switch (kind) {
      case EventKind.Timer:
        fn!();
        break;
      case EventKind.Deliver: {
        const n = this.node(id);
        if (n.up && n.deliver) n.deliver([msg!]);
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
        const n = this.node(id);
        if (!n.up && !this.starting.has(n.id)) this.boot(n);
        break;
      }
    }
  }

  // ---- one node: a RaftNode on a simulated disk, virtual timers and the simulated network --------

  /** Opens the node's RaftNode from what its disk holds; it is up once its WAL is recovered. */
  private boot(n: SimNode): void {
    const inc = n.incarnation;
    const rr = this.rng.fork();
    this.starting.add(n.id);
    RaftNode.open({
      id: n.id,
      peers: Array.from({ length: this.swarm.nodes }, (_, i) => i + 1),
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
      (node) => {
        if (n.incarnation === inc) this.starting.delete(n.id);
        if (n.incarnation !== inc) {
          void node.close().catch(() => {});
          return;
        }
        node.on('warning', (w: string) => this.fail(`storage loss reported, but no synced write was lost: ${w}`));
        node.on('fatal', (e: Error) => this.fail(`node ${n.id} stopped: ${e.message}`));
        n.shell = node;
        n.core = node.core;
        n.up = true;
        n.commitSeen = node.core.log.snapIndex;
        n.lastCommit = node.core.log.committed;
      },
      (e: Error) => {
        if (n.incarnation === inc) this.starting.delete(n.id);
        if (n.incarnation === inc) this.fail(`node ${n.id} failed to start: ${e.message}`);
      },
    );
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
   * before it makes anything durable (a crash meanwhile loses or tears the write). */
  private slowDisk(n: SimNode, inc: number): WalFs {
    const disk = n.fs;
    const latency = (): Promise<void> =>
      new Promise((resolve) =>
        this.clock.after(this.rng.int(this.swarm.diskMin, this.swarm.diskMax), n.id, () => {
          if (n.incarnation === inc) resolve();
        }),
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

  /** Virtual timers for one incarnation: they stop at a crash, and the tick runs at the node's skew. */
  private timers(n: SimNode, inc: number): RaftTimers {
    const live = () => n.incarnation === inc;
    const after = (ms: number, fn: () => void) => this.clock.after(ms, n.id, fn);
    return {
      setInterval: (fn, ms) => {
        const h: Handle = { cancelled: false };
        const fire = () => {
          if (h.cancelled || !live()) return;
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
          if (!h.cancelled && live()) fn();
        });
        return h;
      },
      clearTimeout: (h) => {
        (h as Handle).cancelled = true;
      },
      setImmediate: (fn) => {
        after(0, () => {
          if (live()) fn();
        });
      },
    };
  }

  // ---- faults -----------------------------------------------------------------------------------

  private leader(): SimNode | undefined {
    return this.nodes.find((n) => n.up && n.core.role === Role.Leader);
  }

  private nemesis(): void {
    const r = this.rng;
    const ids = this.nodes.map((n) => n.id);
    const action = r.int(0, 9);
    if (action <= 1) this.net.split(ids);
    else if (action === 2) {
      const leader = this.leader();
      this.net.isolate(leader && r.chance(0.6) ? leader.id : r.pick(ids), ids);
    } else if (action === 3) this.net.cutOneWay(r.pick(ids), r.pick(ids));
    else if (action <= 5) this.net.heal();
    else if (action <= 7) {
      const n = r.pick(this.nodes);
      if (n.up) this.crash(n);
    } else if (action === 8) r.pick(this.nodes).skew = r.pick([0.5, 0.8, 1, 1.3, 2]);
    else {
      const leader = this.leader();
      const others = leader ? [...leader.core.voters].filter((v) => v !== leader.id) : [];
      if (leader?.shell && others.length > 0) leader.shell.transferLeadership(r.pick(others));
    }
    for (const n of this.nodes) {
      if (!n.up && !this.starting.has(n.id) && r.chance(0.4))
        this.clock.schedule(r.int(1, 200), EventKind.Restart, n.id, null);
    }
  }

  /** Power loss: the process is gone (its RaftNode stops, its timers and transport go dead) and its
   * disk is what a crash leaves: synced data, and unsynced writes lost, torn or intact. */
  private crash(n: SimNode): void {
    this.crashes++;
    const old = n.shell;
    n.up = false;
    n.shell = null;
    n.deliver = null;
    n.incarnation++;
    n.fs = n.fs.afterCrash(() => this.rng.next(), this.swarm.torn ? 'torn' : 'clean');
    this.workload.dropReads(n.id);
    old?.close().catch(() => {});
  }

  private heal(): void {
    this.net.faults = false;
    this.net.heal();
    for (const n of this.nodes) {
      n.skew = 1;
      if (!n.up && !this.starting.has(n.id)) this.clock.schedule(0, EventKind.Restart, n.id, null);
    }
  }

  // ---- liveness and the end ---------------------------------------------------------------------

  /** The clients stop once a write is acknowledged after healing (through some RaftNode's propose());
   * then every node must apply every acknowledged write. */
  private converged(): boolean {
    const leader = this.leader();
    if (!this.workload.stopped) {
      if (this.workload.commits > this.ackedAtHeal) this.workload.stopped = true;
      return false;
    }
    this.workload.expire((id) => this.node(id), this.clock.now);
    if (this.workload.outstanding > 0 || !leader) return false;
    return this.nodes.every((n) => n.up && n.sm.index >= this.workload.maxAckedIndex);
  }

  private finalChecks(): void {
    this.checker.checkLogMatching(this.nodes);
    const out = checkHistory(this.workload.history, this.opts.checkTimeoutMs ?? 5000);
    this.linearizability = out.result;
    if (out.result === 'illegal') {
      const part = out.illegal ?? [];
      this.fail(`history not linearizable (key ${part[0]?.input.key}, ${part.length} operations)`);
    }
    this.checker.checkFinal(this.nodes, this.workload.acked, this.workload.maxAckedIndex);
  }

  private status(): string {
    return this.nodes
      .map((n) =>
        n.up
          ? `${n.id}: role=${n.core.role} term=${n.core.term} commit=${n.core.log.committed} applied=${n.sm.index} last=${n.core.log.lastIndex()}`
          : `${n.id}: down`,
      )
      .join('; ');
  }
}
