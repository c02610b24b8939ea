import type { Prng } from './prng.js';

/** One seed's parameters ("swarm testing", as TigerBeetle's VOPR): each seed stresses other corners. */
export interface Swarm {
  nodes: number;
  initialVoters: number;
  drop: number;
  dup: number;
  delayMin: number;
  delayMax: number;
  diskMin: number;
  diskMax: number;
  nemesisEveryMs: number;
  proposeEveryMs: number;
  readEveryMs: number;
  snapshotEvery: number;
  membership: boolean;
  torn: boolean;
  preVote: boolean;
  checkQuorum: boolean;
  maxMsgEntries: number;
  maxInflight: number;
}

export function pickSwarm(r: Prng): Swarm {
  const nodes = r.pick([3, 3, 5, 5, 4]);
  const membership = nodes >= 4 && r.chance(0.6);
  const swarm: Swarm = {
    nodes,
    initialVoters: membership ? 3 : nodes,
    drop: r.pick([0, 0.01, 0.05, 0.15, 0.3]),
    dup: r.pick([0, 0.02, 0.1, 0.3]),
    delayMin: r.int(0, 2),
    delayMax: r.pick([3, 8, 25, 60]),
    diskMin: r.pick([0, 1]),
    diskMax: r.pick([1, 3, 12]),
    nemesisEveryMs: r.pick([20, 60, 150, 400]),
    proposeEveryMs: r.pick([2, 5, 15]),
    readEveryMs: r.pick([10, 30]),
    snapshotEvery: r.pick([8, 30, 200]),
    membership,
    torn: r.chance(0.7),
    preVote: r.chance(0.8),
    checkQuorum: r.chance(0.8),
    maxMsgEntries: r.pick([1, 4, 64]),
    maxInflight: r.pick([1, 4, 256]),
  };
  // Go-back-N over a lossy link with hundreds of one-entry appends in flight is correct but costs
  // millions of simulated messages per seed; keep the window proportionate to the batch size.
  if (swarm.maxMsgEntries === 1) swarm.maxInflight = Math.min(swarm.maxInflight, 8);
  return swarm;
}

export class SimFailure extends Error {}

/** What happened in a `lostTail` scenario. */
export interface LostTailReport {
  /** The follower that lost its tail, the leader and term at that moment. */
  node: number;
  leader: number;
  term: number;
  at: number;
  /** The durable entries that were lost (inclusive range). */
  lostFrom: number;
  lostTo: number;
  /** The leader's commit index at the loss, and the follower's match index as the leader saw it. */
  leaderCommit: number;
  leaderMatch: number;
  /** Virtual ms after the loss until the follower had applied `leaderCommit` (-1: never). */
  caughtUpMs: number;
  /** Terms in which some node became leader, counted at the loss. */
  leadersBefore: number;
}
