import type { CellErrorCode } from '../errors/index.js';
import { CellError } from '../errors/index.js';

/**
 * The stream framing shared by Membrane, Synapse and every byte carrier under them (Unix socket, TLS,
 * shared-memory ring). docs/PROTOCOL.md § 2 is the normative description; the constants here are the
 * single source of truth for the code.
 *
 * Every frame starts with a fixed 12-byte header:
 *
 *   0  u32 length     bytes after this field (8 + payload length)
 *   4  u8  type       FrameType
 *   5  u8  flags      reserved, 0
 *   6  u16 method     method id (requests/replies), 0 otherwise
 *   8  u32 requestId  correlates a reply or error with its request; 0 = the connection itself
 *  12  payload
 */
export const HEADER_SIZE = 12;
export const PROTOCOL_VERSION = 1;
/** "CELL" read as a little-endian u32: the first bytes of every HELLO and WELCOME payload. */
export const HELLO_MAGIC = 0x4c4c4543;

export const FrameType = {
  /** client → server, first frame: magic, version, service fingerprint and name. */
  HELLO: 0x01,
  /** server → client, answer to HELLO: magic, version, fingerprint, limits, pid, name. */
  WELCOME: 0x02,
  /** client → server: call `method` with the encoded input. */
  REQUEST: 0x03,
  /** server → client: the encoded output of request `requestId`. */
  REPLY: 0x04,
  /** either way: JSON `{code, message, fix?, details?}`; requestId 0 means the whole connection. */
  ERROR: 0x05,
  /** server → client: no new requests on this connection; in-flight ones still get their replies. */
  GOAWAY: 0x06,
  /** client → server: the caller gave up on `requestId` (timeout/abort); the server may stop work. */
  CANCEL: 0x07,
} as const;

/**
 * Frame types 0x10–0x1F are reserved for transport control after the handshake (the shared-memory
 * upgrade uses them); 0x20–0x7F for future protocol frames; 0x80–0xFF for private experiments.
 * A Membrane routes a frame in the control range to the handler registered with
 * `Membrane.onControlFrame`; an unregistered type is a protocol error.
 */
export const CONTROL_FRAME_FIRST = 0x10;
export const CONTROL_FRAME_LAST = 0x1f;

/**
 * Method ids 0xFF00–0xFFFF are built-in (answered by every Membrane, whatever its service); user
 * methods are 0..n-1. 0xFF00–0xFFEF are reserved for future control methods.
 */
export const BUILTIN_METHOD_FIRST = 0xff00;
export const BuiltinMethod = {
  /** reply: UTF-8 JSON of the service genome, fingerprint as a 16-digit hex string. */
  GENOME: 0xffff,
  /** reply: UTF-8 JSON `{status, cell, pid, uptimeMs, connections, inFlight}`. */
  HEALTH: 0xfffe,
  /** reply: UTF-8 JSON counters (requests, errors, bytes, connections, shed load). */
  METRICS: 0xfffd,
} as const;

/** Default cap on one frame (header included). Larger frames are refused before any allocation. */
export const DEFAULT_MAX_FRAME = 16 * 1024 * 1024;
/** HELLO/WELCOME are tiny; a connection that opens with a huge frame is not speaking this protocol. */
export const MAX_HANDSHAKE_FRAME = 4096;

/**
 * The carrier contract (docs/ARCHITECTURE.md): every carrier — a byte stream through FrameDecoder, the
 * shared-memory ring, a message bus — hands the same decoded frames to a FrameReceiver and takes the
 * replies through a FrameSink (./writer.ts); `TransportStatus` says which carrier a connection uses.
 */
export interface FrameReceiver {
  /** One frame: `bytes[start, end)` is the payload; `owned` says whether it was copied for us. */
  onFrame(
    type: number,
    flags: number,
    method: number,
    requestId: number,
    bytes: Buffer,
    start: number,
    end: number,
    owned: boolean,
  ): void;
  /**
   * Optional: a receiver that keeps payloads past the call (the server, until the handler settles)
   * gets frames in borrowed carrier memory with the loan to give back (`loan.done(token)`, once per
   * frame); one without it gets `onFrame` and the memory is reused as soon as it returns. A token
   * instead of a lease object per frame: a call answered at once needs no object to give it back.
   */
  deliverFrame?(
    type: number,
    flags: number,
    method: number,
    requestId: number,
    bytes: Buffer,
    start: number,
    end: number,
    loan: FrameLoan,
    token: number,
  ): void;
  /** Optional: the carrier broke its own protocol (garbage in a ring): close the connection. */
  ringCorrupt?(err: CellError): void;
  /** Optional: bracket a run of frames so their calls share one clock read (ServerSession). */
  beginBatch?(): void;
  endBatch?(): void;
}

