import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import { CellError } from '../errors/index.js';
import { DEFAULT_MAX_FRAME, decodeErrorPayload, FrameType, HEADER_SIZE, readU32 } from '../frame/index.js';
import { attachBoard, type Board, detachBoard, freeSlot, TO_CLIENT_BIT, takeSlot } from './board.js';
import { adoptBells, type BellPair, Ringer, releaseBells, shareBells } from './doorbell.js';
import { loadNative, type NativeAddon } from './native.js';
import { RING_HEADER_BYTES, RingBuffer, ringBytesFor } from './ring.js';

/**
 * The upgrade from a Unix-socket connection to a pair of shared-memory rings (docs/PROTOCOL.md § 3).
 *
 *  1. client → server on the connection: UPGRADE_REQUEST (feature bits: big slots, shared doorbells).
 *  2. server checks SO_PEERCRED (same uid), creates two sealed memfds and answers UPGRADE_CHALLENGE
 *     { challenge[32], ticket[16], capacity u32 }, or UPGRADE_DECLINED { reason } (never silence).
 *  3. client opens a second, short-lived connection to the same socket and sends the pickup request
 *     "CELLSHM1" ‖ ticket ‖ HMAC-SHA256(key = challenge, "cell-shm-v1" ‖ ticket).
 *  4. server checks that connection's SO_PEERCRED (same uid and pid as the first) and the proof, then
 *     sends "OK" ‖ capacity (‖ slot bytes) with SCM_RIGHTS [client→server ring, server→client ring,
 *     client→server doorbell, server→client doorbell, (big slots,) (board)] and closes it. Doorbells
 *     are eventfds. docs/PROTOCOL.md § 3.2 has the exact answer shapes.
 *
 * The fds travel on their own connection because Node reads the main socket continuously: a
 * recvmsg there would race libuv for the bytes. The client receives them on a native worker thread
 * (fetchFds), so nothing in Node ever reads that socket.
 */
export const PICKUP_MAGIC = Buffer.from('CELLSHM1', 'latin1');
export const CHALLENGE_BYTES = 32;
export const TICKET_BYTES = 16;
export const PROOF_BYTES = 32;
export const PICKUP_REQUEST_BYTES = PICKUP_MAGIC.length + TICKET_BYTES + PROOF_BYTES;
export const DEFAULT_RING_CAPACITY = 1 << 20;
const OFFER_TTL_MS = 5000;
/**
 * UPGRADE_REQUEST's method field holds feature bits the client supports (an old server ignores it).
 * BIG_SLOTS: one big slot per direction, a sealed memfd carrying a frame too large for its ring (§ 3.3.2).
 */
export const UPGRADE_FEATURE_BIG_SLOTS = 0x01;
/**
 * SHARED_BELLS: the client watches one doorbell per server process, so the server may hand every
 * connection from that client process the same two eventfds, named by `bell_id` in the ring headers
 * (§ 3.3, Sleeping). A client without the bit gets two eventfds of its own per connection, as before.
 */
export const UPGRADE_FEATURE_SHARED_BELLS = 0x02;
/**
 * Bytes of each big slot for rings of `capacity`: 16 rings' worth, at most the frame limit. Scaling
 * with the ring keeps `ringCapacity` the one memory knob of § 3.6 (a cell that lowers it to bound
 * its shared memory bounds its slots too); with the default 1 MiB rings a slot takes any frame.
 */
export function slotBytesFor(capacity: number): number {
  return Math.min(DEFAULT_MAX_FRAME, capacity * 16);
}
/** Smallest big slot a client accepts (anything smaller than a ring's quarter is of no use). */
const MIN_BIG_SLOT_BYTES = 4096;
const PROOF_LABEL = Buffer.from('cell-shm-v1', 'utf8');

/** HMAC-SHA256(challenge, "cell-shm-v1" ‖ ticket): proves the pickup comes from whoever read the offer. */
export function shmProof(challenge: Uint8Array, ticket: Uint8Array): Buffer {
  return createHmac('sha256', challenge).update(PROOF_LABEL).update(ticket).digest();
}

function proofMatches(expected: Buffer, got: Uint8Array): boolean {
  return got.length === expected.length && timingSafeEqual(expected, got);
}

