import type { Socket } from 'node:net';
import { CellError } from '../errors/index.js';
import {
  deliverLeasedFrame,
  emitFrame,
  encodeFrame,
  type FrameLoan,
  type FrameReceiver,
  HEADER_SIZE,
  readU32,
  type TransportStatus,
} from '../frame/index.js';
import type { FrameSink } from '../frame/writer.js';
import { publishSoon, type RecordSink, ShmChannel } from './channel.js';
import { loadNative } from './native.js';
import {
  clientShmDecline,
  decodeChallenge,
  encodeChallenge,
  PICKUP_MAGIC,
  PICKUP_REQUEST_BYTES,
  pickUpRings,
  type RingPair,
  ShmHost,
  UPGRADE_FEATURE_BIG_SLOTS,
  UPGRADE_FEATURE_SHARED_BELLS,
} from './upgrade.js';

/**
 * The shared-memory transport under Membrane and Synapse (docs/PROTOCOL.md § 3.4). Ring records of
 * kind FRAMES carry ordinary wire frames (§ 2), so sessions see the same frames whichever carrier
 * brought them: a session's FrameSink becomes a RingFrameSink that puts each frame into the ring when
 * it fits and into the socket otherwise.
 */
export const FrameControl = {
  UPGRADE_REQUEST: 0x10,
  UPGRADE_CHALLENGE: 0x11,
  UPGRADE_DECLINED: 0x12,
} as const;

/** The answer to an UPGRADE_REQUEST that keeps the connection on the socket, saying why. */
export function declineFrame(requestId: number, reason: string): Buffer {
  return encodeFrame(FrameControl.UPGRADE_DECLINED, 0, requestId, Buffer.from(reason, 'utf8'));
}

/** Ring record kind: the payload is one or more whole wire frames. */
export const KIND_FRAMES = 0x46;
/**
 * Ring record kind: no payload; the frames are the first `aux` bytes of the sender's big slot
 * (§ 3.3.2). The slot is the sender's again once the consumer released this record (head passed it).
 */
export const KIND_BIG = 0x42;

export const UPGRADE_TIMEOUT_MS = 2000;

/**
 * Payload a ring record grows to at most by taking the replies a drain writes after it before they
 * are published (RingFrameSink.reserve): one header, kind word and release for the lot.
 */
const SHARED_RECORD_BYTES = 4096;

/** The socket-side sink a RingFrameSink falls back to (StreamFrameSink). */
export interface StreamSink extends FrameSink {
  writeFrame(frame: Uint8Array): void;
}

/**
 * A FrameSink over the tx ring, falling back to the socket sink for a frame the ring can't take now
 * (larger than a quarter of the ring, or the ring is full because the peer is behind). Frames carry
 * request ids, so the two paths may reorder replies without confusing anyone.
 */
export class RingFrameSink implements FrameSink {
  buf: Buffer;
  private readonly ringBuf: Buffer;
  private onRing = false;
  private ringOff = 0;
  /**
   * Payload offset of the last ring record while it is unpublished and holds only frames (frames
   * committed before the next publication join it), or -1.
   */
  private recordStart = -1;
  /** The open reservation extends that record rather than being a record of its own. */
  private extending = false;
  /** The tx big slot as bytes (null without slots), and whether the open reservation is in it. */
  private readonly slotBuf: Buffer | null;
  private onSlot = false;
  /** Ring position just past the last BIG record; the slot is free once head reached it. */
  private slotEnd = 0;
  private slotUsed = false;
  /** Frames that went through the big slot (metrics; also counted in ringFrames). */
  slotFrames = 0;
  /** Frames that went through the ring / over the socket (metrics). */
  ringFrames = 0;
  socketFrames = 0;

  constructor(
    readonly channel: ShmChannel,
    readonly socket: StreamSink,
    txSlot: SharedArrayBuffer | null = null,
  ) {
    this.ringBuf = Buffer.from(channel.tx.sab, 0, channel.tx.bytes.length);
    this.buf = this.ringBuf;
    this.slotBuf = txSlot === null ? null : Buffer.from(txSlot);
  }

