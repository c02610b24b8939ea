import type { PendingCall } from './pending.js';

/**
 * Keeps one connection within the cell's in-flight limit (the WELCOME's maxInFlight, docs/PROTOCOL.md
 * § 2.4). A cell sheds a request beyond its limit with E_OVERLOADED without running it, so a caller
 * that pipelines more calls than that would see some fail that could simply have waited: requests
 * past the limit wait here, encoded, and go out in call order as answers come back.
 *
 * A call the caller gave up on (timeout, abort) still occupies the cell until the cell answers it
 * (every request gets exactly one REPLY or ERROR), so it keeps its place on the wire until then.
 */
export class SendWindow {
  /** The cell's limit; unlimited until the WELCOME names one (0 there means none). */
  private limit = Number.POSITIVE_INFINITY;
  /** Requests written and not yet answered, those given up on included. */
  private onWire = 0;
  private readonly queue: Array<PendingCall | undefined> = [];
  private head = 0;
  /** Ids of written requests the caller gave up on, until the cell answers them. */
  private abandoned: Set<number> | null = null;

  setLimit(maxInFlight: number): void {
    this.limit = maxInFlight > 0 ? maxInFlight : Number.POSITIVE_INFINITY;
  }

  /** Whether a new request must wait. Answers pump the queue at once, so none waits while this is false. */
  get full(): boolean {
    return this.onWire >= this.limit;
  }

  /** Says why a request waits, for its timeout error. */
  describe(): string {
    return `the cell allows ${this.limit} calls in flight on one connection and ${this.onWire} were unanswered`;
  }

  /** A request was written. */
  sent(): void {
    this.onWire++;
  }

  /** `p` waits with its encoded request until take() hands it out. */
  hold(p: PendingCall, frame: Buffer): void {
    p.frame = frame;
    this.queue.push(p);
  }

  /** The cell answered a written request: true when a waiting one may go out now. */
  answered(): boolean {
    this.onWire--;
    return this.head < this.queue.length;
  }

  /** The caller gave up on written request `id`: it counts until the cell answers it. */
  abandon(id: number): void {
    // Without a limit nothing waits for the place, and a cell that never answers must not grow the set.
    if (this.limit === Number.POSITIVE_INFINITY) return;
    if (this.abandoned === null) this.abandoned = new Set();
    this.abandoned.add(id);
  }

  /** An answer for no pending call: true when it frees the place of an abandoned request. */
  lateAnswer(id: number): boolean {
    if (this.abandoned === null || !this.abandoned.delete(id)) return false;
    this.onWire--;
    return this.head < this.queue.length;
  }

  /** Whether `id` still names an abandoned request (a new call must not reuse it yet). */
  inUse(id: number): boolean {
    return this.abandoned?.has(id) === true;
  }

  /** The next waiting request that may go out now (counted as written), or undefined. */
  take(): Buffer | undefined {
    const q = this.queue;
    while (this.onWire < this.limit && this.head < q.length) {
      const p = q[this.head] as PendingCall;
      q[this.head++] = undefined;
      const frame = p.frame;
      if (frame === null) continue; // given up while it waited
      p.frame = null;
      this.onWire++;
      return frame;
    }
    if (this.head === q.length) {
      q.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= q.length) {
      q.splice(0, this.head);
      this.head = 0;
    }
    return undefined;
  }
}