/** Why this process won't use shared memory at all, or undefined if it can. */
export function localShmDecline(): string | undefined {
  if (
    process.env.CELL_DISABLE_SHM !== undefined &&
    process.env.CELL_DISABLE_SHM !== '' &&
    process.env.CELL_DISABLE_SHM !== '0'
  ) {
    return 'CELL_DISABLE_SHM is set';
  }
  const native = loadNative();
  return native.reason;
}

/** The two rings of one upgraded connection, as seen by one side. */
export interface RingPair {
  /** Ring this side produces into. */
  tx: RingBuffer;
  /** Ring this side consumes. */
  rx: RingBuffer;
  /** The rx ring's doorbell (an eventfd this side watches; the peer signals it). */
  rxBell: number;
  /** The big slots (§ 3.3.2), when both sides agreed on them: tx this side writes, rx it reads. */
  txSlot: SharedArrayBuffer | null;
  rxSlot: SharedArrayBuffer | null;
  addon: NativeAddon;
  /** Frees the shared pages at once (the mappings themselves go when the buffers are collected). */
  free(): void;
}

export interface UpgradeChallenge {
  challenge: Buffer;
  ticket: Buffer;
  capacity: number;
}

export function encodeChallenge(c: UpgradeChallenge): Buffer {
  const b = Buffer.alloc(CHALLENGE_BYTES + TICKET_BYTES + 4);
  c.challenge.copy(b, 0);
  c.ticket.copy(b, CHALLENGE_BYTES);
  b.writeUInt32LE(c.capacity, CHALLENGE_BYTES + TICKET_BYTES);
  return b;
}

export function decodeChallenge(b: Uint8Array): UpgradeChallenge {
  if (b.length !== CHALLENGE_BYTES + TICKET_BYTES + 4) {
    throw new CellError(
      'E_PROTOCOL',
      `upgrade challenge of ${b.length} bytes (expected ${CHALLENGE_BYTES + TICKET_BYTES + 4}).`,
    );
  }
  const buf = Buffer.from(b.buffer, b.byteOffset, b.length);
  return {
    challenge: Buffer.from(buf.subarray(0, CHALLENGE_BYTES)),
    ticket: Buffer.from(buf.subarray(CHALLENGE_BYTES, CHALLENGE_BYTES + TICKET_BYTES)),
    capacity: buf.readUInt32LE(CHALLENGE_BYTES + TICKET_BYTES),
  };
}

interface Offer<C> {
  context: C;
  challenge: Buffer;
  ticket: string;
  pid: number;
  fds: number[];
  /** The server's mappings [c2s ring, s2c ring, c2s slot?, s2c slot?], made at the offer, kept for pickup. */
  maps: SharedArrayBuffer[];
  /** Bytes of each big slot, 0 without them. */
  slotBytes: number;
  capacity: number;
  timer: NodeJS.Timeout;
  /** The connection's slot on this process's readiness board (board.ts), if it got one. */
  board: { board: Board; fd: number; slot: number } | null;
  /** The doorbells it shares with the caller's other connections (fds[2], fds[3]), if it asked. */
  bells: BellPair | null;
}

export type OfferResult = { ok: true; challenge: UpgradeChallenge } | { ok: false; reason: string };

/**
 * The server half: makes offers on upgrade requests and hands the rings out on pickup. `C` is
 * whatever the caller needs to find the connection again (its connection object).
 */
export class ShmHost<C> {
  readonly capacity: number;
  /** Why this server declines every upgrade, if it does. */
  readonly declineReason: string | undefined;
  private readonly offers = new Map<string, Offer<C>>();

  constructor(options: { capacity?: number } = {}) {
    this.capacity = options.capacity ?? DEFAULT_RING_CAPACITY;
    this.declineReason = localShmDecline();
  }

