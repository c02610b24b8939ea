import type { RaftNode } from '../node/node.js';
import type { Raft } from '../raft/raft.js';
import { type Entry, EntryType, type Message } from '../raft/types.js';
import { SimDisk } from '../wal/simdisk.js';
import { hashBytes, mix } from './events.js';

/** Keys of the simulated store: few, so that reads and writes collide. */
export const KEYS = 3;

/** The replicated state machine: a key-value store (each command is a put of a unique value) plus a
 * running hash of everything applied, compared across nodes at every index. */
export interface SmState {
  index: number;
  hash: number;
  kv: Map<number, number>;
}

export function emptySm(): SmState {
  return { index: 0, hash: 0, kv: new Map() };
}

/** A put's value, or undefined for any other entry (the leader's no-op, a configuration). */
export function putValue(e: Entry): number | undefined {
  if (e.type !== EntryType.Normal || e.data.length !== 8) return undefined;
  return new DataView(e.data.buffer, e.data.byteOffset, 8).getFloat64(0, true);
}

export function applyToSm(sm: SmState, e: Entry): void {
  sm.hash = hashBytes(mix(sm.hash, e.type), e.data);
  sm.index = e.index;
  const v = putValue(e);
  if (v !== undefined && v > 0) sm.kv.set(v % KEYS, v);
}

export function encodeSm(s: SmState): Uint8Array {
  const out = new Uint8Array(12 + 16 * s.kv.size);
  const dv = new DataView(out.buffer);
  dv.setFloat64(0, s.index, true);
  dv.setUint32(8, s.hash, true);
  let o = 12;
  for (const [k, v] of s.kv) {
    dv.setFloat64(o, k, true);
    dv.setFloat64(o + 8, v, true);
    o += 16;
  }
  return out;
}

export function decodeSm(b: Uint8Array): SmState {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const kv = new Map<number, number>();
  for (let o = 12; o + 16 <= b.byteLength; o += 16) kv.set(dv.getFloat64(o, true), dv.getFloat64(o + 8, true));
  return { index: dv.getFloat64(0, true), hash: dv.getUint32(8, true), kv };
}

/** One simulated process: its RaftNode (and the core it runs), its disk, its state machine, and what
 * it holds while paused. */
export class SimNode {
  core!: Raft;
  up = true;
  paused = false;
  incarnation = 0;
  /** Tick period factor (clock skew). */
  skew = 1;
  sm: SmState = emptySm();
  /** Highest commit index the checkers have recorded for this node. */
  commitSeen = 0;
  lastCommit = 0;
  /** What the process would have run while it was paused (timers, fsync completions, incoming
   * messages, as a stopped process's socket buffer holds them), in order, for when it resumes. */
  heldCalls: (() => void)[] = [];
  /** The RaftNode of the current incarnation (null while down or starting), its file system, and where
   * its transport delivers. */
  shell: RaftNode | null = null;
  fs: SimDisk = new SimDisk();
  deliver: ((msgs: Message[]) => void) | null = null;
  constructor(readonly id: number) {}
}
