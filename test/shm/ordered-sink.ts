// A record sink for the ring tests: checks every ring's records arrive in order, once, and hands each
// to `seen` (the tests' own check or log); plus a wait for a condition the pollers bring about.
import assert from 'node:assert/strict';
import type { CellError } from '../../src/errors/index.js';
import type { RecordSink, ShmChannel } from '../../src/shm/channel.js';

export class OrderedSink implements RecordSink {
  channel: ShmChannel | null = null;
  next = 1;
  constructor(
    readonly ring: number,
    private readonly seen: (ring: number, reqId: number, aux: number) => void = () => {},
  ) {}
  onRecord(_kind: number, reqId: number, aux: number, _offset: number, _length: number, token: number): void {
    assert.equal(reqId, this.next, `ring ${this.ring}: record ${reqId} out of order`);
    this.next++;
    this.seen(this.ring, reqId, aux);
    this.channel?.release(token);
  }
  onCorrupt(err: CellError): void {
    throw err;
  }
  beginDrain(): void {}
  endDrain(): void {}
}

export async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}