  /** Step 2: called with the fd of the connection that asked. */
  offer(socketFd: number, context: C, features = 0): OfferResult {
    if (this.declineReason !== undefined) return { ok: false, reason: `server: ${this.declineReason}` };
    const addon = loadNative().addon as NativeAddon;
    let peer: { pid: number; uid: number };
    try {
      peer = addon.peerCred(socketFd);
    } catch (err) {
      return { ok: false, reason: `server: cannot read peer credentials (${(err as Error).message})` };
    }
    const uid = process.getuid?.() ?? -1;
    if (!mayShareWith(peer.uid, 'server')) {
      return { ok: false, reason: `server: peer uid ${peer.uid} differs from server uid ${uid}` };
    }
    // [c2s ring, s2c ring, c2s doorbell, s2c doorbell]
    const fds: number[] = [];
    const maps: SharedArrayBuffer[] = [];
    let bells: BellPair | null = null;
    try {
      for (const dir of ['c2s', 's2c']) {
        const fd = addon.memfdCreate(`cell-ring-${dir}`, ringBytesFor(this.capacity));
        fds.push(fd);
        const map = addon.mmapShared(fd, ringBytesFor(this.capacity));
        maps.push(map);
        RingBuffer.initialize(map, this.capacity);
      }
      // pid 0: a caller in a pid namespace this process cannot see; two such callers would look alike.
      if ((features & UPGRADE_FEATURE_SHARED_BELLS) !== 0 && peer.pid > 0) {
        bells = shareBells(addon, peer.pid);
        fds.push(bells.c2s, bells.s2c);
        for (const map of maps) RingBuffer.setBellId(map, bells.id);
      } else fds.push(addon.eventfdCreate(), addon.eventfdCreate());
      if ((features & UPGRADE_FEATURE_BIG_SLOTS) !== 0) {
        for (const dir of ['c2s', 's2c']) {
          const fd = addon.memfdCreate(`cell-slot-${dir}`, slotBytesFor(this.capacity));
          fds.push(fd);
          maps.push(addon.mmapShared(fd, slotBytesFor(this.capacity)));
        }
      }
    } catch (err) {
      releaseRings(addon, fds, maps, ringBytesFor(this.capacity), bells);
      return { ok: false, reason: `server: cannot create shared memory (${(err as Error).message})` };
    }
    const board = takeSlot(addon);
    if (board !== null) {
      RingBuffer.setReadyBit(maps[0] as SharedArrayBuffer, board.slot);
      RingBuffer.setReadyBit(maps[1] as SharedArrayBuffer, TO_CLIENT_BIT + board.slot);
    }
    const challenge = randomBytes(CHALLENGE_BYTES);
    const ticket = randomBytes(TICKET_BYTES);
    const key = ticket.toString('hex');
    const timer = setTimeout(() => this.drop(key), OFFER_TTL_MS);
    timer.unref();
    this.offers.set(key, {
      context,
      challenge,
      ticket: key,
      pid: peer.pid,
      fds,
      maps,
      slotBytes: fds.length === 6 ? slotBytesFor(this.capacity) : 0,
      capacity: this.capacity,
      timer,
      board,
      bells,
    });
    return { ok: true, challenge: { challenge, ticket, capacity: this.capacity } };
  }

  /** True while an offer made for `context` waits to be picked up. */
  hasOffer(context: C): boolean {
    for (const o of this.offers.values()) if (o.context === context) return true;
    return false;
  }

  /** Drops every offer made for `context` (its connection closed before pickup). */
  forget(context: C): void {
    for (const [key, o] of this.offers) if (o.context === context) this.drop(key);
  }

  /** Offers waiting for their pickup (each holds two memfds, two eventfds and two mappings). */
  get pendingOffers(): number {
    return this.offers.size;
  }

  private drop(key: string): void {
    const o = this.offers.get(key);
    if (o === undefined) return;
    this.offers.delete(key);
    clearTimeout(o.timer);
    if (o.board !== null) freeSlot(o.board.slot);
    releaseRings(loadNative().addon as NativeAddon, o.fds, o.maps, ringBytesFor(o.capacity), o.bells);
  }

