/**
 * Majority arithmetic, pure (after etcd-raft's quorum/majority.go): what a majority of voters has
 * acknowledged, and how an election stands. A configuration is a set of voters; a majority is
 * floor(n/2) + 1 of them, so any two majorities of the same set share a voter, and (one voter added or
 * removed at a time) so do majorities of two adjacent sets.
 */

/** Votes needed out of `voters`: floor(n/2) + 1. */
export function quorum(voters: number): number {
  return (voters >> 1) + 1;
}

/** Whether `count` voters out of `voters` form a majority. */
export function isQuorum(count: number, voters: number): boolean {
  return count >= quorum(voters);
}

/**
 * The highest index a majority holds, given each voter's acknowledged index (`acked[i]`, 0 for a voter
 * that acknowledged nothing): the quorum-th largest. Sorts `acked` in place (descending), so the caller
 * can reuse one array. 0 when there are no voters: nothing can commit.
 */
export function majorityIndex(acked: number[]): number {
  const n = acked.length;
  if (n === 0) return 0;
  // Insertion sort: voter sets are small, and this runs for every acknowledgement the leader gets.
  for (let i = 1; i < n; i++) {
    const x = acked[i];
    let j = i - 1;
    while (j >= 0 && acked[j] < x) {
      acked[j + 1] = acked[j];
      j--;
    }
    acked[j + 1] = x;
  }
  return acked[quorum(n) - 1];
}

export const VoteResult = { Pending: 0, Won: 1, Lost: 2 } as const;
export type VoteResult = (typeof VoteResult)[keyof typeof VoteResult];

/**
 * How an election stands: won once a majority granted, lost once a majority refused, pending
 * otherwise. Votes from nodes outside `voters` do not count.
 */
export function voteResult(voters: Iterable<number>, votes: ReadonlyMap<number, boolean>): VoteResult {
  let n = 0;
  let yes = 0;
  let no = 0;
  for (const v of voters) {
    n++;
    const g = votes.get(v);
    if (g === true) yes++;
    else if (g === false) no++;
  }
  if (isQuorum(yes, n)) return VoteResult.Won;
  if (isQuorum(no, n)) return VoteResult.Lost;
  return VoteResult.Pending;
}