/**
 * A control frame (0x10–0x1F) handed to its handler: `who` is the frame type on the client
 * (`ClientConnection.onControlFrame`) and the session on the server (`Membrane.onControlFrame`, routed
 * by type). The handler owns the reply, if any; `bytes[start, end)` is only valid during the call.
 */
export type ControlFrameCallback<Who> = (
  who: Who,
  flags: number,
  method: number,
  requestId: number,
  bytes: Buffer,
  start: number,
  end: number,
) => void;

/** How a connection's frames travel: a byte stream, the shared-memory rings, or a message bus (src/nats). */
export type Transport = 'socket' | 'shm' | 'nats';

/** Which carrier a connection uses and, when it stayed on the socket, why. */
export interface TransportStatus {
  transport: Transport;
  shmDeclined: string | undefined;
}

/** The header walk: hands the frame at `b[o, end)` (header included) to `receiver.onFrame`. */
export function emitFrame(receiver: FrameReceiver, b: Buffer, o: number, end: number, owned: boolean): void {
  receiver.onFrame(
    b[o + 4] as number,
    b[o + 5] as number,
    (b[o + 6] as number) | ((b[o + 7] as number) << 8),
    readU32(b, o + 8),
    b,
    o + HEADER_SIZE,
    end,
    owned,
  );
}

/** Carrier memory lent with delivered frames: `done(token)` gives one frame's share back. */
export interface FrameLoan {
  done(token: number): void;
}

/** The header walk for borrowed memory: hands the frame at `b[o, end)` with its loan to `deliverFrame`. */
export function deliverLeasedFrame(
  receiver: FrameReceiver,
  b: Buffer,
  o: number,
  end: number,
  loan: FrameLoan,
  token: number,
): void {
  (receiver.deliverFrame as NonNullable<FrameReceiver['deliverFrame']>)(
    b[o + 4] as number,
    b[o + 5] as number,
    (b[o + 6] as number) | ((b[o + 7] as number) << 8),
    readU32(b, o + 8),
    b,
    o + HEADER_SIZE,
    end,
    loan,
    token,
  );
}

/**
 * Splits a byte stream into frames. A frame that lies whole inside one chunk is handed out as a view
 * into that chunk (no copy); only a frame split across chunks is reassembled into its own buffer, which
 * is allocated once its header is complete and its length is known to be within `maxFrame`.
 * Malformed input throws a CellError and leaves the decoder stopped: a framing error desynchronises
 * the stream, so the only safe reaction is an error frame and closing the connection.
 */
export class FrameDecoder {
  maxFrame: number;
  private readonly handler: FrameReceiver;
  private readonly head: Buffer = Buffer.alloc(HEADER_SIZE);
  private headFilled = 0;
  private partial: Buffer | null = null;
  private partialFilled = 0;
  private stopped = false;
  private paused = false;
  private rest: Buffer | null = null;

  constructor(handler: FrameReceiver, maxFrame: number = DEFAULT_MAX_FRAME) {
    this.handler = handler;
    this.maxFrame = maxFrame;
  }

  /** No more frames are delivered after this (also called internally on a framing error). */
  stop(): void {
    this.stopped = true;
    this.partial = null;
  }

