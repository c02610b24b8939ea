import type { Writable } from 'node:stream';

/**
 * Where a session writes outgoing frames. The stream implementation below coalesces frames into
 * slabs; the shared-memory transport implements the same three members over its ring.
 *
 * Protocol: `const o = sink.reserve(n)` guarantees `sink.buf[o, o+n)` is writable; the caller writes
 * one or more whole frames there and calls `sink.commit(end)`. Nothing is sent before commit, and
 * committed bytes go out no later than the end of the current tick (write coalescing).
 */
export interface FrameSink {
  readonly buf: Buffer;
  reserve(size: number): number;
  commit(end: number): void;
  /** Sends committed bytes now (used at the end of a read callback, before yielding to the loop). */
  flush(): void;
  /**
   * Optional: hold committed frames back until the matching uncork(), to publish a run of frames at
   * once (a carrier whose every publication costs something, like the shared-memory ring's tail).
   * Calls nest and must balance within one synchronous run; flush() publishes held frames too.
   */
  cork?(): void;
  uncork?(): void;
  /**
   * Optional: commit, letting the frame wait (at the latest until a microtask runs) to go out with
   * frames committed after it. For a frame whose peer is busy anyway (calls already in flight).
   */
  commitSoon?(end: number): void;
}

const SLAB_SIZE = 64 * 1024;

/**
 * Frames go into a slab; a flush hands the slab's filled-but-unsent range to the stream as one
 * subarray and keeps appending after it. Bytes already handed to the stream are never touched again,
 * so no copy is needed and a slab is replaced only when it is full.
 */
export class StreamFrameSink implements FrameSink {
  buf: Buffer = Buffer.allocUnsafe(SLAB_SIZE);
  /** True after the stream refused more data; cleared on 'drain'. */
  blocked = false;
  private start = 0;
  private pos = 0;
  private scheduled = false;
  private readonly stream: Writable;
  private readonly onBlocked: (() => void) | null;

  constructor(stream: Writable, onBlocked: (() => void) | null = null) {
    this.stream = stream;
    this.onBlocked = onBlocked;
  }

  reserve(size: number): number {
    if (this.pos + size > this.buf.length) {
      this.flush();
      this.buf = Buffer.allocUnsafe(Math.max(size, SLAB_SIZE));
      this.start = 0;
      this.pos = 0;
    }
    return this.pos;
  }

  commit(end: number): void {
    this.pos = end;
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(flushTick, this);
    }
  }

  /** Writes an already-built frame (cold paths) after whatever is pending, in order. */
  writeFrame(frame: Uint8Array): void {
    const o = this.reserve(frame.length);
    this.buf.set(frame, o);
    this.commit(o + frame.length);
  }

  flush(): void {
    if (this.pos === this.start) return;
    const chunk = this.buf.subarray(this.start, this.pos);
    this.start = this.pos;
    if (this.stream.destroyed || this.stream.writableEnded) return;
    if (!this.stream.write(chunk) && !this.blocked) {
      this.blocked = true;
      this.stream.once('drain', () => {
        this.blocked = false;
      });
      if (this.onBlocked !== null) this.onBlocked();
    }
  }

  /** Bytes committed but not yet handed to the stream. */
  get pending(): number {
    return this.pos - this.start;
  }

  tickDone(): void {
    this.scheduled = false;
    this.flush();
  }
}

function flushTick(sink: StreamFrameSink): void {
  sink.tickDone();
}
