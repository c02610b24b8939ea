import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { CellError } from '../errors/index.js';
import { BITMAP_WORD, type Board } from './board.js';
import type { NativeAddon } from './native.js';
import { RING_HEADER_BYTES, type RingBuffer } from './ring.js';

/** Receives the records of one channel; must release(token) each one, now or when done with it. */
export interface RecordSink {
  /** The payload is `channel.rx.bytes[offset, offset + length)`, ring memory valid until release(token). */
  onRecord(kind: number, reqId: number, aux: number, offset: number, length: number, token: number): void;
  /** The peer broke the ring protocol; the channel is already closed. */
  onCorrupt(err: CellError): void;
  /** Brackets each drain that delivers at least one record (one clock read per run of records). */
  beginDrain(): void;
  endDrain(): void;
  /** Optional: called after each record of a drain (the sink may publish what it held). */
  afterRecord?(): void;
}

/**
 * One direction pair of rings between two processes: `tx` we produce into, `rx` we consume from.
 * Receiving is driven by a process-wide poller (below) that spins briefly after activity and then
 * puts the channel to sleep on a futex, so an idle connection costs no CPU.
 */
export class ShmChannel {
  readonly tx: RingBuffer;
  readonly rx: RingBuffer;
  private readonly sink: RecordSink;
  private readonly bell: BellWatch;
  private readonly addon: NativeAddon;
  /** This side's big slot (§ 3.3.2), trimmed with the tx ring; null without slots. */
  txSlot: SharedArrayBuffer | null = null;
  /** Committed since the last trim sweep looked (see trimIdle). */
  active = false;
  /** The tx ring holds pages written since it was last trimmed. */
  dirty = false;
  hot = false;
  closed = false;
  /** Records received / sent through the rings (metrics). */
  received = 0;
  sent = 0;
  /** Times this side fell asleep / was woken by the doorbell (metrics). */
  sleeps = 0;
  wakeups = 0;

  /**
   * `rxBell`: the eventfd the peer signals when it commits while we sleep; channels given the same fd
   * (the doorbell shared by the connections between two processes) share one watcher.
   */
  constructor(addon: NativeAddon, tx: RingBuffer, rx: RingBuffer, rxBell: number, sink: RecordSink) {
    this.tx = tx;
    this.rx = rx;
    this.sink = sink;
    this.addon = addon;
    this.bell = joinBell(addon, rxBell, this);
    if (rx.board !== undefined) watchBoard(this, rx.board, rx.readyBit);
    wake(this);
  }

  /** The board this channel's rx ring is watched on (see watchBoard), or null: scanned every tick. */
  watched: Watched | null = null;

  /** Largest payload the rings carry; bigger messages must take the socket. */
  get maxPayload(): number {
    return this.tx.maxPayload;
  }

  /**
   * Sends one record through the ring. Returns false when it doesn't fit (too large, or the ring is
   * full because the peer is behind): the caller then sends it over the socket, which has its own
   * back-pressure. Replies carry request ids, so the two paths can't be confused.
   */
  send(kind: number, reqId: number, aux: number, payload: Uint8Array): boolean {
    if (this.closed || payload.length > this.tx.maxPayload) return false;
    const o = this.reserve(kind, reqId, aux, payload.length);
    if (o < 0) return false;
    this.tx.bytes.set(payload, o);
    this.commit();
    return true;
  }

  /** Zero-copy send: reserve, encode into tx.bytes at the returned offset, then commit(). -1 = use the socket. */
  reserve(kind: number, reqId: number, aux: number, length: number): number {
    if (this.closed || length > this.tx.maxPayload) return -1;
    try {
      return this.tx.reserve(kind, reqId, aux, length);
    } catch (err) {
      // The consumer's head is garbage: a hostile peer, or one that let the ring go (its pages read
      // as zeros). Either way the ring is done; the caller falls back to the socket, and the
      // connection learns why once the current synchronous run is over.
      this.broken(err as CellError);
      return -1;
    }
  }

  private broken(err: CellError): void {
    if (this.closed) return;
    this.close();
    const why = this.tx.released
      ? new CellError('E_CONNECTION_LOST', 'the peer closed the connection and released its rings.')
      : err;
    queueMicrotask(() => this.sink.onCorrupt(why));
  }

