import type { Message } from '../raft/types.js';

/** The simulation's virtual clock: events in a priority queue, ordered by time, then by scheduling
 * order (so equal times replay identically). */

export const EventKind = {
  Tick: 1,
  Deliver: 2,
  Synced: 3,
  Nemesis: 4,
  Propose: 5,
  Read: 6,
  Restart: 7,
  Unpause: 8,
  LoseTail: 9,
  /** A callback: a timer of a node's shell, or a disk sync completing. */
  Timer: 10,
} as const;
export type EventKind = (typeof EventKind)[keyof typeof EventKind];

export interface SimEvent {
  at: number;
  seq: number;
  kind: EventKind;
  node: number;
  /** The node's incarnation when scheduled: events of an earlier one are void after a crash. */
  inc: number;
  msg: Message | null;
  fn: (() => void) | null;
}

function less(a: SimEvent, b: SimEvent): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/** A binary min-heap of events. */
class EventQueue {
  private heap: SimEvent[] = [];

  push(e: SimEvent): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(h[p], h[i])) break;
      [h[p], h[i]] = [h[i], h[p]];
      i = p;
    }
  }

  peek(): SimEvent | undefined {
    return this.heap[0];
  }

  pop(): SimEvent | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l], h[m])) m = l;
        if (r < h.length && less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i], h[m]];
        i = m;
      }
    }
    return top;
  }

  get size(): number {
    return this.heap.length;
  }
}

export class Scheduler {
  now = 0;
  private readonly q = new EventQueue();
  private seq = 0;

  schedule(delay: number, kind: EventKind, node: number, msg: Message | null, inc = 0): void {
    this.q.push({ at: this.now + delay, seq: this.seq++, kind, node, inc, msg, fn: null });
  }

  /** Runs `fn` after `delay` virtual ms (on behalf of `node`, for the trace). */
  after(delay: number, node: number, fn: () => void): void {
    this.q.push({ at: this.now + delay, seq: this.seq++, kind: EventKind.Timer, node, inc: 0, msg: null, fn });
  }

  /** The next event due at or before `until`, with the clock moved to it; undefined when none is. */
  next(until: number): SimEvent | undefined {
    const e = this.q.peek();
    if (!e || e.at > until) return undefined;
    this.q.pop();
    this.now = e.at;
    return e;
  }
}

/** FNV-1a step: the running hash of the event trace and of the state machines. */
export function mix(h: number, x: number): number {
  h ^= x;
  h = Math.imul(h, 0x01000193);
  return h >>> 0;
}

export function hashBytes(h: number, b: Uint8Array): number {
  for (let i = 0; i < b.length; i++) h = mix(h, b[i]);
  return mix(h, b.length);
}