  reserve(size: number): number {
    if (this.onRing) this.abandon(); // a reservation was never committed (encoder threw)
    this.onSlot = false;
    if (this.recordStart >= 0 && this.draining && this.corked === 0) {
      // Replies a drain holds back go out together: they share the open record. Only those: runs of
      // requests sharing a record (a corked many(), a continuation's next calls) made the peer handle
      // them as one block, and both sides overlapped less (measured: bench/RESULTS.md, shm call path).
      const o = this.channel.tx.extendLast(KIND_FRAMES, this.recordStart, size, SHARED_RECORD_BYTES);
      if (o >= 0) {
        this.onRing = true;
        this.extending = true;
        this.ringOff = o;
        this.buf = this.ringBuf;
        return o;
      }
    }
    const o = this.channel.reserve(KIND_FRAMES, 0, 0, size);
    if (o >= 0) {
      this.onRing = true;
      this.extending = false;
      this.ringOff = o;
      this.recordStart = o;
      this.buf = this.ringBuf;
      return o;
    }
    if (size > this.channel.maxPayload && this.slotFree(size)) {
      // Too large for the ring: the frame is encoded straight into the big slot, and an empty BIG
      // record (its length in aux, set at commit) hands it over in ring order.
      const r = this.channel.reserve(KIND_BIG, 0, 0, 0);
      this.recordStart = -1;
      if (r >= 0) {
        this.onRing = true;
        this.onSlot = true;
        this.ringOff = r;
        this.buf = this.slotBuf as Buffer;
        return 0;
      }
    }
    this.onRing = false;
    const so = this.socket.reserve(size);
    this.buf = this.socket.buf;
    return so;
  }

  /**
   * Drops the open reservation: a whole record, or what an extension added to the open record (its
   * earlier frames stay).
   */
  private abandon(): void {
    this.onRing = false;
    this.onSlot = false;
    if (this.extending) {
      this.extending = false;
      this.channel.tx.trimLast(this.ringOff - this.recordStart);
      return;
    }
    this.channel.tx.rollbackLast();
    this.recordStart = -1;
  }

  /** The slot exists, holds `size` bytes and the peer released the last BIG record. */
  private slotFree(size: number): boolean {
    const slot = this.slotBuf;
    if (slot === null || size > slot.length) return false;
    if (this.slotUsed && !this.channel.tx.releasedThrough(this.slotEnd)) return false;
    return true;
  }

  commit(end: number): void {
    if (this.onSlot) {
      this.onSlot = false;
      this.onRing = false;
      const tx = this.channel.tx;
      tx.setLastAux(end);
      this.slotEnd = tx.reservedEnd;
      this.slotUsed = true;
      this.ringFrames++;
      this.slotFrames++;
      this.settle();
      return;
    }
    if (this.onRing) {
      this.closeRingFrame(end);
      this.settle();
    } else {
      this.socket.commit(end);
      this.socketFrames++;
    }
  }

  /** The open ring reservation ends at `end`: its record shrinks (or grows) to what was written. */
  private closeRingFrame(end: number): void {
    this.onRing = false;
    this.channel.tx.trimLast(end - this.recordStart);
    this.ringFrames++;
  }

  /**
   * A committed ring frame goes out now, unless a run of frames is being written: corked (see cork),
   * or a drain answering requests while another one already waits in the ring (its reply will go out
   * with this one). The last reply of a drain goes out at once, before the call's bookkeeping.
   */
  private settle(): void {
    if (this.corked > 0 || (this.draining && this.channel.rx.hasKnown())) this.held = true;
    else this.publish();
  }

  /** Set while the channel delivers a run of records to this side (see settle). */
  draining = false;

  /** The drain is over: whatever it held goes out now. */
  endDrain(): void {
    this.draining = false;
    this.publishHeld();
  }