  /**
   * Publishes what was reserved. If the peer sleeps, its doorbell (a system call) rings from a
   * microtask, once for the whole synchronous run: a pipelining caller's burst of requests, or a
   * drain's worth of replies, wakes a sleeping peer once instead of once per record.
   */
  commit(): void {
    this.sent++;
    this.active = true;
    if (!this.dirty && !this.closed) {
      this.dirty = true;
      trimLater(this);
    }
    if (this.tx.commitQuiet() && !this.bellOwed) {
      this.bellOwed = true;
      soon(this.ringOwed);
    }
  }

  private bellOwed = false;
  private readonly ringOwed = (): void => {
    this.bellOwed = false;
    if (!this.closed) this.tx.ring();
  };

  /** Tells the poller a reply is expected soon (keeps it spinning instead of sleeping). */
  expect(): void {
    wake(this);
  }

  release(token: number): void {
    if (!this.closed) this.rx.release(token);
  }

  /**
   * Delivers up to DRAIN_BATCH committed records; returns how many. The poller comes back at once
   * when it got any, after the continuations they released have run.
   */
  drain(): number {
    let n = 0;
    const rx = this.rx;
    const sink = this.sink;
    let began = false;
    rx.holdHead();
    try {
      for (let t = rx.next(); t >= 0; t = this.closed || n === DRAIN_BATCH ? -1 : rx.next()) {
        if (!began) {
          began = true;
          sink.beginDrain();
        }
        n++;
        sink.onRecord(rx.kind, rx.reqId, rx.aux, rx.payloadOffset, rx.payloadLength, t);
        sink.afterRecord?.();
      }
    } catch (err) {
      if (err instanceof CellError && err.code === 'E_PROTOCOL') {
        this.close();
        // The server punches its rings out when its connection closes, header page included
        // (§ 3.2): a ring that reads as zeros was let go, not corrupted.
        sink.onCorrupt(rx.released ? lostRings() : err);
        return n;
      }
      throw err;
    } finally {
      if (!this.closed) rx.publishHead();
      if (began) sink.endDrain();
    }
    this.received += n;
    return n;
  }

  sleptAt = 0;

  /**
   * Tries to go to sleep; false if a record slipped in (stay hot). Sleeping costs nothing: the
   * doorbell is always watched by the event loop, and the peer rings it only while `sleeping` is set.
   */
  sleep(now: number): boolean {
    let seq: number;
    try {
      seq = this.rx.prepareSleep();
    } catch (err) {
      // tail disagrees with the records: the peer broke the ring (closed now; the sink learns why)
      if (!(err instanceof CellError)) throw err;
      this.close();
      this.sink.onCorrupt(this.rx.released ? lostRings() : err);
      return true;
    }
    if (seq < 0) return false;
    this.sleeps++;
    this.sleptAt = now;
    return true;
  }

  /**
   * Gives the tx ring's data pages back when it has been quiet for a whole trim interval and the peer
   * released everything (the producer alone decides: the consumer reads nothing past the published
   * tail, and the next record is written after this returns). Returns true when the ring is clean.
   */
  trimIdle(): boolean {
    if (this.closed) return true;
    if (this.active) {
      this.active = false;
      return false;
    }
    if (!this.tx.producerIdle()) return false;
    try {
      // Whole pages after the first: the header page stays (it holds head, tail and the doorbell word).
      this.addon.trimShared(this.tx.sab, RING_HEADER_BYTES, this.tx.capacity);
      // Every record is released, so the slot is free too: its pages go back the same way.
      if (this.txSlot !== null) this.addon.trimShared(this.txSlot, 0, this.txSlot.byteLength);
    } catch {
      // a kernel without MADV_REMOVE on shared memory: the pages stay until the connection closes
    }
    this.dirty = false;
    this.trims++;
    return true;
  }

  /** Times the tx ring's pages were given back while idle (metrics). */
  trims = 0;

  close(): void {
    if (this.closed) return;
    this.closed = true;
    leaveBell(this.bell, this);
    dirtyChannels.delete(this);
    const i = hot.indexOf(this);
    if (i >= 0) {
      hot.splice(i, 1);
      if (this.watched === null) unwatchedHot--;
    }
    this.hot = false;
    unwatchBoard(this);
  }
}

