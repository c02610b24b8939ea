import { randomBytes } from 'node:crypto';
import type { NativeAddon } from './native.js';

/**
 * The readiness board: one small shared page per serving process that tells a consumer which of
 * its rings have records, so a poller serving many connections checks one or two words instead of
 * every ring (docs/PROTOCOL.md § 3.3.1). Layout (byte offsets, u32 little-endian):
 *
 *   0    magic   'CSB1'
 *   4    bits    number of bits in the bitmap (BOARD_BITS)
 *   8    id      8 random bytes naming this board (a client maps one board once, whatever the fd)
 *   64   bitmap  BOARD_BITS bits: bit b is word 16 + (b >> 5), mask 1 << (b & 31)
 *
 * The serving process creates the board (a sealed memfd) and hands it out with every connection's
 * rings. A connection owns slot s: bit s says "the client→server ring has records", bit
 * TO_CLIENT_BIT + s "the server→client ring has records"; each ring's header names its bit.
 * A producer sets its ring's bit after publishing (only while the consumer asks for it); the consumer
 * clears the bits it owns with one atomic AND before draining those rings. The bits are hints: a peer
 * that clears bits it does not own only delays records until the consumer's periodic full sweep.
 */
export const BOARD_MAGIC = 0x31425343; // 'CSB1' little-endian
export const BOARD_BYTES = 4096;
export const BOARD_SLOTS = 1024;
export const TO_CLIENT_BIT = BOARD_SLOTS;
export const BOARD_BITS = 2 * BOARD_SLOTS;
/** First bitmap word. */
export const BITMAP_WORD = 16;
/** A ring header's `ready_bit` when the ring has no board bit. */
export const NO_BIT = 0xffffffff;

export class Board {
  readonly sab: SharedArrayBuffer;
  readonly words: Int32Array;
  readonly id: string;
  /** Connections using this mapping (it is unmapped when the last one goes). */
  refs = 0;

  constructor(sab: SharedArrayBuffer) {
    this.sab = sab;
    this.words = new Int32Array(sab, 0, BOARD_BYTES / 4);
    this.id = Buffer.from(sab, 8, 8).toString('hex');
  }

  /** Writes a fresh board header into `sab` (the creating side). */
  static initialize(sab: SharedArrayBuffer): void {
    const w = new Int32Array(sab, 0, BOARD_BYTES / 4);
    w.fill(0);
    new Uint8Array(sab, 8, 8).set(randomBytes(8));
    Atomics.store(w, 1, BOARD_BITS);
    Atomics.store(w, 0, BOARD_MAGIC);
  }

  /** True when `sab` holds a board this side can use (magic and size checked). */
  static valid(sab: SharedArrayBuffer): boolean {
    if (sab.byteLength < BOARD_BYTES) return false;
    const w = new Int32Array(sab, 0, 2);
    return Atomics.load(w, 0) === BOARD_MAGIC && Atomics.load(w, 1) >>> 0 === BOARD_BITS;
  }

  /** Producer: marks `bit` (skips the write when it is already set: a load keeps the line shared). */
  mark(bit: number): void {
    const i = BITMAP_WORD + (bit >>> 5);
    const m = 1 << (bit & 31);
    if ((Atomics.load(this.words, i) & m) === 0) Atomics.or(this.words, i, m);
  }
}

// ------------------------------------------------------------ the serving process's own board

let local: { board: Board; fd: number; free: Uint8Array } | null = null;

/**
 * This process's board (created on first use) and a free slot on it, or null when every slot is
 * taken or no board can be made (the connection then works without one: its rings are scanned).
 */
export function takeSlot(addon: NativeAddon): { board: Board; fd: number; slot: number } | null {
  if (local === null) {
    let fd = -1;
    try {
      fd = addon.memfdCreate('cell-board', BOARD_BYTES);
      const sab = addon.mmapShared(fd, BOARD_BYTES);
      Board.initialize(sab);
      local = { board: new Board(sab), fd, free: new Uint8Array(BOARD_SLOTS).fill(1) };
    } catch {
      if (fd >= 0) addon.closeFd(fd);
      return null;
    }
  }
  const slot = local.free.indexOf(1);
  if (slot < 0) return null;
  local.free[slot] = 0;
  // A previous owner's bits may still be set: harmless, the consumer just looks once for nothing.
  local.board.refs++;
  return { board: local.board, fd: local.fd, slot };
}

export function freeSlot(slot: number): void {
  if (local === null || slot < 0 || slot >= BOARD_SLOTS || local.free[slot] === 1) return;
  local.free[slot] = 1;
  local.board.refs--;
}

// ------------------------------------------------------------ boards of the processes we call

const attached = new Map<string, Board>();

/**
 * Maps a board handed over with a connection's rings; a board already mapped (another connection to
 * the same process) is reused, so the poller looks at each board once. Takes ownership of `fd`.
 * Returns null when the fd is not a usable board (then the connection works without one).
 */
export function attachBoard(addon: NativeAddon, fd: number): Board | null {
  let sab: SharedArrayBuffer;
  try {
    sab = addon.mmapShared(fd, BOARD_BYTES);
  } catch {
    addon.closeFd(fd);
    return null;
  }
  addon.closeFd(fd);
  if (!Board.valid(sab)) {
    addon.unmapShared(sab);
    return null;
  }
  const fresh = new Board(sab);
  const known = attached.get(fresh.id);
  if (known !== undefined) {
    addon.unmapShared(sab);
    known.refs++;
    return known;
  }
  fresh.refs = 1;
  attached.set(fresh.id, fresh);
  return fresh;
}

export function detachBoard(addon: NativeAddon, board: Board): void {
  if (--board.refs > 0 || attached.get(board.id) !== board) return;
  attached.delete(board.id);
  try {
    addon.unmapShared(board.sab);
  } catch {
    // already replaced
  }
}
