import { CellError } from '../errors/index.js';
import { BOARD_BITS, type Board, NO_BIT } from './board.js';

/**
 * A single-producer/single-consumer ring of variable-size records over a SharedArrayBuffer that two
 * processes map. Layout (byte offsets; docs/PROTOCOL.md § 3):
 *
 *   0    head      u32  consumer's release position (monotonic byte counter, wraps at 2^32)
 *   64   tail      u32  producer's publication position (monotonic byte counter; checked, not polled)
 *   128  sleeping  u32  1 while the consumer sleeps on `bell`
 *   132  bell      u32  futex word the producer bumps and wakes when `sleeping` was set
 *   192  magic     u32  'CSR2'
 *   196  capacity  u32  data bytes, a power of two
 *   200  ready_bit u32  the readiness-board bit this ring's producer sets (board.ts), or 0xFFFFFFFF
 *   204  board_on  u32  1 while the consumer watches the board (the producer then marks the bit)
 *   208  bell_id   8 bytes naming the doorbell pair this ring's connection shares with the other
 *                  connections between the same two processes (all zero: the connection's own bells)
 *   256  data
 *
 * head and tail live on separate 64-byte cache lines so the two cores don't fight over one line.
 * A record is a 16-byte header [len u32][reqId u32][kind u32][aux u32] plus the payload padded to 16
 * bytes; a record never straddles the end: the producer fills the rest with a WRAP record and starts
 * again at offset 0.
 *
 * Each record publishes itself: its kind word holds the kind in the low 16 bits and the lap of its
 * position (position >> log2(capacity), low 16 bits) in the high 16, stored last with Atomics.store.
 * The consumer polls the kind word of the record it expects next, which lies on the line it reads
 * anyway: one cache line moves per record instead of two (the record's and tail's). Stale bytes can't
 * pass for a record: before publishing a record the producer zeroes the kind word of the header that
 * follows it, unless that word still belongs to the oldest unreleased record (a full ring), whose
 * kind word carries the previous lap. The producer also stores tail (before the kind words), which
 * the consumer checks against what it read whenever it is about to sleep.
 *
 * The consumer trusts nothing it reads: every length and position is checked against the ring before
 * use, and anything inconsistent throws E_PROTOCOL (the connection is then closed). Records can be
 * released out of order (a handler may settle late); head only moves past the oldest released run.
 */
export const RING_HEADER_BYTES = 256;
export const RECORD_HEADER_BYTES = 16;
export const RING_MAGIC = 0x32525343; // 'CSR2' little-endian
export const KIND_WRAP = 0xffff;
/** Kinds a record may carry (1 … 0xFFFE; 0 marks an unpublished header, 0xFFFF a WRAP). */
export const MAX_KIND = 0xfffe;
/** A tail ahead of every published record for this long is a producer that never publishes them. */
const STUCK_TAIL_MS = 1000;

const HEAD = 0;
const TAIL = 16;
const SLEEPING = 32;
export const BELL_INDEX = 33;
const MAGIC = 48;
const CAPACITY = 49;
const READY_BIT = 50;
const BOARD_ON = 51;
const BELL_ID_BYTE = 208;
export const BELL_ID_BYTES = 8;
const DATA_WORD = RING_HEADER_BYTES / 4;

export const MIN_RING_CAPACITY = 4096;
/** Bookkeeping slots a consumer starts with (see pendingEnds). */
const INITIAL_PENDING_SLOTS = 64;
export const MAX_RING_CAPACITY = 1 << 30;

/** Rings the consumer's doorbell across processes (futexWake in the addon). */
export type Bell = (sab: SharedArrayBuffer, index: number) => void;