function lostRings(): CellError {
  return new CellError('E_CONNECTION_LOST', 'the peer closed the connection and released its rings.');
}

// ------------------------------------------------------------------- idle trim
//
// A ring's pages are allocated as they are first written and stay allocated while the connection
// lives: a connection that once carried a burst keeps its whole capacity resident (1 MiB per
// direction by default, in both processes' RSS) although it now idles. Each producer therefore hands
// the pages of its own ring back once the ring has been quiet for a whole TRIM_INTERVAL_MS and every
// record was released. One unref'd timer serves the process, and only while some ring is dirty.

/**
 * A ring quiet for one whole interval is trimmed at the next sweep: 2–4 s after its last commit.
 * Longer than a pause between bursts, so a bursty connection does not fault its pages back in each
 * time (a trimmed 1 MiB ring costs 256 page faults to fill again, § 3.6).
 */
const TRIM_INTERVAL_MS = 2000;
const dirtyChannels = new Set<ShmChannel>();
let trimTimer: NodeJS.Timeout | null = null;

function trimLater(ch: ShmChannel): void {
  dirtyChannels.add(ch);
  if (trimTimer === null) {
    trimTimer = setInterval(trimSweep, TRIM_INTERVAL_MS);
    trimTimer.unref();
  }
}

function trimSweep(): void {
  for (const ch of dirtyChannels) if (ch.trimIdle()) dirtyChannels.delete(ch);
  if (dirtyChannels.size === 0 && trimTimer !== null) {
    clearInterval(trimTimer);
    trimTimer = null;
  }
}

// ------------------------------------------------------------------- the poller
//
// After activity the poller re-checks the hot channels from microtasks (replies written by handlers'
// promise continuations interleave with it, so a round trip never waits for an event-loop turn) for
// a spin budget without news, yielding to the event loop every YIELD_MS so sockets and
// timers keep being served. Then every hot channel goes to sleep until its doorbell rings. The spin is short on
// purpose: on a busy machine a process that spins while its peer is descheduled only steals the CPU
// the peer needs; sleeping hands it over.

// The spin budget adapts: a channel woken soon after it fell asleep means the peer answers at a pace
// the spin just missed (both sides would otherwise settle into sleeping through every round trip), so
// the budget grows towards what would have caught it; each spin that ends with nothing shrinks it.
const MIN_SPIN_MS = Number(process.env.CELL_SHM_SPIN_US ?? 20) / 1000;
const MAX_SPIN_MS = 0.5;
/**
 * A wake-up this soon after falling asleep counts as "the spin just missed it". Later wake-ups mean
 * the peer was descheduled or idle, and spinning longer would only take CPU from it.
 */
const MISSED_BY_MS = 0.5;
/**
 * Records one drain delivers before the tick returns. Continuations of the calls it settled (a
 * pipelining caller's next requests) run between batches instead of after the whole backlog, so
 * the peer gets work while we still drain rather than falling asleep meanwhile.
 */
const DRAIN_BATCH = 32;
/**
 * The longest the poller's ticks keep the event loop waiting (ms): then timers and I/O get a turn.
 * Counted in time, not ticks: a turn costs a few microseconds (a setImmediate hop and a poll of the
 * loop's handles), so with one every few hundred ticks, one sequential call in a hundred paid for
 * one on either side and the turn was the p99; a tick that drains a full batch takes tens of
 * microseconds, so a tick count also let busy ticks hold the loop far longer than idle ones.
 */
const YIELD_MS = 1;
/** Ticks between looks at the clock for YIELD_MS (a busy tick reads no clock of its own). */
const YIELD_CHECK_TICKS = 32;
/**
 * Ring checks an empty tick makes right there before queueing the next tick (about 1–2 µs). A reply
 * from a spinning peer usually lands within that, and is then drained in the same tick: a microtask
 * costs more than a hundred tail checks. Anything this process queued meanwhile runs as soon as the
 * tick returns, so the inline spin delays local work by at most that long.
 */
const INLINE_CHECKS = 128;
/**
 * Two empty ticks this far apart mean this process lost its CPU in between (a tick spins for a
 * microsecond or two): that time counts as stolen from the spin.
 */
