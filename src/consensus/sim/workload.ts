import type { KvOperation } from '../linearizability/index.js';
import { type Entry, Role } from '../raft/types.js';
import { KEYS, putValue, type SimNode } from './node.js';
import type { Prng } from './prng.js';

/** Concurrent writers, and readers: bounded, as real clients are, so the history stays checkable. */
const CLIENTS = 8;
/** A client gives up on an operation after this long (virtual ms). */
const GIVE_UP_MS = 1000;

interface PendingPut {
  node: number;
  inc: number;
  index: number;
  op: number;
  term: number;
  at: number;
}

interface PendingRead {
  node: number;
  inc: number;
  /** The highest index acknowledged to any client when the read was issued. */
  minIndex: number;
  key: number;
  call: number;
  at: number;
}

/**
 * The clients: closed-loop writers putting unique values (acknowledged when the proposing node applies
 * them) and ReadIndex readers on any node, recorded as a history with logical call/return times for
 * the linearizability checker. With `staleReads` (sabotage) reads are served from a random node's
 * state without ReadIndex, which the checker must catch.
 */
export class Workload {
  readonly history: KvOperation[] = [];
  /** value -> the index it was acknowledged at. */
  readonly acked = new Map<number, number>();
  maxAckedIndex = 0;
  commits = 0;
  reads = 0;
  /** Set once the liveness phase's marker is committed: no new operations. */
  stopped = false;
  private clock = 0;
  private readonly puts = new Map<number, PendingPut>();
  private readonly pendingReads = new Map<number, PendingRead>();
  private nextValue = 1;
  private nextReadCtx = 1;

  constructor(
    private readonly rng: Prng,
    private readonly staleReads: boolean,
    private readonly fail: (what: string) => never,
  ) {}

  /** Puts still waiting for their acknowledgement. */
  get outstanding(): number {
    return this.puts.size;
  }

  /** A client gives up on a put (its outcome stays unknown) when the node it asked crashed, moved to
   * a new term, or took too long. */
  expire(node: (id: number) => SimNode, now: number): void {
    for (const [v, p] of this.puts) {
      const pn = node(p.node);
      if (pn.incarnation !== p.inc || pn.core.term !== p.term || now - p.at > GIVE_UP_MS) this.puts.delete(v);
    }
  }

  /** One put, mostly to the leader; returns the node asked (its Ready loop must run). */
  put(nodes: readonly SimNode[], now: number): SimNode | null {
    this.expire((id) => nodes[id - 1], now);
    if (this.puts.size >= CLIENTS) return null;
    const leader = nodes.find((n) => n.up && !n.paused && n.core.role === Role.Leader);
    const n = leader && this.rng.chance(0.9) ? leader : this.rng.pick(nodes);
    if (!n.up || n.paused) return null;
    const value = this.nextValue++;
    const data = new Uint8Array(8);
    new DataView(data.buffer).setFloat64(0, value, true);
    const call = ++this.clock;
    const idx = n.core.propose(data);
    if (idx > 0) {
      const op = this.history.length;
      this.history.push({
        clientId: value,
        input: { op: 'put', key: `k${value % KEYS}`, value: String(value) },
        output: {},
        call,
        ret: Number.POSITIVE_INFINITY,
      });
      this.puts.set(value, { node: n.id, inc: n.incarnation, index: idx, op, term: n.core.term, at: now });
    }
    return n;
  }

  /** One read on a random node; returns the node asked when a ReadIndex went out. */
  read(nodes: readonly SimNode[], now: number): SimNode | null {
    // A reader that waited too long gives up (a read with no answer has no effect: it leaves the history).
    for (const [ctx, r] of this.pendingReads) if (now - r.at > GIVE_UP_MS) this.pendingReads.delete(ctx);
    if (this.pendingReads.size >= CLIENTS) return null;
    if (this.staleReads) {
      this.staleRead(nodes);
      return null;
    }
    const n = this.rng.pick(nodes);
    if (!n.up || n.paused) return null;
    const ctx = this.nextReadCtx++;
    if (!n.core.readIndex(ctx)) return null;
    // A linearizable read must observe every write acknowledged before it was issued.
    this.pendingReads.set(ctx, {
      node: n.id,
      inc: n.incarnation,
      minIndex: this.maxAckedIndex,
      key: this.rng.int(0, KEYS - 1),
      call: ++this.clock,
      at: now,
    });
    return n;
  }

  private staleRead(nodes: readonly SimNode[]): void {
    const n = this.rng.pick(nodes);
    const key = this.rng.int(0, KEYS - 1);
    const v = n.sm.kv.get(key);
    const call = ++this.clock;
    this.history.push({
      clientId: -this.nextReadCtx++,
      input: { op: 'get', key: `k${key}` },
      output: { value: v === undefined ? null : String(v) },
      call,
      ret: ++this.clock,
    });
  }