  /**
   * Commits a frame that may go out a little later, with the others committed before this side next
   * looks at its rings (at the latest in a microtask): the requests that a drain's continuations send
   * while earlier ones are still in flight cost one publication (one fenced store, one cache line
   * moving to the peer) instead of one each. The peer is busy with those earlier requests meanwhile.
   */
  commitSoon(end: number): void {
    if (!this.onRing || this.onSlot) {
      this.commit(end);
      return;
    }
    this.closeRingFrame(end);
    this.held = true;
    if (!this.owed) {
      this.owed = true;
      publishSoon(this.publishOwed);
    }
  }

  private owed = false;
  private readonly publishOwed = (): void => {
    this.owed = false;
    this.publishHeld();
  };

  /**
   * Holds ring frames back until uncork(): a `many` call's requests then cost one publication (one
   * cache-line transfer to the polling peer) instead of one per frame. Nothing waits for a later
   * tick: uncork() runs at the end of the same synchronous run.
   */
  cork(): void {
    this.corked++;
  }

  uncork(): void {
    if (this.corked === 0) return;
    if (--this.corked === 0 && this.held) this.publish();
  }

  /** Publishes what is held now, unless corked (the drain found no further request waiting). */
  publishHeld(): void {
    if (this.held && this.corked === 0) this.publish();
  }

  private corked = 0;
  private held = false;

  /** Committed ring frames wait for a publication (corked, or held by a drain or commitSoon). */
  get holding(): boolean {
    return this.held;
  }

  flush(): void {
    this.publish();
    this.socket.flush();
  }

  private publish(): void {
    this.held = false;
    // Reserve and commit run back to back; a reservation still open here was abandoned by a writer
    // that threw. It must not be published.
    if (this.onRing) this.abandon();
    this.recordStart = -1;
    this.channel.commit();
    this.channel.expect(); // an answer is likely soon: keep polling hot for a while
  }

  writeFrame(frame: Uint8Array): void {
    const o = this.reserve(frame.length);
    this.buf.set(frame, o);
    this.commit(o + frame.length);
  }
}

/** Walks the frames of each FRAMES record, bounds-checking every length against the record. */
export class RecordFrames implements RecordSink, FrameLoan {
  channel: ShmChannel | null = null;
  /** This side's ring sink: replies written during a drain are corked until no request is left waiting. */
  sink: RingFrameSink | null = null;
  private readonly ringBuf: Buffer;
  /**
   * Frames still out per record token, for records holding more than one frame (given back by
   * done()). The newest such record is counted in `shared`/`sharedLeft` instead: with handlers that
   * answer at once it is the only one, and its frames are given back without a Map lookup.
   */
  private readonly outstanding = new Map<number, number>();
  private shared = -1;
  private sharedLeft = 0;
  /** The receiver keeps payloads past the call (it has deliverFrame): each frame is lent, done() gives it back. */
  private readonly leases: boolean;

  /** The peer's big slot as bytes (mapped read-only by a client), or null without slots. */
  private readonly slotBuf: Buffer | null;

  constructor(
    sab: SharedArrayBuffer,
    private readonly receiver: FrameReceiver,
    rxSlot: SharedArrayBuffer | null = null,
  ) {
    this.ringBuf = Buffer.from(sab);
    this.slotBuf = rxSlot === null ? null : Buffer.from(rxSlot);
    this.leases = receiver.deliverFrame !== undefined;
  }