const STALL_MS = 0.03;

/**
 * Queues `fn` as a microtask through a resolved promise: a third of what queueMicrotask costs (which
 * wraps each callback for async context), and the poller queues one per tick.
 */
const resolved = Promise.resolve();
export function soon(fn: () => void): void {
  void resolved.then(fn);
}

/**
 * Publications deferred by their producers (RingFrameSink.commitSoon) until this process next looks
 * at its rings: the next tick makes them before it drains or spins, or a microtask when no tick is
 * queued before it (one queued through setImmediate, or none).
 */
let owed: Array<() => void> = [];
let owedQueued = false;

export function publishSoon(publish: () => void): void {
  owed.push(publish);
  if (!owedQueued) {
    owedQueued = true;
    soon(publishOwed);
  }
}

/** Surfaces `err` as uncaught, as from any callback, without stopping the caller's loop. */
function rethrowLater(err: unknown): void {
  queueMicrotask(() => {
    throw err;
  });
}

function publishOwed(): void {
  owedQueued = false;
  const list = owed;
  owed = [];
  for (let i = 0; i < list.length; i++) {
    try {
      (list[i] as () => void)();
    } catch (err) {
      rethrowLater(err); // the other producers still publish
    }
  }
}

const hot: ShmChannel[] = [];
let scheduled = false;
let ticksSinceYield = 0;
/** When the chain of ticks last let the event loop run (ms), or -1 before its first look at the clock. */
let yieldedAt = -1;
let emptyTicks = 0;
/** When the current run of empty ticks began (ms), or -1 before it was timed. */
let idleSince = -1;
let spinBudget = MIN_SPIN_MS;
/**
 * Clock of the previous empty tick (-1 after a delivery or an event-loop turn) and the time the
 * current spin lost to stalls: tells a spin that ran from one that waited for a CPU without a
 * system call (getrusage per round trip cost more than the round trip's JavaScript).
 */
let lastEmptyTick = -1;
let stolen = 0;
/**
 * The last spin got much less CPU than wall-clock time: the machine is oversubscribed, and the peer
 * was probably waiting for the very CPU we spun on. Then spinning only delays it: don't grow.
 */
let starved = false;

const CPUS = availableParallelism();
/** How often the spin looks at how many threads the machine is running. */
const CROWD_CHECK_MS = 100;
let crowdCheckedAt = Number.NEGATIVE_INFINITY;
let crowded = false;
/**
 * Consecutive looks that saw more runnable threads than CPUs. Two spinning peers fill both CPUs of a
 * 2-core machine, so a passing helper thread (GC, JIT, a kernel worker) makes a look count; two such
 * looks in a row happened often enough to put a quiet pair into sleep mode for 100 ms at a time
 * (thousands of doorbell round trips). A real third consumer of CPU stays for three looks.
 */
let crowdedLooks = 0;

/**
 * More runnable threads than CPUs right now (the 4th field of /proc/loadavg, read at most every
 * 100 ms, on three looks in a row). Then a spin holds a CPU that other work, often the peer, is queued for, and the
 * scheduler charges the spinner for it: measured at load 8 on 2 cores, spinning sides took a
 * millisecond per round trip where sleeping ones (like a socket) took tens of microseconds. So on
 * a crowded machine the poller sleeps as soon as it finds nothing.
 */
function machineCrowded(now: number): boolean {
  if (crowdingIgnored) return false;
  if (now - crowdCheckedAt < CROWD_CHECK_MS) return crowded;
  crowdCheckedAt = now;
  try {
    const s = readFileSync('/proc/loadavg', 'latin1');
    const slash = s.indexOf('/');
    const running = Number(s.slice(s.lastIndexOf(' ', slash) + 1, slash));
    crowdedLooks = running > CPUS ? crowdedLooks + 1 : 0;
  } catch {
    crowdedLooks = 0; // no /proc (a sandbox without it): keep spinning by the budget alone
  }
  crowded = crowdedLooks >= 3;
  return crowded;
}

let crowdingIgnored = false;

/**
 * Tests: the poller spins by its budget alone, whatever the machine's load, so a test of the spinning
 * poller does not turn into a test of the sleeping one when other work shares the machine.
 */
