import { HEADER_SIZE, readU32 } from '../frame/index.js';

const SLAB_SIZE = 64 * 1024;

/**
 * A FrameSink for a carrier that publishes each frame as a message: frames are encoded into a slab,
 * and `commit` hands every whole frame to `frame(…)` at once. The slab is append-only — a range once
 * committed is never written again, a full slab is replaced — because the NATS client keeps references
 * to published payloads until its next socket write instead of copying them.
 */
export abstract class FrameSlab {
  buf: Buffer = Buffer.allocUnsafe(SLAB_SIZE);
  private pos = 0;

  reserve(size: number): number {
    if (this.pos + size > this.buf.length) {
      this.buf = Buffer.allocUnsafe(Math.max(size, SLAB_SIZE));
      this.pos = 0;
    }
    return this.pos;
  }

  commit(end: number): void {
    const b = this.buf;
    let o = this.pos;
    this.pos = end;
    while (o + HEADER_SIZE <= end) {
      const next = o + 4 + readU32(b, o);
      this.frame(b[o + 4] as number, b[o + 6]! | (b[o + 7]! << 8), readU32(b, o + 8), b, o + HEADER_SIZE, next);
      o = next;
    }
  }

  /** Frames leave at commit; nothing waits for a flush. */
  flush(): void {}

  /** Writes an already-built frame (cold paths) after the pending ones. */
  writeFrame(frame: Uint8Array): void {
    const o = this.reserve(frame.length);
    this.buf.set(frame, o);
    this.commit(o + frame.length);
  }

  /** One committed frame; `b[start, end)` is its payload and stays untouched afterwards. */
  protected abstract frame(
    type: number,
    method: number,
    requestId: number,
    b: Buffer,
    start: number,
    end: number,
  ): void;
}