  /**
   * Step 4: `request` is the first PICKUP_REQUEST_BYTES of a connection that began with PICKUP_MAGIC.
   * On success sends the fds, ends the pickup socket and returns the offer's context and the rings
   * (server view: rx = client→server). On failure writes the reason to the pickup socket and throws.
   */
  pickUp(socket: Socket, request: Buffer): { context: C; rings: RingPair } {
    const fail = (why: string, code: 'E_SHM_AUTH' | 'E_PROTOCOL' = 'E_SHM_AUTH'): never => {
      socket.end(`ERR ${why}`);
      throw new CellError(code, `shared-memory pickup refused: ${why}.`);
    };
    if (request.length !== PICKUP_REQUEST_BYTES || !request.subarray(0, PICKUP_MAGIC.length).equals(PICKUP_MAGIC)) {
      return fail('malformed pickup request', 'E_PROTOCOL');
    }
    const addon = loadNative().addon;
    if (addon === undefined || this.declineReason !== undefined)
      return fail('shared memory is unavailable on the server');
    const ticket = request.subarray(PICKUP_MAGIC.length, PICKUP_MAGIC.length + TICKET_BYTES);
    const key = ticket.toString('hex');
    const offer = this.offers.get(key);
    if (offer === undefined) return fail('unknown or expired ticket');
    this.offers.delete(key);
    clearTimeout(offer.timer);
    const closeFds = () => {
      if (offer.board !== null) freeSlot(offer.board.slot);
      releaseRings(addon, offer.fds, offer.maps, ringBytesFor(offer.capacity), offer.bells);
    };
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) {
      closeFds();
      return fail('pickup socket has no file descriptor');
    }
    const peer = addon.peerCred(fd);
    if (!mayShareWith(peer.uid, 'server') || peer.pid !== offer.pid) {
      closeFds();
      return fail(`pickup from uid ${peer.uid} pid ${peer.pid}, not the process that asked`);
    }
    const proof = request.subarray(PICKUP_MAGIC.length + TICKET_BYTES);
    if (!proofMatches(shmProof(offer.challenge, ticket), proof)) {
      closeFds();
      return fail("wrong proof: the peer did not read this offer's challenge");
    }
    const size = ringBytesFor(offer.capacity);
    const [, , c2sBell, s2cBell] = offer.fds as [number, number, number, number];
    const [c2sMap, s2cMap] = offer.maps as [SharedArrayBuffer, SharedArrayBuffer];
    const c2s = new RingBuffer(c2sMap);
    const ringer = offer.bells?.tx ?? new Ringer(addon, s2cBell);
    const s2c = new RingBuffer(s2cMap, ringer.ring);
    // "OK" ‖ capacity, and ‖ slot bytes when the client asked for big slots (an old client never does).
    const ok = Buffer.alloc(offer.slotBytes > 0 ? 10 : 6);
    ok.write('OK', 0, 'latin1');
    ok.writeUInt32LE(offer.capacity, 2);
    if (offer.slotBytes > 0) ok.writeUInt32LE(offer.slotBytes, 6);
    // The board travels as a fifth fd; a client that doesn't know it closes it and scans its rings.
    const board = offer.board;
    if (board !== null) {
      c2s.joinBoard(board.board);
      s2c.joinBoard(board.board);
    }
    try {
      addon.sendFds(fd, board === null ? offer.fds : [...offer.fds, board.fd], ok);
    } catch (err) {
      closeFds();
      return fail(`sending the ring fds failed (${(err as Error).message})`);
    }
    socket.end();
    const pair = serverPair(addon, s2c, c2s, c2sBell, offer, size, ringer);
    if (offer.slotBytes > 0) {
      pair.rxSlot = offer.maps[2] as SharedArrayBuffer;
      pair.txSlot = offer.maps[3] as SharedArrayBuffer;
    }
    if (board === null) return { context: offer.context, rings: pair };
    const free = pair.free;
    let slotFreed = false;
    pair.free = () => {
      if (!slotFreed) {
        slotFreed = true;
        freeSlot(board.slot);
      }
      free();
    };
    return { context: offer.context, rings: pair };
  }
}

/**
 * Frees a connection's rings at once, whoever holds what: each mapping is replaced by untouched
 * private memory (no reference to the memfd survives until the garbage collector gets to the
 * buffer), the creator (`size` > 0) punches the pages out of each memfd, and the fds are closed.
 * Punching reaches the peer's mapping too: its consumer then reads a zero magic word and knows the
 * ring was let go (ShmChannel). Every step is attempted.
 */
function releaseRings(
  addon: NativeAddon,
  fds: readonly number[],
  maps: readonly SharedArrayBuffer[],
  size = 0,
  bells: BellPair | null = null,
): void {
  for (const map of maps) {
    try {
      addon.unmapShared(map);
    } catch {
      // already replaced; the fds below still go
    }
  }
  if (bells !== null) releaseBells(addon, bells);
  for (let i = 0; i < fds.length; i++) {
    // Shared doorbells belong to the pair, closed with its last connection (releaseBells).
    if (bells !== null && (i === 2 || i === 3)) continue;
    try {
      // [c2s ring, s2c ring, bells ×2, slots ×2]: the creator punches rings and slots out.
      if (size > 0 && i < 2) addon.releaseMemory(fds[i] as number, size);
      if (size > 0 && i >= 4) addon.releaseMemory(fds[i] as number, slotBytesFor(size - RING_HEADER_BYTES));
    } catch {
      // punched already through a mapping
    } finally {
      addon.closeFd(fds[i] as number);
    }
  }
}