export function ignoreCrowding(on: boolean): void {
  crowdingIgnored = on;
}

/** A doorbell woke the poller `gap` ms after the ring it rang for fell asleep. */
function woken(gap: number): void {
  if (gap < MISSED_BY_MS && !starved) spinBudget = Math.min(MAX_SPIN_MS, Math.max(spinBudget * 2, gap * 2));
  starved = false;
}

// ------------------------------------------------------------------- doorbells
//
// One watcher per doorbell fd. A connection's own doorbell serves one channel; a doorbell shared by
// the connections between two processes (doorbell.ts) serves all of them: one wake-up per round of
// records instead of one per ring. A shared doorbell says only that some ring rang, so the woken side
// looks at each of its sleeping channels once (one load of `sleeping`, one of the next kind word) and
// wakes those whose producer cleared `sleeping` or that hold records; the rest sleep on.

interface BellWatch {
  watcher: { close(): void };
  channels: ShmChannel[];
}

const bells = new Map<number, BellWatch>();

function joinBell(addon: NativeAddon, fd: number, ch: ShmChannel): BellWatch {
  let w = bells.get(fd);
  if (w === undefined) {
    const fresh: BellWatch = { watcher: { close() {} }, channels: [] };
    fresh.watcher = new addon.FdWatcher(fd, () => bellRang(fresh));
    bells.set(fd, fresh);
    w = fresh;
  }
  w.channels.push(ch);
  return w;
}

function leaveBell(w: BellWatch, ch: ShmChannel): void {
  const i = w.channels.indexOf(ch);
  if (i >= 0) w.channels.splice(i, 1);
  if (w.channels.length > 0) return;
  w.watcher.close();
  for (const [fd, x] of bells) if (x === w) bells.delete(fd);
}

/** Exposed for tests: doorbell watchers this process runs, and the channels on them. */
export function bellStats(): { watchers: number; channels: number } {
  let channels = 0;
  for (const w of bells.values()) channels += w.channels.length;
  return { watchers: bells.size, channels };
}

function bellRang(w: BellWatch): void {
  const now = performance.now();
  const shared = w.channels.length > 1;
  let gap = Number.POSITIVE_INFINITY;
  for (let i = 0; i < w.channels.length; i++) {
    const ch = w.channels[i] as ShmChannel;
    if (ch.closed || (shared && (ch.hot || !ch.rx.peerWoke()))) continue;
    ch.wakeups++;
    ch.rx.awake();
    gap = Math.min(gap, now - ch.sleptAt);
    wake(ch);
  }
  if (gap !== Number.POSITIVE_INFINITY) woken(gap);
}

function wake(ch: ShmChannel): void {
  if (ch.closed) return;
  emptyTicks = 0;
  idleSince = -1;
  if (!ch.hot) {
    ch.hot = true;
    hot.push(ch);
    if (ch.watched === null) unwatchedHot++;
  }
  if (!scheduled) {
    scheduled = true;
    ticksSinceYield = 0;
    yieldedAt = -1;
    soon(tick);
  }
}

/**
 * One chain of ticks polls every hot channel; `scheduled` stays true while the chain lives, so wake()
 * calls made during a tick (a reply published while draining) never start a second chain.
 */
function tick(): void {
  let delivered = 0;
  try {
    if (owed.length > 0) publishOwed();
    delivered = drainHot();
    if (delivered === 0 && hot.length > 0 && spinInline()) delivered = drainHot();
  } catch (err) {
    rethrowLater(err); // the other channels keep being polled
  }
  if (hot.length === 0) {
    scheduled = false;
    return;
  }
  if (delivered > 0) {
    emptyTicks = 0;
    idleSince = -1;
  } else emptyTicks++;
  if (++ticksSinceYield >= YIELD_CHECK_TICKS && yieldDue()) {
    lastEmptyTick = -1; // the event-loop turn is this process's own work, not a stall
    setImmediate(tick);
    return;
  }
  if (emptyTicks === 0) {
    lastEmptyTick = -1;
    soon(tick);
    return;
  }
  // An empty tick spun inline for a microsecond or two, so one clock read per tick is cheap.
  const now = performance.now();
  if (idleSince < 0) {
    idleSince = now;
    stolen = 0;
  } else if (lastEmptyTick >= 0 && now - lastEmptyTick > STALL_MS) stolen += now - lastEmptyTick;
  lastEmptyTick = now;
  const wall = now - idleSince;
  const crowd = machineCrowded(now);
  if (wall < spinBudget && !crowd) {
    soon(tick);
    return;
  }
  lastEmptyTick = -1;
  starved = crowd || (wall > 0.05 && stolen > 0.4 * wall);
  spinBudget = starved ? MIN_SPIN_MS : Math.max(MIN_SPIN_MS, spinBudget * 0.75);
  for (let i = hot.length - 1; i >= 0; i--) {
    const ch = hot[i] as ShmChannel;
    if (ch.sleep(now)) {
      if (ch.closed) continue; // the peer broke the ring: close() already took it off the list
      ch.hot = false;
      hot.splice(i, 1);
      if (ch.watched === null) unwatchedHot--;
    } else sweepOwed = true; // records the board may not have announced
  }
  if (hot.length > 0) {
    soon(tick);
    return;
  }
  scheduled = false;
}