  onRecord(kind: number, _reqId: number, aux: number, offset: number, length: number, token: number): void {
    if (kind === KIND_FRAMES) {
      this.frames(this.ringBuf, offset, offset + length, token);
      return;
    }
    if (kind !== KIND_BIG) {
      this.onCorrupt(new CellError('E_PROTOCOL', `ring record of unknown kind 0x${kind.toString(16)}.`));
      return;
    }
    const slot = this.slotBuf;
    if (slot === null || length !== 0 || aux > slot.length || this.slotToken >= 0) {
      this.badFrame(
        slot === null
          ? 'a big-slot record on a connection without big slots'
          : this.slotToken >= 0
            ? 'a big-slot record while the previous one is still held'
            : `a big-slot record of ${aux} bytes (${length} in the ring) for a slot of ${slot.length}`,
      );
      return;
    }
    if (!this.leases) {
      // A client decodes (copies) each reply at once: the slot is released before this returns.
      this.frames(slot, 0, aux, token);
      return;
    }
    // A server's handler reads the request in place; the slot stays lent until the handler settles.
    this.slotToken = token;
    const sink = this.sink;
    sink?.cork();
    try {
      this.frames(slot, 0, aux, token);
    } finally {
      // A caller may send its next big frame as soon as it has the reply: a slot its handler is done
      // with goes back before the reply goes out.
      if (this.slotToken < 0) this.channel?.rx.publishHead();
      sink?.uncork();
    }
  }

  /** The slot's record while it is held (its frames are in use), or -1. */
  private slotToken = -1;

  /** Releases a record; the slot's record frees the slot for the peer's next big frame. */
  private free(token: number): void {
    if (token === this.slotToken) this.slotToken = -1;
    this.channel?.release(token);
  }

  private frames(b: Buffer, start: number, end: number, token: number): void {
    const length = end - start;
    const receiver = this.receiver;
    let count = 1;
    // The usual record is one frame filling it exactly; anything else is walked and checked in full
    // before any frame of it is delivered.
    if (length < HEADER_SIZE || readU32(b, start) + 4 !== length) {
      count = 0;
      for (let o = start; o < end; ) {
        if (end - o < HEADER_SIZE) {
          this.badFrame(`${end - o} stray bytes after the last frame`);
          return;
        }
        const len = readU32(b, o);
        if (len < HEADER_SIZE - 4 || o + 4 + len > end) {
          this.badFrame(`frame length ${len} runs past its record`);
          return;
        }
        o += 4 + len;
        count++;
      }
      if (count === 0) {
        this.badFrame('empty record');
        return;
      }
    }
    if (!this.leases) {
      // The client decodes (copies) each reply at once: no lease objects, free the record right after.
      try {
        for (let o = start; o < end; ) {
          const next = o + 4 + readU32(b, o);
          emitFrame(receiver, b, o, next, false);
          o = next;
        }
      } finally {
        this.free(token);
      }
      return;
    }
    if (count > 1) {
      if (this.shared >= 0) this.outstanding.set(this.shared, this.sharedLeft);
      this.shared = token;
      this.sharedLeft = count;
    }
    for (let o = start; o < end; ) {
      const next = o + 4 + readU32(b, o);
      deliverLeasedFrame(receiver, b, o, next, this, token);
      o = next;
    }
  }

  /** One frame of record `token` is done with: the record is freed when its last frame is. */
  done(token: number): void {
    if (token === this.shared) {
      if (--this.sharedLeft > 0) return;
      this.shared = -1;
    } else if (this.outstanding.size !== 0) {
      const left = this.outstanding.get(token);
      if (left !== undefined) {
        if (left > 1) {
          this.outstanding.set(token, left - 1);
          return;
        }
        this.outstanding.delete(token);
      }
    }
    this.free(token);
  }

  private badFrame(why: string): void {
    this.channel?.close();
    this.onCorrupt(new CellError('E_PROTOCOL', `malformed frame in the shared-memory ring: ${why}.`));
  }

  onCorrupt(err: CellError): void {
    this.receiver.ringCorrupt?.(err);
  }

  beginDrain(): void {
    if (this.sink !== null) this.sink.draining = true;
    this.receiver.beginBatch?.();
  }

  /** After each record: with no further record known to be waiting, what the run wrote goes out now. */
  afterRecord(): void {
    const sink = this.sink;
    if (sink?.holding && this.channel !== null && !this.channel.rx.hasKnown()) sink.publishHeld();
  }

  endDrain(): void {
    this.sink?.endDrain();
    this.receiver.endBatch?.();
  }
}

