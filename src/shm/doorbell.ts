import { randomBytes } from 'node:crypto';
import type { NativeAddon } from './native.js';
import { BELL_ID_BYTES } from './ring.js';

/**
 * Doorbells shared by every connection between the same two processes (docs/PROTOCOL.md § 3.3,
 * Sleeping). With one eventfd per ring, a caller with 64 connections whose rings all fell asleep
 * costs the cell 64 writes and itself 64 wake-ups per round of replies; sharing one eventfd per
 * direction between the two processes makes that one write and one wake-up, after which the woken
 * side finds the rings that rang (each ring still has its own `sleeping` word).
 *
 * Shared per process pair, not per process: whoever holds an eventfd can also read it, and a read
 * swallows a wake-up. A caller therefore holds only the doorbells of its own connections, so the
 * worst it can do to them is delay its own calls, never another caller's.
 */
export interface BellPair {
  /** Client→server doorbell (the server consumes) and server→client doorbell (the client consumes). */
  readonly c2s: number;
  readonly s2c: number;
  /** Written into both rings' headers; a client keeps one pair per server process and id. */
  readonly id: Buffer;
  /** Rings the doorbell this process produces for (coalesced: one write per synchronous run). */
  readonly tx: Ringer;
  refs: number;
  readonly key: string;
}

/**
 * Writes to one eventfd at most once per synchronous run: every ring that found its consumer asleep
 * during the run asks, the write happens from one microtask after it.
 */
export class Ringer {
  private owed = false;
  private closed = false;

  constructor(
    private readonly addon: NativeAddon,
    private readonly fd: number,
  ) {}

  readonly ring = (): void => {
    if (this.owed || this.closed) return;
    this.owed = true;
    queueMicrotask(this.flush);
  };

  private readonly flush = (): void => {
    this.owed = false;
    if (this.closed) return;
    try {
      this.addon.eventfdSignal(this.fd);
    } catch {
      // the peer's end is gone: its connection is closing, nobody is left to wake
    }
  };

  /** Before its fd is closed: a write owed from an earlier run must not reach a reused fd number. */
  close(): void {
    this.closed = true;
  }
}

/** The serving side's pairs, by the caller's pid (SO_PEERCRED of the connection that asked). */
const served = new Map<string, BellPair>();
/** The calling side's pairs, by the server's pid and the pair's id. */
const called = new Map<string, BellPair>();

/** Server: the doorbells of every shared-bell connection from process `pid` (made on first use). */
export function shareBells(addon: NativeAddon, pid: number): BellPair {
  const key = String(pid);
  const known = served.get(key);
  if (known !== undefined) {
    known.refs++;
    return known;
  }
  const c2s = addon.eventfdCreate();
  let s2c: number;
  try {
    s2c = addon.eventfdCreate();
  } catch (err) {
    addon.closeFd(c2s);
    throw err;
  }
  const pair = { c2s, s2c, id: randomBytes(BELL_ID_BYTES), tx: new Ringer(addon, s2c), refs: 1, key };
  served.set(key, pair);
  return pair;
}

/**
 * Client: the pair a server named `id` in the rings' headers. The first connection's fds become the
 * pair's; a later connection's copies of the same eventfds are closed, so each doorbell is watched once.
 */
export function adoptBells(addon: NativeAddon, serverPid: number, id: string, c2s: number, s2c: number): BellPair {
  const key = `${serverPid}:${id}`;
  const known = called.get(key);
  if (known !== undefined) {
    addon.closeFd(c2s);
    addon.closeFd(s2c);
    known.refs++;
    return known;
  }
  const pair = { c2s, s2c, id: Buffer.from(id, 'hex'), tx: new Ringer(addon, c2s), refs: 1, key };
  called.set(key, pair);
  return pair;
}

/** One connection of the pair is gone; the last one closes the eventfds. */
export function releaseBells(addon: NativeAddon, pair: BellPair): void {
  if (--pair.refs > 0) return;
  for (const map of [served, called]) if (map.get(pair.key) === pair) map.delete(pair.key);
  pair.tx.close();
  addon.closeFd(pair.c2s);
  addon.closeFd(pair.s2c);
}