/** Whether the chain has kept the event loop waiting for YIELD_MS; restarts the count when it has. */
function yieldDue(): boolean {
  ticksSinceYield = 0;
  const now = performance.now();
  if (yieldedAt < 0) yieldedAt = now;
  if (now - yieldedAt < YIELD_MS) return false;
  yieldedAt = now;
  return true;
}

function drainHot(): number {
  if (boardMode) return drainReady();
  let delivered = 0;
  for (let i = 0; i < hot.length; i++) delivered += (hot[i] as ShmChannel).drain();
  return delivered;
}

/** Watches the hot rings' tails (or the boards) for a moment; true as soon as one has a record. */
function spinInline(): boolean {
  if (boardMode) {
    for (let n = 0; n < INLINE_CHECKS; n++) {
      if (boardsSayReady()) return true;
      if (unwatchedHot > 0) {
        for (let i = 0; i < hot.length; i++) {
          const ch = hot[i] as ShmChannel;
          if (ch.watched === null && ch.rx.hasData()) return true;
        }
      }
    }
    return false;
  }
  for (let n = 0; n < INLINE_CHECKS; n++) {
    for (let i = 0; i < hot.length; i++) if ((hot[i] as ShmChannel).rx.hasData()) return true;
  }
  return false;
}

// ------------------------------------------------------------- readiness boards
//
// With a few connections the poller checks each hot ring's tail, which is cheapest: the tail line is
// read anyway. With many, a tick that walks every ring costs more than the records it finds, and the
// inline spin multiplies that. From BOARD_MIN watched channels on, each consumer asks its producer to
// also mark the ring's bit on the readiness board of the connection (board.ts), and a tick reads the
// boards' words instead: one load per 32 connections, then drains only the rings whose bits were set.
// A full sweep of the hot rings every FULL_SWEEP_TICKS ticks (and when a ring found to hold records
// refused to sleep) catches anything the bits did not announce: they are hints a peer could clear.

/** Watched channels from which the boards take over from scanning, and below which scanning resumes. */
const BOARD_MIN = 4;
const BOARD_MAX_OFF = 2;
const FULL_SWEEP_TICKS = 64;

/** One board this process consumes from, and its channels by bit. */
interface Watched {
  board: Board;
  channels: Map<number, ShmChannel>;
  /** Bitmap word indices holding at least one of our bits, and our bits in each (parallel arrays). */
  wordIdx: number[];
  mine: number[];
}

const boards: Watched[] = [];
let watchedChannels = 0;
let boardMode = false;
let sweepOwed = false;
let sinceSweep = 0;
/** Hot channels without a board (their rings are checked directly even in board mode). */
let unwatchedHot = 0;
/** Channels whose last drain stopped at DRAIN_BATCH (their bit is spent; more records wait). */
let again: ShmChannel[] = [];
let againNext: ShmChannel[] = [];

/** The poller's view of the boards (metrics and tests): whether it reads them, and how many rings they serve. */
export function boardStats(): {
  boardMode: boolean;
  watchedChannels: number;
  boards: number;
  viaBoard: number;
  viaSweep: number;
} {
  return { boardMode, watchedChannels, boards: boards.length, viaBoard, viaSweep };
}

