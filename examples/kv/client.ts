// The key-value client: talks to any node, follows "not leader" replies to the leader, and retries
// only what certainly did not happen (a redirect); a call whose outcome is unknown (timeout, lost
// connection, node answered "unavailable") is reported as such and never silently retried.
import { CellError } from '../../src/errors/index.js';
import { Synapse, type SynapseClient } from '../../src/index.js';
import { Kv, Status } from './contract.js';

export interface KvClientOptions {
  /** Cell name of each node's kv service, by node id. */
  nodes: Record<number, string>;
  /** Give up on one operation after this long (default 5 s). */
  deadlineMs?: number;
  /** Per call (default 2 s). */
  callTimeoutMs?: number;
  /** Offer the shared-memory transport (default: Synapse's default). */
  shm?: boolean;
}

/** Thrown when the outcome of a write is unknown (it may or may not have been applied). */
export class KvUnknownOutcome extends CellError {}

export class KvClient {
  private readonly nodes: Map<number, string>;
  private readonly clients = new Map<number, SynapseClient<typeof Kv>>();
  private readonly ids: number[];
  private leader = 0;
  private rr = 0;
  private readonly deadlineMs: number;
  private readonly callTimeoutMs: number;
  private readonly shm: boolean | undefined;

  constructor(opts: KvClientOptions) {
    this.nodes = new Map(Object.entries(opts.nodes).map(([k, v]) => [Number(k), v]));
    this.ids = [...this.nodes.keys()];
    this.deadlineMs = opts.deadlineMs ?? 5000;
    this.callTimeoutMs = opts.callTimeoutMs ?? 2000;
    this.shm = opts.shm;
  }

  private async client(id: number): Promise<SynapseClient<typeof Kv>> {
    let c = this.clients.get(id);
    if (!c) {
      c = await Synapse.grow(Kv, {
        name: this.nodes.get(id)!,
        waitMs: 0,
        timeoutMs: this.callTimeoutMs,
        ...(this.shm === undefined ? {} : { shm: this.shm }),
      });
      this.clients.set(id, c);
    }
    return c;
  }

  private drop(id: number): void {
    const c = this.clients.get(id);
    this.clients.delete(id);
    void c?.$close().catch(() => {});
  }

  /**
   * Runs `call` against the leader, following redirects. `safeToRetry` says whether a failure before
   * the node answered can be retried elsewhere (reads: yes; writes: only if the call never left).
   */
  private async run<T extends { status: number; leader: number }>(
    what: string,
    call: (c: SynapseClient<typeof Kv>) => Promise<T>,
    write: boolean,
  ): Promise<T> {
    const deadline = Date.now() + this.deadlineMs;
    for (let attempt = 0; ; attempt++) {
      if (Date.now() > deadline) {
        throw new (write ? KvUnknownOutcome : CellError)(
          'E_TIMEOUT',
          `kv: ${what} found no leader within ${this.deadlineMs} ms.`,
        );
      }
      const id = this.leader || this.ids[this.rr++ % this.ids.length];
      let c: SynapseClient<typeof Kv>;
      try {
        c = await this.client(id);
      } catch {
        // Could not connect: nothing was sent.
        this.leader = 0;
        await new Promise((r) => setTimeout(r, Math.min(50, 5 * (attempt + 1))));
        continue;
      }
      let reply: T;
      try {
        reply = await call(c);
      } catch (err) {
        this.drop(id);
        this.leader = 0;
        if (write)
          throw new KvUnknownOutcome('E_CONNECTION_LOST', `kv: ${what} on node ${id}: ${(err as Error).message}`);
        continue;
      }
      if (reply.status === Status.Ok) {
        this.leader = id;
        return reply;
      }
      if (reply.status === Status.NotLeader) {
        this.leader = reply.leader !== id ? reply.leader : 0;
        if (this.leader === 0) await new Promise((r) => setTimeout(r, Math.min(50, 5 * (attempt + 1))));
        continue;
      }
      // Unavailable: a write may still be applied later.
      this.leader = 0;
      if (write)
        throw new KvUnknownOutcome('E_TIMEOUT', `kv: ${what} on node ${id} did not complete; its outcome is unknown.`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async get(key: string): Promise<string | undefined> {
    const r = await this.run(`get ${key}`, (c) => c.get(key), false);
    return r.found ? r.value : undefined;
  }

  async put(key: string, value: string): Promise<void> {
    await this.run(`put ${key}`, (c) => c.put({ key, value }), true);
  }

  /** Sets `key` to `value` if it holds `expected` (undefined: absent). Returns whether it did. */
  async cas(key: string, expected: string | undefined, value: string): Promise<boolean> {
    const r = await this.run(`cas ${key}`, (c) => c.cas({ key, expected, value }), true);
    return r.ok;
  }

  async close(): Promise<void> {
    await Promise.all([...this.clients.values()].map((c) => c.$close().catch(() => {})));
    this.clients.clear();
  }
}