/** Ties a ring pair to a receiver: returns the channel and the sink to install. */
function attachRings(rings: RingPair, receiver: FrameReceiver, socketSink: StreamSink): RingFrameSink {
  const frames = new RecordFrames(rings.rx.sab, receiver, rings.rxSlot);
  const channel = new ShmChannel(rings.addon, rings.tx, rings.rx, rings.rxBell, frames);
  channel.txSlot = rings.txSlot;
  frames.channel = channel;
  frames.sink = new RingFrameSink(channel, socketSink, rings.txSlot);
  return frames.sink;
}

function socketFd(carrier: unknown): number | undefined {
  const fd = (carrier as { _handle?: { fd?: unknown } } | null)?._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

// ------------------------------------------------------------------------------ server side

/** What the server half reads of a session: its socket, its status and its socket sink. */
export interface ShmServerPeer extends FrameReceiver {
  readonly sink: FrameSink;
  readonly transport: { readonly carrier: unknown };
  readonly transportStatus: Readonly<TransportStatus>;
  writeCold(frame: Uint8Array): void;
}

/**
 * Server half: answers upgrade requests and serves pickup connections for one Membrane. It never
 * touches a session's fields: a picked-up upgrade ends in `install(session, sink)`, the Membrane's own
 * callback, which puts the ring sink in place.
 */
export class ShmServerGlue<S extends ShmServerPeer> {
  readonly host: ShmHost<S>;
  upgrades = 0;
  declines = 0;
  active = 0;

  constructor(
    options: { ringCapacity?: number },
    private readonly install: (session: S, sink: RingFrameSink) => void,
  ) {
    this.host = new ShmHost(options.ringCapacity === undefined ? {} : { capacity: options.ringCapacity });
  }

  /** Why this server declines every upgrade (undefined when it can upgrade). */
  get unavailable(): string | undefined {
    return this.host.declineReason;
  }

  /**
   * Control frame UPGRADE_REQUEST on an open session: sends the challenge and returns undefined, or
   * returns why the connection stays on the socket (the caller answers with declineFrame).
   */
  onUpgradeRequest(session: S, requestId: number, features = 0): string | undefined {
    const fd = socketFd(session.transport.carrier);
    const offer =
      fd === undefined
        ? { ok: false as const, reason: 'server: this connection is not a local Unix socket' }
        : session.transportStatus.transport === 'shm'
          ? { ok: false as const, reason: 'server: connection already upgraded' }
          : this.host.hasOffer(session)
            ? { ok: false as const, reason: 'server: an upgrade of this connection is already under way' }
            : this.host.offer(fd, session, features);
    if (offer.ok) {
      session.writeCold(encodeFrame(FrameControl.UPGRADE_CHALLENGE, 0, requestId, encodeChallenge(offer.challenge)));
      return undefined;
    }
    this.declines++;
    return offer.reason;
  }

  /**
   * Looks at a new connection's first bytes: a pickup connection ("CELL…") is served here and true is
   * returned; otherwise false and the caller serves it as a normal connection.
   */
  static isPickup(opening: Buffer): boolean | undefined {
    if (opening.length < 4) return opening.equals(PICKUP_MAGIC.subarray(0, opening.length)) ? undefined : false;
    return opening.subarray(0, 4).equals(PICKUP_MAGIC.subarray(0, 4));
  }

  /** Serves a pickup connection; `opening` holds what was read so far. */
  servePickup(socket: Socket, opening: Buffer): void {
    let buf = opening;
    const timer = setTimeout(() => socket.destroy(), UPGRADE_TIMEOUT_MS);
    timer.unref();
    socket.on('error', () => {});
    const attempt = () => {
      if (buf.length < PICKUP_REQUEST_BYTES) return;
      socket.removeAllListeners('data');
      clearTimeout(timer);
      let picked: { context: S; rings: RingPair };
      try {
        picked = this.host.pickUp(socket, buf.subarray(0, PICKUP_REQUEST_BYTES));
      } catch {
        this.declines++;
        return; // pickUp told the client why and closed the pickup connection
      }
      this.attachServer(picked.context, picked.rings);
    };
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      attempt();
    });
    attempt();
  }

  private attachServer(session: S, rings: RingPair): void {
    const carrier = session.transport.carrier as Socket;
    if (carrier.destroyed) {
      rings.free();
      return;
    }
    const sink = attachRings(rings, session, session.sink as StreamSink);
    this.upgrades++;
    this.active++;
    carrier.once('close', () => {
      sink.channel.close();
      rings.free();
      this.active--;
    });
    this.install(session, sink);
  }

  /** The connection closed before picking its rings up. */
  forget(session: S): void {
    this.host.forget(session);
  }
}

