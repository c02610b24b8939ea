import type { MethodDef } from '../service/types.js';

/**
 * The deadline of a call on the connection's default timeout until the first sweep after it was made
 * stamps it (see expireDue). A call has no clock read of its own: Date.now() on every call is
 * measurable at millions of calls per second, and the default 30 s timeout needs no millisecond
 * precision. A clock kept between sweeps instead would be as old as the last sweep of any connection:
 * after a spell with no connection open, or with the event loop blocked, a new call's deadline would
 * already have passed and the next sweep would fail it with E_TIMEOUT before its reply was read.
 */
export const UNSTAMPED = 0;
/** The deadline of a call with a timer of its own (an explicit `timeoutMs`): the sweep ignores it. */
export const OWN_TIMER = Number.POSITIVE_INFINITY;

export class PendingCall {
  readonly id: number;
  readonly def: MethodDef | null;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: unknown) => void;
  /** UNSTAMPED, OWN_TIMER, or the Date.now() after which the sweep fails the call with E_TIMEOUT. */
  deadline: number;
  /** The call is one item of a `many` batch (its reply goes into the batch's array at `index`). */
  readonly batch: BatchCall | null;
  readonly index: number;
  timer: NodeJS.Timeout | null = null;
  signal: AbortSignal | null = null;
  onAbort: (() => void) | null = null;
  /**
   * The encoded request while it waits for room under the cell's in-flight limit (see SendWindow);
   * null once it is on the wire, or when the call was given up before it was sent.
   */
  frame: Buffer | null = null;

  constructor(
    id: number,
    def: MethodDef | null,
    resolve: (v: unknown) => void,
    reject: (e: unknown) => void,
    deadline: number,
    batch: BatchCall | null,
    index: number,
  ) {
    this.id = id;
    this.def = def;
    this.resolve = resolve;
    this.reject = reject;
    this.deadline = deadline;
    this.batch = batch;
    this.index = index;
  }
}

/**
 * The shared state of one `many` call: one promise for a run of requests that each travel and run
 * as their own call. Replies land in `results` by index; the first failure settles the batch, and
 * replies still to come are dropped.
 */
export class BatchCall {
  readonly results: unknown[];
  readonly items: PendingCall[];
  left: number;
  settled = false;
  timer: NodeJS.Timeout | null = null;
  signal: AbortSignal | null = null;
  onAbort: (() => void) | null = null;
  private readonly resolveAll: (v: unknown) => void;
  private readonly rejectAll: (e: unknown) => void;
  /** Given to every item as its `reject`: settles the batch once. */
  readonly fail = (err: unknown): void => {
    if (this.settled) return;
    this.settled = true;
    this.cleanup();
    this.rejectAll(err);
  };

  constructor(n: number, resolve: (v: unknown) => void, reject: (e: unknown) => void) {
    this.results = new Array(n);
    this.items = new Array(n);
    this.left = n;
    this.resolveAll = resolve;
    this.rejectAll = reject;
  }

  deliver(index: number, value: unknown): void {
    if (this.settled) return;
    this.results[index] = value;
    if (--this.left === 0) {
      this.settled = true;
      this.cleanup();
      this.resolveAll(this.results);
    }
  }

  private cleanup(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.signal !== null && this.onAbort !== null) this.signal.removeEventListener('abort', this.onAbort);
  }
}

/**
 * Calls in flight, indexed by `id & mask`. Ids are handed out sequentially and the table is kept at
 * most half full, so the next id's slot is almost always free; an id whose slot is still held by an old
 * call (a long poll among a stream of short calls) is skipped rather than growing the table. Cheaper
 * than a Map under heavy churn, and lookups of a late reply just miss.
 */
export class PendingTable {
  private slots: Array<PendingCall | undefined> = new Array(64).fill(undefined);
  /** Slots in the table (for diagnostics and tests). */
  get capacity(): number {
    return this.slots.length;
  }
  private mask = 63;
  size = 0;

  get(id: number): PendingCall | undefined {
    const p = this.slots[id & this.mask];
    return p !== undefined && p.id === id ? p : undefined;
  }

  /** The first id at or after `id` (skipping 0) whose slot is free. */
  claim(id: number): number {
    if (this.size * 2 >= this.slots.length) this.grow();
    let i = id;
    while (this.slots[i & this.mask] !== undefined) i = i === 0xffffffff ? 1 : i + 1;
    return i;
  }

  /** Stores a call whose id came from claim(). */
  set(p: PendingCall): void {
    this.slots[p.id & this.mask] = p;
    this.size++;
  }

  delete(p: PendingCall): void {
    const i = p.id & this.mask;
    if (this.slots[i] === p) {
      this.slots[i] = undefined;
      this.size--;
    }
  }

  /** A snapshot of the pending calls (unordered). */
  list(): PendingCall[] {
    const out: PendingCall[] = [];
    for (const p of this.slots) if (p !== undefined) out.push(p);
    return out;
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Array(old.length * 2).fill(undefined);
    this.mask = this.slots.length - 1;
    for (const p of old) if (p !== undefined) this.slots[p.id & this.mask] = p;
  }
}
