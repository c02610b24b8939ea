import { once } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { CellError } from '../../src/errors/index.js';
import { type RecordSink, ShmChannel } from '../../src/shm/channel.js';
import { loadNative } from '../../src/shm/native.js';
import type { RingPair } from '../../src/shm/upgrade.js';
import {
  clientShmDecline,
  decodeChallenge,
  encodeChallenge,
  PICKUP_MAGIC,
  PICKUP_REQUEST_BYTES,
  pickUpRings,
  ShmHost,
} from '../../src/shm/upgrade.js';

/**
 * A self-contained request/reply link over a Unix socket that upgrades to shared-memory rings: the
 * shm transport's own test bed and benchmark subject, and the reference for wiring the upgrade into
 * Membrane/Synapse. Frames on the socket: [u32 length of the rest][u8 type][u32 reqId][u32 aux][payload].
 * The same record kinds and request ids flow through the rings, so a reply may come back on either
 * path and a late reply can never be taken for another request's.
 */
export const FRAME_REQUEST = 1;
export const FRAME_REPLY = 2;
export const FRAME_ERROR = 3;
export const FRAME_UPGRADE_REQUEST = 16;
export const FRAME_UPGRADE_CHALLENGE = 17;
export const FRAME_UPGRADE_DECLINED = 18;

const FRAME_HEADER = 13;
const MAX_FRAME = 64 * 1024 * 1024;

export type Transport = 'shm' | 'socket';

export type LinkHandler = (method: number, payload: Uint8Array) => Uint8Array | Promise<Uint8Array>;

function frame(type: number, reqId: number, aux: number, payload: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER + payload.length);
  b.writeUInt32LE(9 + payload.length, 0);
  b[4] = type;
  b.writeUInt32LE(reqId >>> 0, 5);
  b.writeUInt32LE(aux >>> 0, 9);
  b.set(payload, FRAME_HEADER);
  return b;
}

/** Splits a byte stream into frames; calls onFrame with a view valid only during the call. */
class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly onFrame: (type: number, reqId: number, aux: number, payload: Buffer) => void) {}
  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let off = 0;
    while (this.buf.length - off >= 4) {
      const len = this.buf.readUInt32LE(off);
      if (len < 9 || len > MAX_FRAME) throw new CellError('E_FRAME_MALFORMED', `frame length ${len} out of range.`);
      if (this.buf.length - off < 4 + len) break;
      const type = this.buf[off + 4] as number;
      const reqId = this.buf.readUInt32LE(off + 5);
      const aux = this.buf.readUInt32LE(off + 9);
      this.onFrame(type, reqId, aux, this.buf.subarray(off + FRAME_HEADER, off + 4 + len));
      off += 4 + len;
    }
    this.buf = off === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(off);
  }
}