  /**
   * Stops delivering frames (back-pressure: the consumer cannot take more right now). Bytes pushed
   * while paused, and the rest of the chunk being processed, are kept (not copied) until resume().
   */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const rest = this.rest;
    this.rest = null;
    if (rest !== null) this.push(rest);
  }

  get isPaused(): boolean {
    return this.paused;
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Bytes held for a frame that is not complete yet. */
  get buffered(): number {
    return this.partial !== null ? this.partialFilled : this.headFilled;
  }

  push(chunk: Buffer): void {
    if (this.stopped) return;
    if (this.paused) {
      this.rest = this.rest === null ? chunk : Buffer.concat([this.rest, chunk]);
      return;
    }
    const n = chunk.length;
    let off = 0;
    if (this.headFilled > 0) {
      const take = Math.min(HEADER_SIZE - this.headFilled, n);
      chunk.copy(this.head, this.headFilled, 0, take);
      this.headFilled += take;
      off = take;
      if (this.headFilled >= 4) this.checkLength(readU32(this.head, 0));
      if (this.headFilled < HEADER_SIZE) return;
      const total = readU32(this.head, 0) + 4;
      this.headFilled = 0;
      this.partial = Buffer.allocUnsafe(total);
      this.head.copy(this.partial, 0, 0, HEADER_SIZE);
      this.partialFilled = HEADER_SIZE;
    }
    if (this.partial !== null) {
      const p = this.partial;
      const take = Math.min(p.length - this.partialFilled, n - off);
      chunk.copy(p, this.partialFilled, off, off + take);
      this.partialFilled += take;
      off += take;
      if (this.partialFilled < p.length) return;
      this.partial = null;
      this.emit(p, 0, p.length, true);
      if (this.paused && off < n) {
        this.rest = chunk.subarray(off);
        return;
      }
    }
    while (off < n && !this.stopped) {
      const left = n - off;
      if (left < HEADER_SIZE) {
        if (left >= 4) this.checkLength(readU32(chunk, off));
        chunk.copy(this.head, 0, off, n);
        this.headFilled = left;
        return;
      }
      const len = readU32(chunk, off);
      this.checkLength(len);
      const total = len + 4;
      if (left >= total) {
        this.emit(chunk, off, off + total, false);
        off += total;
        if (this.paused && off < n) {
          this.rest = chunk.subarray(off);
          return;
        }
      } else {
        const p = Buffer.allocUnsafe(total);
        chunk.copy(p, 0, off, n);
        this.partial = p;
        this.partialFilled = left;
        return;
      }
    }
  }

  private checkLength(len: number): void {
    if (len < HEADER_SIZE - 4) {
      this.stop();
      throw new CellError('E_FRAME_MALFORMED', `frame length ${len} is shorter than the ${HEADER_SIZE}-byte header.`, {
        fix: 'the peer is not speaking the Cell frame protocol (docs/PROTOCOL.md § 2).',
        details: { length: len },
      });
    }
    if (len + 4 > this.maxFrame) {
      this.stop();
      throw new CellError(
        'E_FRAME_TOO_LARGE',
        `frame of ${len + 4} bytes exceeds the limit of ${this.maxFrame} bytes.`,
        {
          fix: 'send smaller messages (split large payloads) or raise maxFrameSize on both sides.',
          details: { size: len + 4, limit: this.maxFrame },
        },
      );
    }
  }

  private emit(b: Buffer, start: number, end: number, owned: boolean): void {
    emitFrame(this.handler, b, start, end, owned);
  }
}

export function readU32(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16)) + b[o + 3] * 0x1000000;
}

/** Writes a frame header at `o` for a payload of `payloadLength` bytes; returns the payload offset. */
export function writeHeader(
  b: Uint8Array,
  o: number,
  payloadLength: number,
  type: number,
  method: number,
  requestId: number,
): number {
  const len = payloadLength + 8;
  b[o] = len;
  b[o + 1] = len >>> 8;
  b[o + 2] = len >>> 16;
  b[o + 3] = len >>> 24;
  b[o + 4] = type;
  b[o + 5] = 0;
  b[o + 6] = method;
  b[o + 7] = method >>> 8;
  b[o + 8] = requestId;
  b[o + 9] = requestId >>> 8;
  b[o + 10] = requestId >>> 16;
  b[o + 11] = requestId >>> 24;
  return o + HEADER_SIZE;
}

/** One whole frame in a fresh buffer (cold paths: handshake, errors, control frames). */
export function encodeFrame(type: number, method: number, requestId: number, payload?: Uint8Array): Buffer {
  const n = payload === undefined ? 0 : payload.length;
  const b = Buffer.allocUnsafe(HEADER_SIZE + n);
  writeHeader(b, 0, n, type, method, requestId);
  if (payload !== undefined) b.set(payload, HEADER_SIZE);
  return b;
}

/** The payload of an ERROR frame. JSON because errors are rare and must stay readable by any peer. */
export interface ErrorPayload {
  code: CellErrorCode;
  /** The cause alone (no cell, method or fix woven in). */
  message: string;
  /** The cell the error concerns when it is not the one that answered (a Root's denial about a cell). */
  cell?: string;
  /** The method the error concerns when it is not the one called. */
  method?: string;
  fix?: string;
  details?: Record<string, unknown>;
}

export function encodeErrorPayload(err: ErrorPayload): Buffer {
  return Buffer.from(JSON.stringify(err, bigintToString), 'utf8');
}

export function decodeErrorPayload(bytes: Uint8Array, start: number, end: number): ErrorPayload {
  try {
    const v = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString('utf8'));
    if (v !== null && typeof v === 'object' && typeof v.code === 'string' && typeof v.message === 'string') return v;
  } catch {
    // fall through: a malformed error payload is itself reported as a protocol error
  }
  return { code: 'E_PROTOCOL', message: 'the peer sent an unreadable error frame.' };
}