// ------------------------------------------------------------------------------ client side

/** Pending client upgrades, by the connection's receiver: the answer arrives through its frames. */
const waiting = new WeakMap<FrameReceiver, (type: number, payload: Buffer) => void>();

/** Called by the connection for UPGRADE_CHALLENGE / UPGRADE_DECLINED frames. */
export function onUpgradeAnswer(client: FrameReceiver, type: number, bytes: Buffer, start: number, end: number): void {
  const w = waiting.get(client);
  if (w === undefined) return;
  waiting.delete(client);
  w(type, Buffer.from(bytes.subarray(start, end)));
}

/**
 * Client half, run right after the handshake: asks over `sink` (the socket's), picks the rings up and
 * returns the ring sink for the connection to install, with ring frames going to `receiver`; or
 * returns why the connection stays on the socket. Never throws and never hangs.
 */
export async function upgradeClient(
  stream: unknown,
  sink: StreamSink,
  receiver: FrameReceiver,
  socketPath: string | undefined,
): Promise<RingFrameSink | string> {
  const fd = socketFd(stream);
  const local = clientShmDecline(fd);
  if (local !== undefined) return local;
  const addon = loadNative().addon;
  let path = socketPath ?? '';
  if (path === '') {
    try {
      path = addon?.peerPath(fd as number) ?? '';
    } catch {
      // fall through: no path, no upgrade
    }
  }
  if (path === '') return 'client: the socket has no path to reach the server again';
  // CELL_SHM_BIG_SLOTS=0 asks as an older client would (frames over a ring's limit take the socket).
  // CELL_SHM_SHARED_BELLS=0 keeps two doorbells per connection (an older client's request).
  const slots = process.env.CELL_SHM_BIG_SLOTS === '0' ? 0 : UPGRADE_FEATURE_BIG_SLOTS;
  const features = slots | (process.env.CELL_SHM_SHARED_BELLS === '0' ? 0 : UPGRADE_FEATURE_SHARED_BELLS);
  try {
    const answer = await new Promise<{ type: number; payload: Buffer }>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(receiver);
        reject(new CellError('E_TIMEOUT', `no answer to the upgrade request within ${UPGRADE_TIMEOUT_MS} ms`));
      }, UPGRADE_TIMEOUT_MS);
      waiting.set(receiver, (type, payload) => {
        clearTimeout(timer);
        resolve({ type, payload });
      });
      sink.writeFrame(encodeFrame(FrameControl.UPGRADE_REQUEST, features, 0));
      sink.flush();
    });
    if (answer.type === FrameControl.UPGRADE_DECLINED) return answer.payload.toString('utf8');
    const rings = await pickUpRings(
      path,
      decodeChallenge(answer.payload),
      UPGRADE_TIMEOUT_MS,
      fd as number,
      slots !== 0,
    );
    const socket = stream as Socket;
    if (socket.destroyed) return 'client: the connection closed during the upgrade';
    const ringSink = attachRings(rings, receiver, sink);
    socket.once('close', () => {
      ringSink.channel.close();
      rings.free();
    });
    return ringSink;
  } catch (err) {
    return `client: ${(err as Error).message}`;
  }
}
