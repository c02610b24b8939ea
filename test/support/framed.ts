import type { Duplex } from 'node:stream';
import { CellError } from '../../src/errors/index.js';

/**
 * A minimal multiplexed request/response framing: `u32 LE length | u32 LE request id | payload`,
 * length counting the id and payload. It is the plain baseline the Axon benchmark compares against
 * and the peer the multi-host tests call before a full cell transport sits on top of the same TLS.
 */
export const FRAME_HEADER = 8;
export const DEFAULT_MAX_FRAME = 16 * 1024 * 1024;

/** Splits a byte stream into frames without copying when a frame lies inside one chunk. */
export class FrameReader {
  private pending: Buffer | undefined;
  constructor(
    private readonly onFrame: (id: number, payload: Buffer) => void,
    private readonly maxFrame = DEFAULT_MAX_FRAME,
  ) {}

  push(chunk: Buffer): void {
    const buf = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = undefined;
    let off = 0;
    while (buf.length - off >= 4) {
      const len = buf.readUInt32LE(off);
      if (len < 4 || len > this.maxFrame) {
        throw new CellError('E_FRAME_TOO_LARGE', `frame of ${len} bytes is outside 4..${this.maxFrame}.`, {
          fix: 'the peer speaks another protocol or sends messages above the frame limit.',
        });
      }
      if (buf.length - off < 4 + len) break;
      const id = buf.readUInt32LE(off + 4);
      this.onFrame(id, buf.subarray(off + FRAME_HEADER, off + 4 + len));
      off += 4 + len;
    }
    if (off < buf.length) this.pending = off === 0 ? buf : Buffer.from(buf.subarray(off));
  }
}

export function encodeFrame(id: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER + payload.length);
  out.writeUInt32LE(4 + payload.length, 0);
  out.writeUInt32LE(id, 4);
  out.set(payload, FRAME_HEADER);
  return out;
}

export type FrameHandler = (payload: Buffer) => Uint8Array | Promise<Uint8Array>;

/** Serves frames on a stream: each reply carries its request's id; replies may come out of order. */
export function serveFrames(
  stream: Duplex,
  handler: FrameHandler,
  hooks: { onStart?: () => void; onEnd?: () => void } = {},
): void {
  const reader = new FrameReader((id, payload) => {
    hooks.onStart?.();
    let result: Uint8Array | Promise<Uint8Array>;
    try {
      result = handler(payload);
    } catch {
      hooks.onEnd?.();
      stream.destroy();
      return;
    }
    if (result instanceof Uint8Array) {
      hooks.onEnd?.();
      if (!stream.destroyed) stream.write(encodeFrame(id, result));
      return;
    }
    result.then(
      (reply) => {
        hooks.onEnd?.();
        if (!stream.destroyed) stream.write(encodeFrame(id, reply));
      },
      () => {
        hooks.onEnd?.();
        stream.destroy();
      },
    );
  });
  stream.on('data', (chunk: Buffer) => {
    try {
      reader.push(chunk);
    } catch {
      stream.destroy();
    }
  });
  stream.on('error', () => {});
}

interface Pending {
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

/** The client side: pipelined calls with ids, per-call timeouts, every pending call failed on loss. */
export class FramedChannel {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closedError: CellError | undefined;
  inFlight = 0;

  constructor(
    private readonly stream: Duplex,
    private readonly label: string,
  ) {
    const reader = new FrameReader((id, payload) => {
      const p = this.pending.get(id);
      if (p === undefined) return;
      this.pending.delete(id);
      this.inFlight--;
      if (p.timer !== undefined) clearTimeout(p.timer);
      // The chunk is reused by nobody else, but copy so callers may keep the reply past the next read.
      p.resolve(Buffer.from(payload));
    });
    stream.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (err) {
        this.fail(err as CellError);
        stream.destroy();
      }
    });
    stream.on('error', (err) =>
      this.fail(
        new CellError('E_CONNECTION_LOST', `connection to ${label} failed: ${err.message}.`, {
          cause: err,
          fix: 'the call may be retried on another instance.',
        }),
      ),
    );
    stream.on('close', () =>
      this.fail(
        new CellError('E_CONNECTION_LOST', `connection to ${label} closed.`, {
          fix: 'the call may be retried on another instance.',
        }),
      ),
    );
  }

  get closed(): boolean {
    return this.closedError !== undefined;
  }

  call(payload: Uint8Array, timeoutMs = 5_000): Promise<Buffer> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    const id = this.nextId;
    this.nextId = this.nextId === 0xffffffff ? 1 : this.nextId + 1;
    return new Promise<Buffer>((resolve, reject) => {
      const entry: Pending = { resolve, reject, timer: undefined };
      if (timeoutMs > 0) {
        entry.timer = setTimeout(() => {
          if (this.pending.delete(id)) {
            this.inFlight--;
            reject(
              new CellError('E_TIMEOUT', `call to ${this.label} got no reply in ${timeoutMs} ms.`, {
                fix: 'the peer or the network path is slow or cut; the call may be retried.',
              }),
            );
          }
        }, timeoutMs);
      }
      this.pending.set(id, entry);
      this.inFlight++;
      this.stream.write(encodeFrame(id, payload));
    });
  }

  close(): void {
    this.stream.end();
    this.stream.destroy();
  }

  private fail(err: CellError): void {
    if (this.closedError !== undefined) return;
    this.closedError = err;
    for (const p of this.pending.values()) {
      if (p.timer !== undefined) clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
    this.inFlight = 0;
  }
}
