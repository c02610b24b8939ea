/** Node ids are positive integers; 0 means "nobody". */
export const NONE = 0;

export const EntryType = { Normal: 0, Config: 1 } as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  /** Normal: the command (empty for the leader's no-op). Config: the full new voter set, see encodeVoters. */
  data: Uint8Array;
}

export interface HardState {
  term: number;
  vote: number;
  commit: number;
}

export interface Snapshot {
  index: number;
  term: number;
  /** The voter set in force at `index`. */
  voters: number[];
  data: Uint8Array;
}

export const MsgType = {
  App: 1,
  AppResp: 2,
  Vote: 3,
  VoteResp: 4,
  PreVote: 5,
  PreVoteResp: 6,
  Heartbeat: 7,
  HeartbeatResp: 8,
  Snap: 9,
  TimeoutNow: 10,
  ReadIndex: 11,
  ReadIndexResp: 12,
} as const;
export type MsgType = (typeof MsgType)[keyof typeof MsgType];

/**
 * One shape for every message (monomorphic on the hot path). Field meaning by type:
 * App: index/logTerm = the entry preceding `entries`, ctx = the leader's number for this append to this
 * follower (also on Snap); AppResp: index = highest index now matching (or the rejected prevIndex with
 * reject=true, hint/logTerm = the follower's best guess), ctx = the number of the append it answers;
 * Heartbeat: commit/logTerm = an index the follower is known to hold and its term;
 * Heartbeat/HeartbeatResp/ReadIndex/ReadIndexResp: ctx = read sequence or read id;
 * Vote/PreVote: index/logTerm = the candidate's last entry, ctx = 1 when forced by leadership transfer.
 */
export interface Message {
  type: MsgType;
  to: number;
  from: number;
  term: number;
  logTerm: number;
  index: number;
  commit: number;
  reject: boolean;
  hint: number;
  ctx: number;
  entries: Entry[] | null;
  snapshot: Snapshot | null;
}

export function message(type: MsgType, to: number, from: number, term: number): Message {
  return {
    type,
    to,
    from,
    term,
    logTerm: 0,
    index: 0,
    commit: 0,
    reject: false,
    hint: 0,
    ctx: 0,
    entries: null,
    snapshot: null,
  };
}

export const Role = { Follower: 0, PreCandidate: 1, Candidate: 2, Leader: 3 } as const;
export type Role = (typeof Role)[keyof typeof Role];
export const roleName = ['follower', 'pre-candidate', 'candidate', 'leader'] as const;

export interface ReadState {
  /** Commit index at which the read became safe; serve it once applied >= index. */
  index: number;
  /** The id the caller passed to readIndex(). */
  ctx: number;
}

/**
 * What the shell must do, in this order: send `messages` (they depend on nothing this Ready writes, so
 * they may leave before or while it is persisted); persist snapshot, entries and hard state (one sync)
 * when `mustSync`; then send `messagesAfterSync`; apply `committedEntries`; serve `readStates`; call
 * advance(). `committedEntries` are already durable on this node and a quorum, so they (and
 * `readStates`) may be applied while the write is in flight. The core decides which message may leave when (etcd-raft's MustSync and its messages
 * after append), so every shell — RaftNode and the simulator — follows one rule.
 */
export interface Ready {
  /** The latest term, vote and commit index when any of them changed since the last Ready. */
  hardState: HardState | null;
  snapshot: Snapshot | null;
  entries: Entry[];
  /** Whether this Ready must be made durable (one fdatasync) before `messagesAfterSync` leave: it holds
   * a snapshot, entries, or a new term or vote. A hard state that changes only the commit index need
   * not be synced (a restarted node learns the commit index again from the leader); the shell writes
   * it with the next synced batch. */
  mustSync: boolean;
  committedEntries: Entry[];
  /** May be sent at once: everything when nothing must be synced; otherwise a leader's appends and
   * heartbeats of its current term when its term and vote are already durable (Raft thesis §10.2.1: a
   * leader may replicate while its own write is in flight; it counts itself towards a quorum only for
   * what it has persisted). */
  messages: Message[];
  /** Sent only once the write is durable: votes, acknowledgements of entries, and anything sent in a
   * term (or with a vote) not yet on disk. Empty when `mustSync` is false. */
  messagesAfterSync: Message[];
  readStates: ReadState[];
  /** Set when the leader or role changed since the last Ready. */
  softState: { lead: number; role: Role; term: number } | null;
}

export function encodeVoters(voters: readonly number[]): Uint8Array {
  const out = new Uint8Array(4 * voters.length);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < voters.length; i++) dv.setUint32(4 * i, voters[i], true);
  return out;
}

export function decodeVoters(data: Uint8Array): number[] {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out: number[] = [];
  for (let i = 0; i + 4 <= data.byteLength; i += 4) out.push(dv.getUint32(i, true));
  return out;
}