function serverPair(
  addon: NativeAddon,
  tx: RingBuffer,
  rx: RingBuffer,
  rxBell: number,
  offer: Offer<unknown>,
  size: number,
  ringer: Ringer,
): RingPair {
  let freed = false;
  return {
    tx,
    rx,
    rxBell,
    txSlot: null,
    rxSlot: null,
    addon,
    free() {
      if (freed) return;
      freed = true;
      // An own doorbell's ringer stops before its fd closes (a shared one stops with the pair).
      if (offer.bells === null) ringer.close();
      releaseRings(addon, offer.fds, offer.maps, size, offer.bells);
    },
  };
}

/** Why a client won't even ask: local reasons, or a server running as another user. */
export function clientShmDecline(socketFd: number | undefined): string | undefined {
  const local = localShmDecline();
  if (local !== undefined) return `client: ${local}`;
  if (socketFd === undefined) return 'client: connection has no file descriptor';
  const addon = loadNative().addon as NativeAddon;
  const peer = addon.peerCred(socketFd);
  const uid = process.getuid?.() ?? -1;
  if (!mayShareWith(peer.uid, 'client')) return `client: server uid ${peer.uid} differs from client uid ${uid}`;
  return undefined;
}

/**
 * What a refused pickup said: the glue's `ERR <reason>`, or a connection-level ERROR frame (§ 2) from
 * a Membrane that turned the connection away before reading it (at its connection limit, or draining),
 * decoded to `<code>: <message>`. Anything else is shown as text, cut short.
 */
export function pickupRefusal(payload: Buffer): string {
  if (payload.length === 0) return 'no answer';
  if (payload.length >= HEADER_SIZE && payload[4] === FrameType.ERROR) {
    const end = Math.min(payload.length, readU32(payload, 0) + 4);
    const e = decodeErrorPayload(payload, HEADER_SIZE, end);
    return `${e.code}: ${e.message.replace(/\.$/, '')}`;
  }
  const text = payload.toString('utf8').replace(/^ERR /, '');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: strip control bytes of a garbled answer
  const clean = text.replace(/[\x00-\x1f\x7f]/g, '?');
  return clean.length > 200 ? `${clean.slice(0, 200)}…` : clean;
}

/**
 * Steps 3–4 on the client: fetch and map the rings (client view: tx = client→server). `mainFd` is the
 * connection the offer came on: the rings are taken only from the process at its other end.
 */