export function ringBytesFor(capacity: number): number {
  return RING_HEADER_BYTES + capacity;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function corrupt(what: string, details: Record<string, unknown>): CellError {
  return new CellError('E_PROTOCOL', `shared-memory ring is corrupt: ${what}.`, {
    fix: 'the peer wrote records that break the ring protocol; the connection is closed. Check that both sides run the same Cell version.',
    details,
  });
}

export class RingBuffer {
  readonly sab: SharedArrayBuffer;
  readonly capacity: number;
  /** Largest payload one record can carry; bigger messages travel over the socket. */
  readonly maxPayload: number;
  /** The whole mapping as bytes (payload offsets returned by reserve/next index into this). */
  readonly bytes: Uint8Array;
  private readonly words: Int32Array;
  /** The whole mapping as words (kind words are published and polled atomically). */
  private readonly i32: Int32Array;
  private readonly u32: Uint32Array;
  private readonly mask: number;
  /** log2(capacity): position >>> shift is the lap. */
  private readonly shift: number;
  private readonly bell: Bell | undefined;

  // producer state
  private writePos = 0;
  private publishedPos = 0;
  /** Absolute position of the last reserved record's header (for trimLast). */
  private lastRecordPos = 0;
  private cachedHead = 0;
  /** Kind words reserved and not yet published: pairs (word index, tagged kind), in ring order. */
  private unpublished = new Int32Array(64);
  private unpublishedCount = 0;
  /** The record at lastRecordPos is reserved and unpublished (extendLast may grow it). */
  private lastOpen = false;

  // consumer state
  private readPos = 0;
  private releasedPos = 0;
  /**
   * Records handed out and not yet passed by head, indexed by token & pendingMask. Starts small and
   * doubles when full, up to one slot per 16 bytes of ring (the most records a ring can hold): an
   * idle connection's ring costs a few hundred bytes of bookkeeping, not capacity / 3.
   */
  private pendingEnds: Uint32Array;
  private pendingDone: Uint8Array;
  private pendingMask: number;
  private pendingFirst = 0;
  private pendingNext = 0;

  /** Fields of the record last returned by next() (no allocation per record). */
  kind = 0;
  reqId = 0;
  aux = 0;
  payloadOffset = 0;
  payloadLength = 0;

  /** Writes a fresh header into `sab` (the creating side, before the peer maps it). */
  static initialize(sab: SharedArrayBuffer, capacity: number): void {
    if (!isPowerOfTwo(capacity) || capacity < MIN_RING_CAPACITY || capacity > MAX_RING_CAPACITY) {
      throw new CellError('E_INVALID_ARGUMENT', `ring capacity ${capacity} must be a power of two in 4 KiB..1 GiB.`);
    }
    if (sab.byteLength < ringBytesFor(capacity)) {
      throw new CellError('E_INVALID_ARGUMENT', `ring buffer of ${sab.byteLength} bytes is too small.`);
    }
    const w = new Int32Array(sab, 0, DATA_WORD);
    w.fill(0);
    Atomics.store(w, READY_BIT, NO_BIT | 0);
    Atomics.store(w, CAPACITY, capacity);
    Atomics.store(w, MAGIC, RING_MAGIC);
  }

  /** The creator names the board bit of a fresh ring (before the peer maps it). */
  static setReadyBit(sab: SharedArrayBuffer, bit: number): void {
    Atomics.store(new Int32Array(sab, 0, DATA_WORD), READY_BIT, bit | 0);
  }

  /**
   * The creator names the doorbell pair of a fresh ring (before the peer maps it): connections
   * between the same two processes carry the same id and the same two eventfds (docs/PROTOCOL.md § 3.3).
   */
  static setBellId(sab: SharedArrayBuffer, id: Uint8Array): void {
    new Uint8Array(sab, BELL_ID_BYTE, BELL_ID_BYTES).set(id.subarray(0, BELL_ID_BYTES));
  }

  /** The doorbell pair's id as hex, or '' when the ring has its own doorbells. */
  get bellId(): string {
    const id = this.bytes.subarray(BELL_ID_BYTE, BELL_ID_BYTE + BELL_ID_BYTES);
    return id.every((b) => b === 0) ? '' : Buffer.from(id).toString('hex');
  }

  /** The readiness board this ring's producer marks (or its consumer watches), and the bit. */
  board: Board | undefined;
  readyBit = -1;

  /**
   * Joins the connection's readiness board. The bit comes from the header, written by the creator
   * before the peer mapped it; a bit outside the board leaves the ring without one (it is scanned).
   */
  joinBoard(board: Board): boolean {
    const bit = Atomics.load(this.words, READY_BIT) >>> 0;
    if (bit >= BOARD_BITS) return false;
    this.board = board;
    this.readyBit = bit;
    return true;
  }

  /** Consumer: asks the producer to mark the board bit after each publication (or to stop). */
  watchBoard(on: boolean): void {
    Atomics.store(this.words, BOARD_ON, on ? 1 : 0);
  }

  constructor(sab: SharedArrayBuffer, bell?: Bell) {
    if (sab.byteLength < RING_HEADER_BYTES + MIN_RING_CAPACITY)
      throw corrupt('mapping too small', { bytes: sab.byteLength });
    this.words = new Int32Array(sab, 0, DATA_WORD);
    const magic = Atomics.load(this.words, MAGIC);
    const capacity = Atomics.load(this.words, CAPACITY) >>> 0;
    if (magic !== RING_MAGIC) throw corrupt('bad magic', { magic });
    if (!isPowerOfTwo(capacity) || capacity < MIN_RING_CAPACITY || RING_HEADER_BYTES + capacity > sab.byteLength) {
      throw corrupt('capacity does not match the mapping', { capacity, bytes: sab.byteLength });
    }
    this.sab = sab;
    this.capacity = capacity;
    this.mask = capacity - 1;
    this.maxPayload = capacity / 4 - RECORD_HEADER_BYTES;
    this.bytes = new Uint8Array(sab, 0, RING_HEADER_BYTES + capacity);
    this.u32 = new Uint32Array(sab, 0, (RING_HEADER_BYTES + capacity) / 4);
    this.i32 = new Int32Array(sab, 0, (RING_HEADER_BYTES + capacity) / 4);
    this.shift = 31 - Math.clz32(capacity);
    this.bell = bell;
    const head = Atomics.load(this.words, HEAD) >>> 0;
    const tail = Atomics.load(this.words, TAIL) >>> 0;
    this.writePos = this.publishedPos = tail;
    this.cachedHead = head;
    this.readPos = this.releasedPos = head;
    const slots = Math.min(INITIAL_PENDING_SLOTS, capacity / RECORD_HEADER_BYTES);
    this.pendingEnds = new Uint32Array(slots);
    this.pendingDone = new Uint8Array(slots);
    this.pendingMask = slots - 1;
  }

  // ---------------------------------------------------------------- producer

  /**
   * Reserves a record for `length` payload bytes and writes its header. Returns the offset in `bytes`
   * where the payload goes, or -1 when the ring has no room now. Nothing is visible to the consumer
   * until commit(). Throws for payloads over maxPayload (send those over the socket).
   */
  reserve(kind: number, reqId: number, aux: number, length: number): number {
    if (length > this.maxPayload || length < 0) {
      throw new CellError('E_FRAME_TOO_LARGE', `record of ${length} bytes exceeds the ring's ${this.maxPayload}.`);
    }
    if (!(kind >= 1 && kind <= MAX_KIND)) {
      throw new CellError('E_INVALID_ARGUMENT', `record kind ${kind} is outside 1…${MAX_KIND}.`);
    }
    const need = RECORD_HEADER_BYTES + ((length + 15) & ~15);
    let p = this.writePos & this.mask;
    const toEnd = this.capacity - p;
    const total = need > toEnd ? toEnd + need : need;
    if (((this.writePos - this.cachedHead) >>> 0) + total > this.capacity) {
      this.cachedHead = Atomics.load(this.words, HEAD) >>> 0;
      const used = (this.writePos - this.cachedHead) >>> 0;
      if (used > this.capacity)
        throw corrupt('consumer moved head past tail', { head: this.cachedHead, tail: this.writePos });
      if (used + total > this.capacity) return -1;
    }
    const u32 = this.u32;
    if (need > toEnd) {
      const w = DATA_WORD + (p >> 2);
      u32[w] = toEnd - RECORD_HEADER_BYTES;
      u32[w + 1] = 0;
      u32[w + 2] = 0;
      u32[w + 3] = 0;
      this.queueKind(w + 2, this.tagged(this.writePos, KIND_WRAP));
      this.writePos = (this.writePos + toEnd) >>> 0;
      p = 0;
    }
    const w = DATA_WORD + (p >> 2);
    u32[w] = length;
    u32[w + 1] = reqId;
    u32[w + 2] = 0; // published by commit
    u32[w + 3] = aux;
    this.queueKind(w + 2, this.tagged(this.writePos, kind));
    this.lastRecordPos = this.writePos;
    this.lastOpen = true;
    this.writePos = (this.writePos + need) >>> 0;
    this.clearNext();
    return RING_HEADER_BYTES + p + RECORD_HEADER_BYTES;
  }

  /** The kind word of a record at absolute position `pos`: its lap above, its kind below. */
  private tagged(pos: number, kind: number): number {
    return ((pos >>> this.shift) << 16) | kind | 0;
  }

  private queueKind(word: number, value: number): void {
    if (this.unpublishedCount * 2 === this.unpublished.length) {
      const grown = new Int32Array(this.unpublished.length * 2);
      grown.set(this.unpublished);
      this.unpublished = grown;
    }
    this.unpublished[this.unpublishedCount * 2] = word;
    this.unpublished[this.unpublishedCount * 2 + 1] = value;
    this.unpublishedCount++;
  }

  /**
   * Zeroes the kind word of the header after the last reservation (free space), so whatever an
   * earlier lap left there can't pass for the next record. Not when the ring is exactly full: that
   * word is the header of the oldest record still held, whose kind word carries the previous lap.
   */
  private clearNext(): void {
    if ((this.writePos - this.cachedHead) >>> 0 === this.capacity) {
      this.cachedHead = Atomics.load(this.words, HEAD) >>> 0;
      if ((this.writePos - this.cachedHead) >>> 0 === this.capacity) return;
    }
    this.u32[DATA_WORD + ((this.writePos & this.mask) >> 2) + 2] = 0;
  }

  /** Shrinks the last reserved (uncommitted) record to `length` payload bytes. */
  trimLast(length: number): void {
    const p = this.lastRecordPos & this.mask;
    const w = DATA_WORD + (p >> 2);
    if (length > (this.u32[w] as number) || length < 0) {
      throw new CellError('E_INTERNAL', `cannot grow a reserved ring record (${this.u32[w]} → ${length} bytes).`);
    }
    this.u32[w] = length;
    this.writePos = (this.lastRecordPos + RECORD_HEADER_BYTES + ((length + 15) & ~15)) >>> 0;
    this.clearNext();
  }

  /**
   * Grows the last reserved record by `length` payload bytes while it is still unpublished, so a run
   * of frames committed together shares one record (one header, one kind word, one release). Returns
   * the offset of the new bytes, or -1: nothing unpublished, the last record is not the one whose
   * payload starts at `payload` or not of `kind`, it would pass `limit` bytes or the ring's end
   * (records never wrap), or the ring is full.
   */
  extendLast(kind: number, payload: number, length: number, limit: number): number {
    if (!this.lastOpen) return -1;
    const p = this.lastRecordPos & this.mask;
    if (RING_HEADER_BYTES + p + RECORD_HEADER_BYTES !== payload) return -1;
    if (((this.unpublished[this.unpublishedCount * 2 - 1] as number) & 0xffff) !== kind) return -1;
    const w = DATA_WORD + (p >> 2);
    const old = this.u32[w] as number;
    const grown = old + length;
    const size = RECORD_HEADER_BYTES + ((grown + 15) & ~15);
    if (grown > limit || grown > this.maxPayload || p + size > this.capacity) return -1;
    const end = (this.lastRecordPos + size) >>> 0;
    const growth = (end - this.writePos) >>> 0;
    if (((this.writePos - this.cachedHead) >>> 0) + growth > this.capacity) {
      this.cachedHead = Atomics.load(this.words, HEAD) >>> 0;
      if (((this.writePos - this.cachedHead) >>> 0) + growth > this.capacity) return -1;
    }
    this.u32[w] = grown;
    this.writePos = end;
    this.clearNext();
    return RING_HEADER_BYTES + p + RECORD_HEADER_BYTES + old;
  }

  /** Sets the `aux` word of the last reserved (uncommitted) record: a BIG record's frame length. */
  setLastAux(aux: number): void {
    this.u32[DATA_WORD + ((this.lastRecordPos & this.mask) >> 2) + 3] = aux;
  }

  /** Position just past the last reserved record (a BIG record's slot is free once head reaches it). */
  get reservedEnd(): number {
    return this.writePos;
  }

  /** The consumer released every record before `pos` (head reached it; positions wrap at 2^32). */
  releasedThrough(pos: number): boolean {
    return (((Atomics.load(this.words, HEAD) >>> 0) - pos) | 0) >= 0;
  }

  /** Drops the last reserved record, which its writer abandoned (an encoder failed half-way). */
  rollbackLast(): void {
    if (this.writePos === this.publishedPos) return;
    this.writePos = this.lastRecordPos;
    this.unpublishedCount--; // its header's kind word stays 0: the next record starts there
    this.lastOpen = false;
  }

  /** Copies a payload into a fresh record; false when the ring is full (nothing written). */
  write(kind: number, reqId: number, aux: number, payload: Uint8Array): boolean {
    const off = this.reserve(kind, reqId, aux, payload.length);
    if (off < 0) return false;
    this.bytes.set(payload, off);
    return true;
  }

  /** Publishes every reserved record and rings the consumer's bell if it sleeps. */
  commit(): void {
    if (this.commitQuiet()) this.ring();
  }

  /**
   * Publishes every reserved record. Returns true when the consumer sleeps: the caller then owes it
   * one ring() (which may wait until a run of commits is done: later commits see `sleeping` cleared
   * and leave the wake-up to that ring).
   */
  commitQuiet(): boolean {
    if (this.writePos === this.publishedPos) return false;
    this.publishedPos = this.writePos;
    this.lastOpen = false;
    // tail first (a consumer that has seen a record never finds tail behind it), then the kind words,
    // the run's first one last and the only atomic store: a consumer reads a run from its first
    // record on, so seeing that one (which synchronises with this store) it sees everything before it.
    // One fenced store per run, not per record: a pipelined run publishes as cheaply as a tail store.
    this.u32[TAIL] = this.writePos;
    const q = this.unpublished;
    for (let i = this.unpublishedCount - 1; i > 0; i--) this.i32[q[2 * i] as number] = q[2 * i + 1] as number;
    Atomics.store(this.i32, q[0] as number, q[1] as number);
    this.unpublishedCount = 0;
    // After the tail: a consumer that clears the bit and then drains sees the record either way.
    if (this.board !== undefined && Atomics.load(this.words, BOARD_ON) !== 0) this.board.mark(this.readyBit);
    if (Atomics.load(this.words, SLEEPING) !== 0) {
      Atomics.store(this.words, SLEEPING, 0);
      Atomics.add(this.words, BELL_INDEX, 1);
      return true;
    }
    return false;
  }

  /**
   * Producer side: nothing reserved or unpublished, and the consumer has released every record (one
   * atomic load of head). Then the consumer reads nothing in the data area until the next commit, so
   * its pages may be given back (ShmChannel's idle trim).
   */
  producerIdle(): boolean {
    if (this.writePos !== this.publishedPos) return false;
    this.cachedHead = Atomics.load(this.words, HEAD) >>> 0;
    return this.cachedHead === this.writePos;
  }

  /** Wakes the consumer through its doorbell. */
  ring(): void {
    this.bell?.(this.sab, BELL_INDEX);
  }

  // ---------------------------------------------------------------- consumer

  /**
   * The next committed record, or -1 when there is none. On success returns a token for release()
   * and fills kind/reqId/aux/payloadOffset/payloadLength. Throws E_PROTOCOL on anything malformed;
   * never reads outside the ring.
   */
  next(): number {
    for (;;) {
      // Everything up to a full ring is held: the word at readPos is the oldest record's, not a new one.
      const held = (this.readPos - this.releasedPos) >>> 0;
      if (held >= this.capacity) return -1;
      const p = this.readPos & this.mask;
      const w = DATA_WORD + (p >> 2);
      const word = Atomics.load(this.i32, w + 2);
      if (word >>> 16 !== ((this.readPos >>> this.shift) & 0xffff) || (word & 0xffff) === 0) return -1;
      const kind = word & 0xffff;
      // The producer may use only what the consumer does not hold.
      const avail = this.capacity - held;
      const u32 = this.u32;
      const len = u32[w] as number;
      const toEnd = this.capacity - p;
      if (kind === KIND_WRAP) {
        if (len !== toEnd - RECORD_HEADER_BYTES || toEnd > avail) {
          throw corrupt('bad wrap record', { len, at: p, avail });
        }
        this.pushPending(this.readPos + toEnd, 1);
        this.readPos = (this.readPos + toEnd) >>> 0;
        continue;
      }
      if (len > this.capacity - RECORD_HEADER_BYTES)
        throw corrupt('record length larger than the ring', { len, at: p });
      const need = RECORD_HEADER_BYTES + ((len + 15) & ~15);
      if (need > toEnd || need > avail)
        throw corrupt('record runs past the end of the ring or into records not yet released', { len, at: p, avail });
      this.kind = kind;
      this.reqId = u32[w + 1] as number;
      this.aux = u32[w + 3] as number;
      this.payloadOffset = RING_HEADER_BYTES + p + RECORD_HEADER_BYTES;
      this.payloadLength = len;
      const token = this.pendingNext;
      this.pushPending(this.readPos + need, 0);
      this.readPos = (this.readPos + need) >>> 0;
      return token;
    }
  }

  private pushPending(end: number, done: number): void {
    if (this.pendingNext - this.pendingFirst > this.pendingMask) this.growPending();
    const i = this.pendingNext & this.pendingMask;
    this.pendingEnds[i] = end >>> 0;
    this.pendingDone[i] = done;
    this.pendingNext++;
    if (done === 1 && this.pendingFirst === this.pendingNext - 1) this.advanceHead();
  }

  private growPending(): void {
    const slots = (this.pendingMask + 1) * 2;
    // A ring of capacity C holds at most C / 16 records (each takes at least a 16-byte header).
    if (slots > this.capacity / RECORD_HEADER_BYTES) throw corrupt('more records than the ring can hold', { slots });
    const ends = new Uint32Array(slots);
    const done = new Uint8Array(slots);
    const mask = slots - 1;
    for (let t = this.pendingFirst; t !== this.pendingNext; t++) {
      ends[t & mask] = this.pendingEnds[t & this.pendingMask] as number;
      done[t & mask] = this.pendingDone[t & this.pendingMask] as number;
    }
    this.pendingEnds = ends;
    this.pendingDone = done;
    this.pendingMask = mask;
  }

  /** Frees the record behind `token`; the producer may reuse its bytes once older records are freed too. */
  release(token: number): void {
    if (token < this.pendingFirst || token >= this.pendingNext) return; // already released
    this.pendingDone[token & this.pendingMask] = 1;
    if (token === this.pendingFirst) this.advanceHead();
  }

  private advanceHead(): void {
    let first = this.pendingFirst;
    let head = this.releasedPos;
    while (first !== this.pendingNext && this.pendingDone[first & this.pendingMask] === 1) {
      head = this.pendingEnds[first & this.pendingMask] as number;
      first++;
    }
    if (head !== this.releasedPos) {
      this.pendingFirst = first;
      this.releasedPos = head;
      if (this.holdingHead) this.headOwed = true;
      else Atomics.store(this.words, HEAD, head | 0);
    }
  }

  private holdingHead = false;
  private headOwed = false;

  /**
   * Between holdHead() and publishHead(), released space is handed back to the producer once, at the
   * end, instead of with one store per record (a consumer draining a run of records it frees at once).
   */
  holdHead(): void {
    this.holdingHead = true;
  }

  publishHead(): void {
    this.holdingHead = false;
    if (this.headOwed) {
      this.headOwed = false;
      Atomics.store(this.words, HEAD, this.releasedPos | 0);
    }
  }

  /** The magic word reads as zero: the peer freed the ring (its pages were punched out). */
  get released(): boolean {
    return Atomics.load(this.words, MAGIC) === 0;
  }

  /** Records handed out by next() and not yet released. */
  get unreleased(): number {
    let n = 0;
    for (let t = this.pendingFirst; t !== this.pendingNext; t++) if (this.pendingDone[t & this.pendingMask] === 0) n++;
    return n;
  }

  /** True when the next record is already published (a plain read of its kind word, no fence). */
  hasKnown(): boolean {
    return this.publishedAt(this.u32[DATA_WORD + ((this.readPos & this.mask) >> 2) + 2] as number);
  }

  /** True when a published record is waiting (one atomic load of the line the record lies on). */
  hasData(): boolean {
    return this.publishedAt(Atomics.load(this.i32, DATA_WORD + ((this.readPos & this.mask) >> 2) + 2));
  }

  private publishedAt(word: number): boolean {
    if ((this.readPos - this.releasedPos) >>> 0 >= this.capacity) return false;
    return (word & 0xffff) !== 0 && word >>> 16 === ((this.readPos >>> this.shift) & 0xffff);
  }

  private stuckTail = -1;
  private stuckSince = 0;

  /**
   * Announces that the consumer is about to sleep. Returns the bell value to futex-wait on, or -1 if a
   * record arrived meanwhile (then don't sleep). The producer's commit sees `sleeping` and rings.
   * Also checks tail against what was read (tail is stored before the kind words): behind the records
   * read, outside the ring, or ahead of records that stay unpublished: E_PROTOCOL.
   */
  prepareSleep(): number {
    const seq = Atomics.load(this.words, BELL_INDEX);
    Atomics.store(this.words, SLEEPING, 1);
    if (this.hasData()) {
      Atomics.store(this.words, SLEEPING, 0);
      return -1;
    }
    const tail = Atomics.load(this.words, TAIL) >>> 0;
    if (tail === this.readPos) {
      this.stuckTail = -1;
      return seq;
    }
    Atomics.store(this.words, SLEEPING, 0);
    const ahead = (tail - this.releasedPos) >>> 0;
    const read = (this.readPos - this.releasedPos) >>> 0;
    if (ahead > this.capacity || ahead < read || (tail & 15) !== 0) {
      throw corrupt('tail disagrees with the records published', {
        tail,
        readPos: this.readPos,
        head: this.releasedPos,
      });
    }
    // A producer between its tail store and its kind stores: stay awake. One that stays there is broken.
    const now = Date.now();
    if (this.stuckTail !== tail) {
      this.stuckTail = tail;
      this.stuckSince = now;
    } else if (now - this.stuckSince > STUCK_TAIL_MS) {
      throw corrupt('tail ahead of records never published', { tail, readPos: this.readPos });
    }
    return -1;
  }

  /**
   * Consumer, while asleep on a doorbell other rings share: true when this ring is what rang it (its
   * producer cleared `sleeping`) or holds a record anyway. A sleeping ring of a shared doorbell is
   * woken only then, so one ring's traffic does not keep the others awake.
   */
  peerWoke(): boolean {
    return Atomics.load(this.words, SLEEPING) === 0 || this.hasData();
  }

  /** Called when woken (or when giving up sleep). */
  awake(): void {
    Atomics.store(this.words, SLEEPING, 0);
  }
}
