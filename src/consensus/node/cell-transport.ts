import { CellError } from '../../errors/index.js';
import { Membrane } from '../../membrane/index.js';
import { Synapse, type SynapseClient } from '../../synapse/index.js';
import type { Message } from '../raft/types.js';
import { BatchEncoder, decodeBatch, RaftPeerService } from './codec.js';
import { byDestination, type RaftTransport } from './transport.js';

export interface CellTransportOptions {
  /** Cell name of each node's peer service, by node id (this node's included). */
  peers: ReadonlyMap<number, string> | Record<number, string>;
  /** Calls in flight per peer before further messages are coalesced into the next call (default 8). */
  maxInFlight?: number;
  /** Per-call timeout (default 2000 ms). */
  timeoutMs?: number;
  /** Offer the shared-memory ring between peers (default: the CELL_RAFT_SHM env var, else false). */
  shm?: boolean;
}

/** A call from a peer whose reply is held open for what this node has to say back. */
interface Held {
  /** Batches delivered up to and including this one (RaftTransport.mark). */
  seq: number;
  at: number;
  resolve: (reply: Uint8Array) => void;
}

const EMPTY = new Uint8Array(0);

class Peer {
  client: SynapseClient<typeof RaftPeerService> | null = null;
  connecting = false;
  retryAt = 0;
  inFlight = 0;
  queue: Message[] = [];
  /** Its calls to this node whose replies are still open, oldest first. */
  held: Held[] = [];
  constructor(readonly cell: string) {}
}

/**
 * Raft over Cell: each node serves a `raft` peer service on its own Membrane and reaches the others
 * through Synapse clients. Messages for one peer are coalesced into one `exchange` call while earlier
 * calls are in flight (bounded pipelining); a peer that cannot be reached loses its messages until a
 * reconnect succeeds, which Raft tolerates (it retransmits).
 *
 * A call's reply is held open until the node has handled the batch it carried (mark/settle) and
 * carries the messages this node has for the caller meanwhile — a follower's acknowledgement rides
 * the reply to the leader's append instead of a call of its own. Messages for a peer go into the
 * oldest reply it is waiting for, else into a call.
 */
export class CellTransport implements RaftTransport {
  private readonly peers = new Map<number, Peer>();
  private readonly maxInFlight: number;
  private readonly timeoutMs: number;
  private readonly shm: boolean;
  private membrane: Membrane<typeof RaftPeerService> | null = null;
  private closed = false;
  private deliver: (msgs: Message[]) => void = () => {};
  /** Batches delivered so far (the mark of RaftTransport). */
  private delivered = 0;
  private sweeper: NodeJS.Timeout | null = null;
  /** Within one send(): the last batch encoded, which the next peer's batch may be copied from. */
  private readonly encoder = new BatchEncoder();
  private sharing = false;
  private lastBatch: Message[] | null = null;
  private lastBytes: Uint8Array | null = null;
  sentCalls = 0;
  droppedMessages = 0;
  /** Batches sent as a patched copy of another peer's (their entries encoded once). */
  sharedBatches = 0;
  /** Batches that went back in the reply to a peer's call instead of a call of their own. */
  repliedBatches = 0;

  constructor(opts: CellTransportOptions) {
    const entries =
      opts.peers instanceof Map ? [...opts.peers] : Object.entries(opts.peers).map(([k, v]) => [Number(k), v] as const);
    for (const [id, cell] of entries) this.peers.set(id, new Peer(cell));
    this.maxInFlight = opts.maxInFlight ?? 8;
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.shm = opts.shm ?? process.env.CELL_RAFT_SHM === '1';
  }

  async start(id: number, deliver: (msgs: Message[]) => void): Promise<void> {
    const me = this.peers.get(id);
    if (!me) throw new CellError('E_INVALID_ARGUMENT', `raft transport: node ${id} has no cell name in peers.`);
    this.peers.delete(id);
    this.deliver = deliver;
    this.membrane = await Membrane.bind(
      RaftPeerService,
      {
        step(bytes) {
          deliver(decodeBatch(bytes));
          return undefined;
        },
        exchange: (bytes) => this.exchange(bytes),
      },
      { name: me.cell, handleSignals: false, shm: this.shm },
    );
    // A reply is held for one Ready; should the node stall (a disk that hangs), answer before the
    // caller's timeout would drop the connection.
    this.sweeper = setInterval(() => this.sweep(Date.now() - this.timeoutMs / 4), this.timeoutMs / 8);
    this.sweeper.unref();
  }