export async function pickUpRings(
  socketPath: string,
  offer: UpgradeChallenge,
  timeoutMs: number,
  mainFd: number,
  askedSlots = false,
  maxFrame = DEFAULT_MAX_FRAME,
): Promise<RingPair> {
  const addon = loadNative().addon;
  if (addon === undefined) throw new CellError('E_SHM_UNAVAILABLE', 'native addon missing.');
  const main = addon.peerCred(mainFd);
  const request = Buffer.concat([PICKUP_MAGIC, offer.ticket, shmProof(offer.challenge, offer.ticket)]);
  const got = await addon.fetchFds(socketPath, request, timeoutMs);
  const open = new Set(got.fds);
  const closeOne = (fd: number) => {
    if (open.delete(fd)) addon.closeFd(fd);
  };
  const closeAll = () => {
    for (const fd of open) closeOne(fd);
  };
  if (got.peer.pid !== main.pid || got.peer.uid !== main.uid) {
    closeAll();
    throw new CellError(
      'E_SHM_AUTH',
      `pickup at ${socketPath} answered by pid ${got.peer.pid} uid ${got.peer.uid}, not by the process serving this connection (pid ${main.pid} uid ${main.uid}).`,
    );
  }
  // Without big slots: "OK" ‖ capacity and 4 fds (+ board). With them (asked for only): "OK" ‖ capacity
  // ‖ slot bytes and 6 fds (+ board). Anything else is refused, so an answer is never misread.
  const slotted = got.payload.length === 10 && askedSlots;
  const fixed = slotted ? 6 : 4;
  if (
    (got.fds.length !== fixed && got.fds.length !== fixed + 1) ||
    (got.payload.length !== 6 && !slotted) ||
    got.payload.toString('latin1', 0, 2) !== 'OK'
  ) {
    closeAll();
    throw new CellError('E_SHM_AUTH', `server refused the ring pickup: ${pickupRefusal(got.payload)}.`);
  }
  const capacity = got.payload.readUInt32LE(2);
  if (capacity !== offer.capacity) {
    closeAll();
    throw new CellError('E_PROTOCOL', `ring capacity ${capacity} differs from the offer's ${offer.capacity}.`);
  }
  const slotBytes = slotted ? got.payload.readUInt32LE(6) : 0;
  if (slotted && (slotBytes < MIN_BIG_SLOT_BYTES || slotBytes > maxFrame)) {
    closeAll();
    throw new CellError(
      'E_FRAME_TOO_LARGE',
      `big slot of ${slotBytes} bytes is outside ${MIN_BIG_SLOT_BYTES}…${maxFrame} (the frame limit).`,
    );
  }
  const size = ringBytesFor(capacity);
  const [c2sFd, s2cFd, c2sBell, s2cBell] = got.fds as [number, number, number, number];
  const maps: SharedArrayBuffer[] = [];
  try {
    maps.push(addon.mmapShared(c2sFd, size));
    maps.push(addon.mmapShared(s2cFd, size));
    let txSlot: SharedArrayBuffer | null = null;
    let rxSlot: SharedArrayBuffer | null = null;
    if (slotted) {
      // mmapShared refuses a file shorter than asked or not sealed against shrinking (no SIGBUS);
      // the slot we only read is mapped read-only.
      try {
        txSlot = addon.mmapShared(got.fds[4] as number, slotBytes);
        maps.push(txSlot);
        rxSlot = addon.mmapShared(got.fds[5] as number, slotBytes, true);
        maps.push(rxSlot);
      } catch (err) {
        throw new CellError('E_PROTOCOL', `big slot refused: ${(err as Error).message}.`);
      }
      closeOne(got.fds[4] as number);
      closeOne(got.fds[5] as number);
    }
    // The tx ring rings whichever doorbell the connection ends up with (its own or the pair's).
    let ringer: Ringer | undefined;
    const c2s = new RingBuffer(maps[0] as SharedArrayBuffer, () => ringer?.ring());
    const s2c = new RingBuffer(maps[1] as SharedArrayBuffer);
    // The mappings hold the memory; only the doorbells stay open.
    closeOne(c2sFd);
    closeOne(s2cFd);
    const boardFd = got.fds[fixed];
    if (boardFd !== undefined) open.delete(boardFd); // attachBoard takes it (maps or closes it)
    const board = boardFd === undefined ? null : attachBoard(addon, boardFd);
    if (board !== null && !(c2s.joinBoard(board) && s2c.joinBoard(board))) {
      c2s.board = s2c.board = undefined;
    }
    // A bell id (only a server asked for SHARED_BELLS writes one): the same eventfds as every other
    // connection to that process; adoptBells keeps one copy of each.
    const id = s2c.bellId;
    open.delete(c2sBell);
    open.delete(s2cBell);
    const bells = id === '' ? null : adoptBells(addon, main.pid, id, c2sBell, s2cBell);
    const tx = bells?.tx ?? new Ringer(addon, c2sBell);
    ringer = tx;
    let freed = false;
    const held = [...maps];
    return {
      tx: c2s,
      rx: s2c,
      rxBell: bells?.s2c ?? s2cBell,
      txSlot,
      rxSlot,
      addon,
      free() {
        if (freed) return;
        freed = true;
        // When the server died without freeing them, our mappings were the last reference.
        releaseRings(addon, [], held);
        if (bells !== null) releaseBells(addon, bells);
        else {
          tx.close();
          addon.closeFd(c2sBell);
          addon.closeFd(s2cBell);
        }
        if (board !== null) detachBoard(addon, board);
      },
    };
  } catch (err) {
    releaseRings(addon, [], maps);
    closeAll();
    throw err;
  }
}

/**
 * Whether this process shares rings with a peer of `peerUid`: the same user, or a root client calling
 * a server of another uid (a Root running as root starts its cells as an unprivileged uid, and its
 * operator still talks to them over shared memory; root reads any process's memory anyway). A root
 * server still refuses clients of other users. The rings carry untrusted bytes either way: every
 * reader validates what it takes from them.
 */
export function mayShareWith(peerUid: number, side: 'client' | 'server'): boolean {
  const uid = process.getuid?.() ?? -1;
  return peerUid === uid || (side === 'server' ? peerUid === 0 : uid === 0);
}
