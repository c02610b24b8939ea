import { protein, t } from '../../protein/index.js';
import { rpc, service } from '../../service/index.js';
import type { Entry, Message, MsgType } from '../raft/types.js';

/** Raft messages on the wire between peers (protein-encoded). */
export const RaftEntryWire = protein('RaftEntry', { term: t.uint, index: t.uint, type: t.u8, data: t.bytes });
export const RaftSnapshotWire = protein('RaftSnapshot', {
  index: t.uint,
  term: t.uint,
  voters: t.vec(t.u32),
  data: t.bytes,
});
export const RaftMessageWire = protein('RaftMessage', {
  type: t.u8,
  to: t.u32,
  from: t.u32,
  term: t.uint,
  logTerm: t.uint,
  index: t.uint,
  commit: t.uint,
  reject: t.bool,
  hint: t.int,
  ctx: t.uint,
  entries: t.vec(RaftEntryWire),
  snapshot: t.option(RaftSnapshotWire),
});
export const RaftBatchWire = protein('RaftBatch', { messages: t.vec(RaftMessageWire) });

/**
 * The peer service every Raft node serves: one call carries every message queued for that peer, as a
 * RaftBatch encoded by the sender (decoded with copies on arrival, since the frame is reused).
 * `exchange` answers with the messages the receiver has for the caller by the time the batch's Ready
 * is done (its acknowledgements among them), so a replication round is one call instead of two;
 * `step` only delivers. docs/PROTOCOL.md § 7.
 */
export const RaftPeerService = service('raft', {
  step: rpc(t.bytes, t.unit),
  exchange: rpc(t.bytes, t.bytes),
});

type WireMessage = Parameters<typeof RaftMessageWire.encode>[0];

export function toWire(m: Message): WireMessage {
  return {
    type: m.type,
    to: m.to,
    from: m.from,
    term: m.term,
    logTerm: m.logTerm,
    index: m.index,
    commit: m.commit,
    reject: m.reject,
    hint: m.hint,
    ctx: m.ctx,
    entries: m.entries ?? [],
    snapshot: m.snapshot ?? undefined,
  };
}

/** The decoded byte fields are already copies (protein's decode copies them out of the frame, small
 * ones into a shared slab), so they are kept as they are: a second copy per entry would cost an
 * ArrayBuffer each, which the garbage collector then sweeps. So are the decoded entries themselves:
 * protein builds each as a fresh `{ term, index, type, data }`, an Entry already (its type byte
 * taken as an EntryType unchecked, as the copy did); a copy would be one more object per entry per follower
 * for the log to keep. */
export function fromWire(w: WireMessage): Message {
  const entries = w.entries as Entry[];
  const s = w.snapshot;
  return {
    type: w.type as MsgType,
    to: w.to,
    from: w.from,
    term: w.term,
    logTerm: w.logTerm,
    index: w.index,
    commit: w.commit,
    reject: w.reject,
    hint: w.hint,
    ctx: w.ctx,
    entries,
    snapshot: s ? { index: s.index, term: s.term, voters: [...s.voters], data: s.data } : null,
  };
}

export function encodeBatch(msgs: readonly Message[]): Uint8Array {
  return RaftBatchWire.encode({ messages: msgs.map(toWire) });
}

const u32 = (b: Uint8Array, p: number): number => (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;

/** A slot (§ 1.2 of docs/PROTOCOL.md) is 8 bytes; RaftMessage declares its two variable fields
 * (entries, snapshot) last, so the fixed section is the scalar fields, then those two slots. */
const SLOT = 8;

function sameEntries(a: readonly Entry[] | null | undefined, b: readonly Entry[] | null | undefined): boolean {
  if (a === b) return true;
  const x = a ?? [];
  const y = b ?? [];
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Same message types carrying the same entry objects and no snapshot: the encodings differ only in
 * their scalar fields (to, ctx, index, …). */
function sameShape(a: readonly Message[], b: readonly Message[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i].snapshot || b[i].snapshot || !sameEntries(a[i].entries, b[i].entries)) return false;
  }
  return true;
}

const BATCH_SLAB = 256 * 1024;

/**
 * Encodes batches for the wire into slabs of its own instead of protein's shared one: the commands a
 * node keeps in its log are often encoded into that shared slab, and a batch's bytes beside them would
 * then live as long as the log keeps them. A slab is replaced when full, never rewritten, so the bytes
 * returned stay valid (a call may be encoded only once its connection is up).
 */
export class BatchEncoder {
  private slab: Buffer = Buffer.allocUnsafe(0);
  private pos = 0;

  private reserve(size: number): number {
    if (this.pos + size > this.slab.length) {
      this.slab = Buffer.allocUnsafe(Math.max(size, BATCH_SLAB));
      this.pos = 0;
    }
    return this.pos;
  }

  private take(at: number, end: number): Uint8Array {
    this.pos = (end + 7) & ~7;
    return this.slab.subarray(at, end);
  }

  encode(msgs: readonly Message[]): Uint8Array {
    const wire = { messages: msgs.map(toWire) };
    const at = this.reserve(RaftBatchWire.sizeOf(wire));
    return this.take(at, RaftBatchWire.encodeInto(wire, this.slab, at));
  }

  /**
   * The encoding of `msgs` made from `like`, the encoding of `likeMsgs`, when both batches carry the
   * same entries (a leader's append of one range to every follower): a copy of those bytes with each
   * message's scalar fields rewritten, instead of encoding every entry again. Byte for byte what
   * encode(msgs) returns. Null when the shapes differ.
   */
  encodeLike(likeMsgs: readonly Message[], like: Uint8Array, msgs: readonly Message[]): Uint8Array | null {
    if (!sameShape(likeMsgs, msgs)) return null;
    const at = this.reserve(like.length);
    const out = this.slab;
    out.set(like, at);
    // RaftBatch is one field, a slot to the vec of messages; the vec holds a count, then one slot per
    // message with its offset relative to the vec's start.
    const vec = at + u32(out, at + 4 + u32(out, at) - SLOT);
    for (let i = 0; i < msgs.length; i++) {
      const m = vec + u32(out, vec + 4 + i * SLOT);
      const head = RaftMessageWire.encode(toWire({ ...msgs[i], entries: [], snapshot: null }));
      const fixed = u32(head, 0);
      if (u32(out, m) !== fixed) return null;
      out.set(head.subarray(4, 4 + fixed - 2 * SLOT), m + 4);
    }
    return this.take(at, at + like.length);
  }
}

export function decodeBatch(bytes: Uint8Array): Message[] {
  return RaftBatchWire.decode(bytes).messages.map(fromWire);
}