  /** The receiving side of a call: holds its reply open for the messages this node will have for the
   * caller (the slot is registered before delivery, which may answer at once). */
  private exchange(bytes: Uint8Array): Uint8Array | Promise<Uint8Array> {
    const msgs = decodeBatch(bytes);
    const p = msgs.length > 0 && !this.closed ? this.peers.get(msgs[0].from) : undefined;
    if (!p) {
      this.deliver(msgs);
      return EMPTY;
    }
    const seq = ++this.delivered;
    const reply = new Promise<Uint8Array>((resolve) => {
      p.held.push({ seq, at: Date.now(), resolve });
    });
    this.deliver(msgs);
    return reply;
  }

  mark(): number {
    return this.delivered;
  }

  settle(mark: number): void {
    this.answerEmpty((h) => h.seq <= mark);
  }

  private sweep(before: number): void {
    this.answerEmpty((h) => h.at <= before);
  }

  /** Sends back empty each peer's oldest held replies, as long as `due` says so. */
  private answerEmpty(due: (h: Held) => boolean): void {
    for (const p of this.peers.values()) {
      while (p.held.length > 0 && due(p.held[0])) p.held.shift()?.resolve(EMPTY);
    }
  }

  send(msgs: readonly Message[]): void {
    if (this.closed) return;
    this.sharing = true;
    try {
      this.sendEach(msgs);
    } finally {
      this.sharing = false;
      this.lastBatch = null;
      this.lastBytes = null;
    }
  }

  private sendEach(msgs: readonly Message[]): void {
    for (const [to, batch] of byDestination(msgs)) {
      const p = this.peers.get(to);
      if (!p) continue;
      for (const m of batch) p.queue.push(m);
      const held = p.held.shift();
      if (held) {
        const all = p.queue;
        p.queue = [];
        this.repliedBatches++;
        held.resolve(this.encode(all));
        continue;
      }
      if (p.queue.length > 4096) {
        // A stalled peer: keep the newest messages only (older appends will be resent from the log).
        this.droppedMessages += p.queue.length - 1024;
        p.queue = p.queue.slice(-1024);
      }
      this.pump(p);
    }
  }

  private pump(p: Peer): void {
    if (p.queue.length === 0 || this.closed) return;
    if (!p.client) {
      if (Date.now() < p.retryAt) {
        this.droppedMessages += p.queue.length;
        p.queue = [];
        return;
      }
      if (!p.connecting) void this.connect(p);
      return;
    }
    if (p.inFlight >= this.maxInFlight) return;
    const batch = p.queue;
    p.queue = [];
    const client = p.client;
    p.inFlight++;
    this.sentCalls++;
    client.exchange(this.encode(batch), { timeoutMs: this.timeoutMs }).then(
      (reply) => {
        p.inFlight--;
        if (reply.byteLength > 0 && !this.closed) this.deliver(decodeBatch(reply));
        this.pump(p);
      },
      () => {
        p.inFlight--;
        this.droppedMessages += batch.length;
        // The connection is suspect: drop it and reconnect after a short pause.
        if (p.client === client) {
          p.client = null;
          p.retryAt = Date.now() + 100;
          void client.$close().catch(() => {});
        }
      },
    );
  }

  /** A leader appends the same entries to every follower that is caught up: encode them once per
   * send() and copy the bytes for the other followers (only their scalar fields differ). */
  private encode(batch: Message[]): Uint8Array {
    const like =
      this.lastBatch && this.lastBytes ? this.encoder.encodeLike(this.lastBatch, this.lastBytes, batch) : null;
    if (like) this.sharedBatches++;
    const bytes = like ?? this.encoder.encode(batch);
    if (this.sharing) {
      this.lastBatch = batch;
      this.lastBytes = bytes;
    }
    return bytes;
  }

  private async connect(p: Peer): Promise<void> {
    p.connecting = true;
    try {
      const c = await Synapse.grow(RaftPeerService, {
        name: p.cell,
        waitMs: 0,
        timeoutMs: this.timeoutMs,
        shm: this.shm,
      });
      if (this.closed) {
        await c.$close();
        return;
      }
      p.client = c;
    } catch {
      p.retryAt = Date.now() + 100;
      this.droppedMessages += p.queue.length;
      p.queue = [];
    } finally {
      p.connecting = false;
    }
    this.pump(p);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.settle(Number.POSITIVE_INFINITY);
    const closing: Promise<void>[] = [];
    for (const p of this.peers.values()) {
      if (p.client) closing.push(p.client.$close().catch(() => {}));
      p.client = null;
    }
    await Promise.all(closing);
    await this.membrane?.close();
    this.membrane = null;
  }
}
