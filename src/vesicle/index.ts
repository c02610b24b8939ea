/**
 * A message buffer: the bytes of one frame payload, either owned (copied or reassembled, safe to keep)
 * or borrowed (a view into a socket chunk or a shared-memory ring slot that is only valid until
 * `release()`). The server releases a request's Vesicle when its handler settles, so a ring slot can be
 * reused; a handler that needs the bytes longer calls `retain()` (copies if borrowed) before returning.
 */
export class Vesicle {
  bytes: Uint8Array;
  offset: number;
  length: number;
  private borrowedFlag: boolean;
  private onRelease: ((v: Vesicle) => void) | null;
  private releasedFlag = false;

  constructor(
    bytes: Uint8Array,
    offset = 0,
    length = bytes.length - offset,
    borrowed = false,
    onRelease: ((v: Vesicle) => void) | null = null,
  ) {
    this.bytes = bytes;
    this.offset = offset;
    this.length = length;
    this.borrowedFlag = borrowed;
    this.onRelease = onRelease;
  }

  /** A Vesicle that owns its bytes. */
  static owned(bytes: Uint8Array): Vesicle {
    return new Vesicle(bytes, 0, bytes.length, false, null);
  }

  /** A Vesicle over someone else's memory; `onRelease` runs once when it is released. */
  static borrowed(
    bytes: Uint8Array,
    offset: number,
    length: number,
    onRelease: ((v: Vesicle) => void) | null = null,
  ): Vesicle {
    return new Vesicle(bytes, offset, length, true, onRelease);
  }

  get borrowed(): boolean {
    return this.borrowedFlag;
  }

  get released(): boolean {
    return this.releasedFlag;
  }

  /** The payload as a Uint8Array view (no copy). Do not keep it past release() if borrowed. */
  get payload(): Uint8Array {
    return this.bytes.subarray(this.offset, this.offset + this.length);
  }

  /** Makes the Vesicle own its bytes (copying if they were borrowed) so it survives release(). */
  retain(): this {
    if (this.borrowedFlag) {
      const copy = new Uint8Array(this.length);
      copy.set(this.bytes.subarray(this.offset, this.offset + this.length));
      this.bytes = copy;
      this.offset = 0;
      this.borrowedFlag = false;
      const hook = this.onRelease;
      this.onRelease = null;
      if (hook !== null && !this.releasedFlag) {
        this.releasedFlag = true;
        hook(this);
      }
      this.releasedFlag = false;
    }
    return this;
  }

  /** Gives borrowed memory back to its owner. Idempotent. */
  release(): void {
    if (this.releasedFlag) return;
    this.releasedFlag = true;
    const hook = this.onRelease;
    this.onRelease = null;
    if (hook !== null) hook(this);
  }
}