export function bigintToString(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? `0x${value.toString(16).padStart(16, '0')}` : value;
}

export function fingerprintHex(fp: bigint): string {
  return `0x${fp.toString(16).padStart(16, '0')}`;
}

/** HELLO and WELCOME share one layout; fields a side does not use are zero. */
export interface Handshake {
  version: number;
  fingerprint: bigint;
  name: string;
  maxFrame: number;
  maxInFlight: number;
  pid: number;
  /** HandshakeFlag bits (0 when absent). */
  flags?: number;
  /** Bytes after the name, present when a flag says what they are (§ 2.3.1); a copy. */
  trailer?: Buffer;
}

/** Handshake flag bits (u16 at offset 6). Receivers ignore bits they do not know. */
export const HandshakeFlag = {
  /**
   * HELLO: a 32-byte random challenge follows the name; the server proves its identity.
   * WELCOME: the attestation follows the name: u16 certificate length, certificate, 64-byte signature.
   */
  ATTEST: 0x0001,
} as const;
/** Length of the challenge a HELLO with HandshakeFlag.ATTEST carries. */
export const ATTEST_CHALLENGE_BYTES = 32;

/**
 * Handshake payload:
 *   0 u32 magic "CELL"   4 u16 version   6 u16 flags   8 u64 fingerprint
 *  16 u32 maxFrame      20 u32 maxInFlight  24 u32 pid    28 u16 name length   30 name (UTF-8)
 *  30+n trailer (what the flags announce)
 */
export function encodeHandshake(h: Handshake): Buffer {
  const name = Buffer.from(h.name, 'utf8');
  const trailer = h.trailer;
  const b = Buffer.alloc(30 + name.length + (trailer === undefined ? 0 : trailer.length));
  b.writeUInt32LE(HELLO_MAGIC, 0);
  b.writeUInt16LE(h.version, 4);
  b.writeUInt16LE(h.flags ?? 0, 6);
  b.writeBigUInt64LE(h.fingerprint, 8);
  b.writeUInt32LE(h.maxFrame >>> 0, 16);
  b.writeUInt32LE(h.maxInFlight >>> 0, 20);
  b.writeUInt32LE(h.pid >>> 0, 24);
  b.writeUInt16LE(name.length, 28);
  name.copy(b, 30);
  if (trailer !== undefined) trailer.copy(b, 30 + name.length);
  return b;
}

export function decodeHandshake(bytes: Buffer, start: number, end: number): Handshake {
  const len = end - start;
  const bad = (why: string): never => {
    throw new CellError('E_PROTOCOL', `malformed handshake: ${why}.`, {
      fix: 'the peer is not a Cell endpoint of a compatible version (docs/PROTOCOL.md § 2).',
    });
  };
  if (len < 30) bad(`payload of ${len} bytes is shorter than 30`);
  if (bytes.readUInt32LE(start) !== HELLO_MAGIC) bad('missing "CELL" magic');
  const nameLen = bytes.readUInt16LE(start + 28);
  if (30 + nameLen > len) bad('name runs past the frame');
  const flags = bytes.readUInt16LE(start + 6);
  return {
    version: bytes.readUInt16LE(start + 4),
    fingerprint: bytes.readBigUInt64LE(start + 8),
    maxFrame: bytes.readUInt32LE(start + 16),
    maxInFlight: bytes.readUInt32LE(start + 20),
    pid: bytes.readUInt32LE(start + 24),
    name: bytes.toString('utf8', start + 30, start + 30 + nameLen),
    flags,
    trailer: (flags & HandshakeFlag.ATTEST) !== 0 ? Buffer.from(bytes.subarray(start + 30 + nameLen, end)) : undefined,
  };
}

/** A HELLO's attestation challenge: undefined unless it set HandshakeFlag.ATTEST with 32 bytes after the name. */
export function helloChallenge(h: Handshake): Buffer | undefined {
  const t = h.trailer;
  if (((h.flags ?? 0) & HandshakeFlag.ATTEST) === 0 || t === undefined || t.length < ATTEST_CHALLENGE_BYTES)
    return undefined;
  return t.subarray(0, ATTEST_CHALLENGE_BYTES);
}

/** A WELCOME's attestation (u16 certificate length ‖ certificate ‖ signature), or undefined without one. */
export function welcomeAttestation(h: Handshake): Buffer | undefined {
  return ((h.flags ?? 0) & HandshakeFlag.ATTEST) !== 0 ? h.trailer : undefined;
}