  /** `n` applied `e`: a put proposed there, in this incarnation, is acknowledged. */
  applied(n: SimNode, e: Entry): void {
    const v = putValue(e);
    if (v === undefined) return;
    const p = this.puts.get(v);
    if (!p || p.node !== n.id || p.inc !== n.incarnation) return;
    this.puts.delete(v);
    if (p.index !== e.index) this.fail(`proposal ${v} applied at ${e.index}, proposed at ${p.index}`);
    this.history[p.op].ret = ++this.clock;
    this.acked.set(v, e.index);
    if (e.index > this.maxAckedIndex) this.maxAckedIndex = e.index;
    this.commits++;
  }

  /** Answers the reads whose index the state machine has reached (ReadIndex: wait for apply). */
  serveReads(n: SimNode): void {
    if (n.waitingReads.length === 0) return;
    const still: { index: number; ctx: number }[] = [];
    for (const w of n.waitingReads) {
      if (w.index > n.sm.index) {
        still.push(w);
        continue;
      }
      const r = this.pendingReads.get(w.ctx);
      if (!r) continue;
      this.pendingReads.delete(w.ctx);
      if (r.node !== n.id || r.inc !== n.incarnation) continue;
      if (w.index < r.minIndex) {
        this.fail(`stale read: read ${w.ctx} at node ${n.id} got index ${w.index} < acknowledged ${r.minIndex}`);
      }
      const v = n.sm.kv.get(r.key);
      this.history.push({
        clientId: -w.ctx,
        input: { op: 'get', key: `k${r.key}` },
        output: { value: v === undefined ? null : String(v) },
        call: r.call,
        ret: ++this.clock,
      });
      this.reads++;
    }
    n.waitingReads = still;
  }

  // ---- through a RaftNode: its propose() and read() promises are what the clients see ---------------

  /** One put through a node's RaftNode, acknowledged when its promise resolves. */
  putThroughShell(nodes: readonly SimNode[], now: number): void {
    this.expire((id) => nodes[id - 1], now);
    if (this.puts.size >= CLIENTS) return;
    const leader = nodes.find((n) => n.up && !n.paused && n.core.role === Role.Leader);
    const n = leader && this.rng.chance(0.9) ? leader : this.rng.pick(nodes);
    if (!n.up || n.paused || !n.shell) return;
    const value = this.nextValue++;
    const data = new Uint8Array(8);
    new DataView(data.buffer).setFloat64(0, value, true);
    const call = ++this.clock;
    const before = n.core.log.lastIndex();
    n.shell.propose(data).then(
      () => this.acknowledge(value, n),
      () => {}, // not the leader, overwritten, or the node stopped: the outcome stays unknown
    );
    const idx = n.core.log.lastIndex();
    if (idx === before) return;
    const op = this.history.length;
    this.history.push({
      clientId: value,
      input: { op: 'put', key: `k${value % KEYS}`, value: String(value) },
      output: {},
      call,
      ret: Number.POSITIVE_INFINITY,
    });
    this.puts.set(value, { node: n.id, inc: n.incarnation, index: idx, op, term: n.core.term, at: now });
  }

  private acknowledge(value: number, n: SimNode): void {
    const p = this.puts.get(value);
    if (!p || p.node !== n.id || p.inc !== n.incarnation) return;
    this.puts.delete(value);
    this.history[p.op].ret = ++this.clock;
    this.acked.set(value, p.index);
    if (p.index > this.maxAckedIndex) this.maxAckedIndex = p.index;
    this.commits++;
  }

  /** One linearizable read through a node's RaftNode.read(). */
  readThroughShell(nodes: readonly SimNode[], now: number): void {
    for (const [ctx, r] of this.pendingReads) if (now - r.at > GIVE_UP_MS) this.pendingReads.delete(ctx);
    if (this.pendingReads.size >= CLIENTS) return;
    if (this.staleReads) {
      this.staleRead(nodes);
      return;
    }
    const n = this.rng.pick(nodes);
    if (!n.up || n.paused || !n.shell) return;
    const ctx = this.nextReadCtx++;
    this.pendingReads.set(ctx, {
      node: n.id,
      inc: n.incarnation,
      minIndex: this.maxAckedIndex,
      key: this.rng.int(0, KEYS - 1),
      call: ++this.clock,
      at: now,
    });
    n.shell.read().then(
      () => this.readDone(ctx, n),
      () => this.pendingReads.delete(ctx),
    );
  }

  private readDone(ctx: number, n: SimNode): void {
    const r = this.pendingReads.get(ctx);
    if (!r || r.inc !== n.incarnation) return;
    this.pendingReads.delete(ctx);
    if (n.sm.index < r.minIndex) {
      this.fail(`stale read: read ${ctx} at node ${n.id} saw applied index ${n.sm.index} < acknowledged ${r.minIndex}`);
    }
    const v = n.sm.kv.get(r.key);
    this.history.push({
      clientId: -ctx,
      input: { op: 'get', key: `k${r.key}` },
      output: { value: v === undefined ? null : String(v) },
      call: r.call,
      ret: ++this.clock,
    });
    this.reads++;
  }

  /** A crashed node answers none of the reads it was asked. */
  dropReads(node: number): void {
    for (const [ctx, rd] of this.pendingReads) if (rd.node === node) this.pendingReads.delete(ctx);
  }
}
