import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isQuorum, majorityIndex, quorum, VoteResult, voteResult } from '../../src/consensus/raft/quorum.js';

test('quorum: floor(n/2) + 1 of n voters', () => {
  const table: [voters: number, need: number][] = [
    [1, 1],
    [2, 2],
    [3, 2],
    [4, 3],
    [5, 3],
    [6, 4],
    [7, 4],
  ];
  for (const [n, need] of table) {
    assert.equal(quorum(n), need, `${n} voters`);
    assert.equal(isQuorum(need, n), true, `${need} of ${n}`);
    assert.equal(isQuorum(need - 1, n), false, `${need - 1} of ${n}`);
  }
});

test('majorityIndex: the highest index a majority holds (etcd quorum/testdata/majority_commit.txt cases)', () => {
  const table: [acked: number[], want: number][] = [
    [[], 0], // no voters: nothing commits
    [[0], 0],
    [[12], 12],
    [[100, 101], 100],
    [[101, 100], 100],
    [[0, 0, 0], 0],
    [[100, 0, 0], 0],
    [[100, 101, 0], 100],
    [[0, 101, 100], 100],
    [[100, 101, 99], 100],
    [[99, 100, 101], 100],
    [[5, 5, 5], 5],
    [[1, 2, 3, 4], 2], // four voters need three
    [[4, 3, 2, 1], 2],
    [[101, 100, 99, 98, 97], 99],
    [[97, 98, 99, 100, 101], 99],
    [[0, 0, 101, 101, 101], 101],
    [[101, 101, 0, 0, 0], 0],
    [[7, 7, 3, 3, 9, 9, 1], 7],
  ];
  for (const [acked, want] of table) {
    const input = acked.slice();
    assert.equal(majorityIndex(input), want, `acked ${JSON.stringify(acked)}`);
    assert.deepEqual(
      input,
      acked.slice().sort((a, b) => b - a),
      'sorted descending in place',
    );
  }
});

test('majorityIndex agrees with counting, for every small configuration', () => {
  // Brute force: the answer is the largest i that at least a quorum of voters has reached.
  for (let n = 1; n <= 5; n++) {
    const total = 4 ** n;
    for (let k = 0; k < total; k++) {
      const acked = Array.from({ length: n }, (_, i) => Math.floor(k / 4 ** i) % 4);
      let want = 0;
      for (let i = 0; i <= 3; i++) if (acked.filter((a) => a >= i).length >= quorum(n)) want = i;
      assert.equal(majorityIndex(acked.slice()), want, JSON.stringify(acked));
    }
  }
});

test('voteResult: won on a majority of grants, lost on a majority of refusals, else pending', () => {
  const Y = true;
  const N = false;
  const _ = undefined;
  const table: [votes: (boolean | undefined)[], want: VoteResult][] = [
    [[_], VoteResult.Pending],
    [[Y], VoteResult.Won],
    [[N], VoteResult.Lost],
    [[Y, _], VoteResult.Pending],
    [[Y, Y], VoteResult.Won],
    // Two voters: one refusal is not a majority; the candidate waits for its election timeout (etcd
    // would give up here already, as it can no longer win).
    [[Y, N], VoteResult.Pending],
    [[N, N], VoteResult.Lost],
    [[_, _, _], VoteResult.Pending],
    [[Y, _, _], VoteResult.Pending],
    [[Y, Y, _], VoteResult.Won],
    [[Y, N, _], VoteResult.Pending],
    [[N, N, _], VoteResult.Lost],
    [[Y, N, N], VoteResult.Lost],
    [[Y, Y, N], VoteResult.Won],
    // Four voters: two refusals do not yet lose (a majority must refuse), two grants do not win.
    [[Y, Y, N, N], VoteResult.Pending],
    [[Y, Y, Y, N], VoteResult.Won],
    [[N, N, N, _], VoteResult.Lost],
    [[Y, Y, Y, _, _], VoteResult.Won],
    [[N, N, Y, Y, _], VoteResult.Pending],
  ];
  for (const [votes, want] of table) {
    const voters = votes.map((_v, i) => i + 1);
    const cast = new Map<number, boolean>();
    votes.forEach((v, i) => {
      if (v !== undefined) cast.set(i + 1, v);
    });
    assert.equal(voteResult(voters, cast), want, `votes ${JSON.stringify(votes)}`);
  }
});

test('voteResult: votes from nodes outside the configuration do not count', () => {
  const votes = new Map<number, boolean>([
    [1, true],
    [8, true],
    [9, true],
  ]);
  assert.equal(voteResult([1, 2, 3], votes), VoteResult.Pending);
  votes.set(2, true);
  assert.equal(voteResult(new Set([1, 2, 3]), votes), VoteResult.Won);
  assert.equal(voteResult([4, 5, 6], new Map([[1, false]])), VoteResult.Pending);
});
