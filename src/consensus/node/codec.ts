import { protein, t } from '../../protein/index.js';
import { rpc, service } from '../../service/index.js';
import type { Entry, EntryType, Message, MsgType } from '../raft/types.js';

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
 */
export const RaftPeerService = service('raft', {
  step: rpc(t.bytes, t.unit),
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
 * ArrayBuffer each, which the garbage collector then sweeps. */
export function fromWire(w: WireMessage): Message {
  const entries: Entry[] = w.entries.map((e) => ({
    term: e.term,
    index: e.index,
    type: e.type as EntryType,
    data: e.data,
  }));
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

export function decodeBatch(bytes: Uint8Array): Message[] {
  return RaftBatchWire.decode(bytes).messages.map(fromWire);
}