/** Records delivered in board mode because their bit was set, and by the full sweeps (metrics). */
let viaBoard = 0;
let viaSweep = 0;

function watchBoard(ch: ShmChannel, board: Board, bit: number): void {
  let w = boards.find((b) => b.board === board);
  if (w === undefined) {
    w = { board, channels: new Map(), wordIdx: [], mine: [] };
    boards.push(w);
  }
  // A bit another of our channels holds (a confused peer) leaves this one scanned.
  if (w.channels.has(bit)) return;
  w.channels.set(bit, ch);
  ch.watched = w;
  rebuildWords(w);
  watchedChannels++;
  if (boardMode) {
    ch.rx.watchBoard(true);
    sweepOwed = true;
  } else if (watchedChannels >= BOARD_MIN) setBoardMode(true);
}

function unwatchBoard(ch: ShmChannel): void {
  const w = ch.watched;
  if (w === null) return;
  ch.watched = null;
  for (const [bit, c] of w.channels) if (c === ch) w.channels.delete(bit);
  rebuildWords(w);
  if (w.channels.size === 0) boards.splice(boards.indexOf(w), 1);
  watchedChannels--;
  if (boardMode && watchedChannels <= BOARD_MAX_OFF) setBoardMode(false);
}

function rebuildWords(w: Watched): void {
  const masks = new Map<number, number>();
  for (const bit of w.channels.keys()) {
    const i = BITMAP_WORD + (bit >>> 5);
    masks.set(i, (masks.get(i) ?? 0) | (1 << (bit & 31)));
  }
  w.wordIdx = [...masks.keys()];
  w.mine = [...masks.values()];
}

/**
 * Switching on: every consumer asks for bits first, then one full sweep drains what was published
 * before its producer saw the request. Switching off: scanning needs nothing from the producers.
 */
function setBoardMode(on: boolean): void {
  boardMode = on;
  for (const w of boards) for (const ch of w.channels.values()) ch.rx.watchBoard(on);
  unwatchedHot = 0;
  for (const ch of hot) if (ch.watched === null) unwatchedHot++;
  sweepOwed = on;
}

function boardsSayReady(): boolean {
  for (let b = 0; b < boards.length; b++) {
    const w = boards[b] as Watched;
    const words = w.board.words;
    for (let k = 0; k < w.wordIdx.length; k++) {
      if ((Atomics.load(words, w.wordIdx[k] as number) & (w.mine[k] as number)) !== 0) return true;
    }
  }
  return again.length > 0;
}

function drainReady(): number {
  if (sweepOwed || ++sinceSweep >= FULL_SWEEP_TICKS) {
    sweepOwed = false;
    sinceSweep = 0;
    again.length = 0;
    let n = 0;
    for (let i = 0; i < hot.length; i++) n += (hot[i] as ShmChannel).drain();
    viaSweep += n;
    return n;
  }
  let n = 0;
  const pending = again;
  again = againNext;
  againNext = pending;
  for (let i = 0; i < pending.length; i++) n += drainOne(pending[i] as ShmChannel);
  pending.length = 0;
  for (let b = 0; b < boards.length; b++) {
    const w = boards[b] as Watched;
    const words = w.board.words;
    for (let k = 0; k < w.wordIdx.length; k++) {
      const i = w.wordIdx[k] as number;
      let v = Atomics.load(words, i) & (w.mine[k] as number);
      if (v === 0) continue;
      // Cleared before draining: a record published meanwhile sets the bit again.
      Atomics.and(words, i, ~v);
      const base = (i - BITMAP_WORD) << 5;
      while (v !== 0) {
        const low = v & -v;
        v ^= low;
        const ch = w.channels.get(base + 31 - Math.clz32(low));
        if (ch !== undefined) n += drainOne(ch);
      }
    }
  }
  viaBoard += n;
  if (unwatchedHot > 0) {
    for (let i = 0; i < hot.length; i++) {
      const ch = hot[i] as ShmChannel;
      if (ch.watched === null) n += ch.drain();
    }
  }
  return n;
}

function drainOne(ch: ShmChannel): number {
  if (ch.closed) return 0;
  const n = ch.drain();
  if (n === DRAIN_BATCH) again.push(ch);
  return n;
}
