import type { Message } from '../raft/types.js';
import { decodeBatch, encodeBatch } from './codec.js';

/** How a RaftNode reaches its peers. Sending never blocks and may drop: Raft retransmits. */
export interface RaftTransport {
  /** Starts delivering batches addressed to node `id`. */
  start(id: number, deliver: (msgs: Message[]) => void): Promise<void>;
  send(msgs: readonly Message[]): void;
  close(): Promise<void>;
  /**
   * A transport that answers a delivered batch with the receiver's messages for its sender (in the
   * reply to the call that carried it) holds that reply open until the node says it is done with the
   * batch. The node calls `mark()` when it cuts a Ready (every batch delivered so far is in it) and
   * `settle(mark)` once that Ready's messages are sent: replies still open for batches up to the mark
   * then go back empty.
   */
  mark?(): number;
  settle?(mark: number): void;
}

/** Groups messages by destination, keeping their order. */
export function byDestination(msgs: readonly Message[]): Map<number, Message[]> {
  const out = new Map<number, Message[]>();
  for (const m of msgs) {
    let l = out.get(m.to);
    if (!l) {
      l = [];
      out.set(m.to, l);
    }
    l.push(m);
  }
  return out;
}

/**
 * An in-process network for tests: batches go through the wire codec (so what arrives is a copy,
 * as over a socket) and are delivered on a later turn of the event loop. Links can be cut.
 */
export class InMemoryNetwork {
  private readonly nodes = new Map<number, (msgs: Message[]) => void>();
  private readonly cut = new Set<string>();
  delivered = 0;
  dropped = 0;

  transport(): RaftTransport {
    let self = 0;
    return {
      start: async (id, deliver) => {
        self = id;
        this.nodes.set(id, deliver);
      },
      send: (msgs) => {
        for (const [to, batch] of byDestination(msgs)) this.deliver(self, to, encodeBatch(batch));
      },
      close: async () => {
        this.nodes.delete(self);
      },
    };
  }

  private deliver(from: number, to: number, bytes: Uint8Array): void {
    if (this.cut.has(`${from}>${to}`)) {
      this.dropped++;
      return;
    }
    setImmediate(() => {
      const d = this.nodes.get(to);
      if (!d || this.cut.has(`${from}>${to}`)) {
        this.dropped++;
        return;
      }
      this.delivered++;
      d(decodeBatch(bytes));
    });
  }

  /** Cuts both directions between `id` and every other node. */
  isolate(id: number, ids: readonly number[]): void {
    for (const o of ids) {
      if (o === id) continue;
      this.cut.add(`${id}>${o}`);
      this.cut.add(`${o}>${id}`);
    }
  }

  heal(): void {
    this.cut.clear();
  }
}
