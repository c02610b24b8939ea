import type { KvOperation } from '../linearizability/index.js';
import { Role } from '../raft/types.js';
import { KEYS, type SimNode } from './node.js';
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
 * The clients: closed-loop writers putting unique values through a node's `propose()` (acknowledged
 * when its promise resolves) and readers through any node's `read()`, recorded as a history with logical call/return times for
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
  /** Set once the cluster has recovered after healing: no new operations. */
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
    n.shell
      .propose(data)
      .then(
        () => this.acknowledge(value, n),
        () => {}, // not the leader, overwritten, or the node stopped: the outcome stays unknown
      )
      .catch(() => {}); // a failed check: the simulator has recorded it and throws it after this event
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
    n.shell
      .read()
      .then(
        () => this.readDone(ctx, n),
        () => this.pendingReads.delete(ctx),
      )
      .catch(() => {}); // a failed check: the simulator has recorded it and throws it after this event
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