function socketFd(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

function peerPidOf(socket: Socket): number | undefined {
  const fd = socketFd(socket);
  const addon = loadNative().addon;
  if (fd === undefined || addon === undefined) return undefined;
  try {
    return addon.peerCred(fd).pid;
  } catch {
    return undefined;
  }
}

export interface LinkConnectionStatus {
  transport: Transport;
  /** Why the connection stayed on the socket (undefined when on shm or never asked). */
  shmDeclined: string | undefined;
  peerPid: number | undefined;
}

class ServerConnection implements RecordSink {
  transport: Transport = 'socket';
  shmDeclined: string | undefined;
  channel: ShmChannel | undefined;
  rings: RingPair | undefined;
  closed = false;
  constructor(
    readonly server: ShmServer,
    readonly socket: Socket,
  ) {}

  attach(rings: RingPair): void {
    if (this.closed) {
      rings.free();
      return;
    }
    this.rings = rings;
    this.channel = new ShmChannel(rings.addon, rings.tx, rings.rx, rings.rxBell, this);
    this.transport = 'shm';
    this.shmDeclined = undefined;
  }

  onRecord(kind: number, reqId: number, aux: number, offset: number, length: number, token: number): void {
    const payload = new Uint8Array((this.channel as ShmChannel).rx.sab, offset, length);
    if (kind !== FRAME_REQUEST) {
      this.onCorrupt(new CellError('E_PROTOCOL', `unexpected record kind ${kind} in the client ring.`));
      return;
    }
    this.dispatch(reqId, aux, payload, token);
  }

  beginDrain(): void {}

  endDrain(): void {}

  onCorrupt(err: CellError): void {
    this.server.errors.push(err);
    this.server.emitError(err);
    this.socket.destroy(err);
  }

  dispatch(reqId: number, method: number, payload: Uint8Array, token: number): void {
    let result: Uint8Array | Promise<Uint8Array>;
    try {
      result = this.server.handler(method, payload);
    } catch (err) {
      this.settle(reqId, token, undefined, err);
      return;
    }
    if (result instanceof Uint8Array) this.settle(reqId, token, result, undefined);
    else
      result.then(
        (r) => this.settle(reqId, token, r, undefined),
        (e) => this.settle(reqId, token, undefined, e),
      );
  }

  /** Replies, then releases the request's ring slot (the handler may have kept its view until now). */
  settle(reqId: number, token: number, result: Uint8Array | undefined, err: unknown): void {
    if (this.closed) return;
    const ch = this.channel;
    if (token >= 0) ch?.release(token);
    const kind = err === undefined ? FRAME_REPLY : FRAME_ERROR;
    const body = err === undefined ? (result as Uint8Array) : Buffer.from(String((err as Error)?.message ?? err));
    if (ch?.send(kind, reqId, 0, body)) return;
    this.socket.write(frame(kind, reqId, 0, body));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.channel?.close();
    if (this.rings !== undefined) {
      this.rings.free();
      this.server.ringsFreed++;
    }
    this.server.host.forget(this);
    this.server.connections.delete(this);
  }
}

/** The server side of the link: serves calls from socket and shm clients alike. */
export class ShmServer {
  readonly host: ShmHost<ServerConnection>;
  readonly connections = new Set<ServerConnection>();
  readonly errors: CellError[] = [];
  /** Ring pairs whose pages were released after their connection closed. */
  ringsFreed = 0;
  private readonly server: Server;
  private errorListener: ((err: CellError) => void) | undefined;

  constructor(
    readonly handler: LinkHandler,
    options: { ringCapacity?: number } = {},
  ) {
    this.host = new ShmHost(options.ringCapacity === undefined ? {} : { capacity: options.ringCapacity });
    this.server = createServer((socket) => this.accept(socket));
  }

  onError(listener: (err: CellError) => void): void {
    this.errorListener = listener;
  }

  emitError(err: CellError): void {
    this.errorListener?.(err);
  }

  async listen(path: string): Promise<void> {
    this.server.listen(path);
    await once(this.server, 'listening');
  }

  status(): LinkConnectionStatus[] {
    return [...this.connections].map((c) => ({
      transport: c.transport,
      shmDeclined: c.shmDeclined,
      peerPid: peerPidOf(c.socket),
    }));
  }

  private accept(socket: Socket): void {
    const conn = new ServerConnection(this, socket);
    this.connections.add(conn);
    socket.on('close', () => conn.close());
    socket.on('error', () => conn.close());
    // A pickup connection starts with "CELL", which as a frame length would exceed MAX_FRAME, so the
    // first four bytes tell the two kinds of connection apart.
    let opening: Buffer | undefined = Buffer.alloc(0);
    let pickup = false;
    const reader = new FrameReader((type, reqId, aux, payload) => {
      if (type === FRAME_REQUEST) conn.dispatch(reqId, aux, Buffer.from(payload), -1);
      else if (type === FRAME_UPGRADE_REQUEST) {
        const fd = socketFd(socket);
        const offer =
          fd === undefined ? { ok: false as const, reason: 'server: connection has no fd' } : this.host.offer(fd, conn);
        if (offer.ok) socket.write(frame(FRAME_UPGRADE_CHALLENGE, reqId, 0, encodeChallenge(offer.challenge)));
        else {
          conn.shmDeclined = offer.reason;
          socket.write(frame(FRAME_UPGRADE_DECLINED, reqId, 0, Buffer.from(offer.reason)));
        }
      } else throw new CellError('E_PROTOCOL', `unexpected frame type ${type}.`);
    });
    socket.on('data', (data: Buffer) => {
      try {
        let chunk = data;
        if (opening !== undefined) {
          opening = Buffer.concat([opening, chunk]);
          if (!pickup) {
            if (opening.length < 4) return;
            pickup = opening.subarray(0, 4).equals(PICKUP_MAGIC.subarray(0, 4));
          }
          if (pickup) {
            if (opening.length < PICKUP_REQUEST_BYTES) return;
            this.connections.delete(conn);
            socket.removeAllListeners('data');
            const { context, rings } = this.host.pickUp(socket, opening.subarray(0, PICKUP_REQUEST_BYTES));
            context.attach(rings);
            return;
          }
          chunk = opening;
          opening = undefined;
        }
        reader.push(chunk);
      } catch (err) {
        if (err instanceof CellError) {
          this.errors.push(err);
          this.emitError(err);
        }
        socket.destroy();
      }
    });
  }

  async close(): Promise<void> {
    for (const c of this.connections) c.socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

interface Pending {
  resolve: (v: Buffer) => void;
  reject: (e: Error) => void;
}

export interface ConnectOptions {
  /** 'auto' (default): upgrade when both sides can; 'off': stay on the socket. */
  shm?: 'auto' | 'off';
  upgradeTimeoutMs?: number;
}

/** The client side of the link. */
export class ShmClient implements RecordSink {
  transport: Transport = 'socket';
  shmDeclined: string | undefined;
  channel: ShmChannel | undefined;
  private rings: RingPair | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closedError: Error | undefined;
  private upgradeWaiter: ((type: number, payload: Buffer) => void) | undefined;

  private constructor(
    readonly socket: Socket,
    readonly path: string,
  ) {
    const reader = new FrameReader((type, reqId, _aux, payload) => {
      if (type === FRAME_REPLY || type === FRAME_ERROR) this.settle(type, reqId, Buffer.from(payload));
      else if (type === FRAME_UPGRADE_CHALLENGE || type === FRAME_UPGRADE_DECLINED) {
        this.upgradeWaiter?.(type, Buffer.from(payload));
      } else throw new CellError('E_PROTOCOL', `unexpected frame type ${type}.`);
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (err) {
        socket.destroy(err as Error);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => this.fail(new CellError('E_CONNECTION_LOST', `connection to ${path} closed.`)));
  }

  static async connect(path: string, options: ConnectOptions = {}): Promise<ShmClient> {
    const socket = createConnection(path);
    await once(socket, 'connect');
    socket.setNoDelay?.(true);
    const client = new ShmClient(socket, path);
    if (options.shm === 'off') client.shmDeclined = 'client: shm turned off by the caller';
    else await client.upgrade(options.upgradeTimeoutMs ?? 2000);
    return client;
  }

  private async upgrade(timeoutMs: number): Promise<void> {
    const fd = socketFd(this.socket);
    const local = clientShmDecline(fd);
    if (local !== undefined) {
      this.shmDeclined = local;
      return;
    }
    try {
      const answer = await new Promise<{ type: number; payload: Buffer }>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.upgradeWaiter = undefined;
          reject(new CellError('E_TIMEOUT', `server did not answer the upgrade request within ${timeoutMs} ms`));
        }, timeoutMs);
        this.upgradeWaiter = (type, payload) => {
          clearTimeout(timer);
          this.upgradeWaiter = undefined;
          resolve({ type, payload });
        };
        this.socket.write(frame(FRAME_UPGRADE_REQUEST, 0, 0, Buffer.alloc(0)));
      });
      if (answer.type === FRAME_UPGRADE_DECLINED) {
        this.shmDeclined = answer.payload.toString('utf8');
        return;
      }
      const rings = await pickUpRings(this.path, decodeChallenge(answer.payload), timeoutMs, fd as number);
      this.channel = new ShmChannel(rings.addon, rings.tx, rings.rx, rings.rxBell, this);
      this.rings = rings;
      this.transport = 'shm';
    } catch (err) {
      this.shmDeclined = (err as Error).message;
    }
  }

  /** Calls `method`; the reply bytes are a copy the caller owns. */
  call(method: number, payload: Uint8Array): Promise<Buffer> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    const reqId = this.nextId;
    this.nextId = (this.nextId + 1) >>> 0 || 1;
    const p = new Promise<Buffer>((resolve, reject) => {
      this.pending.set(reqId, { resolve, reject });
    });
    const ch = this.channel;
    if (ch?.send(FRAME_REQUEST, reqId, method, payload)) ch.expect();
    else this.socket.write(frame(FRAME_REQUEST, reqId, method, payload));
    return p;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  onRecord(kind: number, reqId: number, _aux: number, offset: number, length: number, token: number): void {
    const copy = Buffer.allocUnsafe(length);
    copy.set((this.channel as ShmChannel).rx.bytes.subarray(offset, offset + length));
    this.channel?.release(token);
    if (kind !== FRAME_REPLY && kind !== FRAME_ERROR) {
      this.onCorrupt(new CellError('E_PROTOCOL', `unexpected record kind ${kind} in the server ring.`));
      return;
    }
    this.settle(kind, reqId, copy);
  }

  beginDrain(): void {}

  endDrain(): void {}

  onCorrupt(err: CellError): void {
    this.socket.destroy();
    this.fail(err);
  }

  private settle(kind: number, reqId: number, payload: Buffer): void {
    const p = this.pending.get(reqId);
    if (p === undefined) {
      this.onCorrupt(new CellError('E_PROTOCOL', `reply for unknown request id ${reqId}.`));
      return;
    }
    this.pending.delete(reqId);
    if (kind === FRAME_REPLY) p.resolve(payload);
    else p.reject(new CellError('E_REMOTE', payload.toString('utf8')));
  }

  private fail(err: Error): void {
    if (this.closedError === undefined) this.closedError = err;
    this.channel?.close();
    this.rings?.free();
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  close(): void {
    this.socket.destroy();
    this.fail(new CellError('E_CLOSED', 'connection closed by the caller.'));
  }
}
