import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RaftNode } from '../../src/consensus/node/node.js';
import type { Raft } from '../../src/consensus/raft/raft.js';
import type { Ready } from '../../src/consensus/raft/types.js';
import { replayCommand, ShellSim, type ShellSimOptions } from '../../src/consensus/sim/shell.js';

// Every seed drives real RaftNodes (WAL on SimDisk, virtual timers, simulated network). CI runs 100
// seeds of 3 s of faults; CELL_SIM_SEEDS=2000 (and CELL_SIM_BASE to start elsewhere,
// CELL_SIM_FAULT_MS for longer fault phases) for longer hunts; CELL_SIM_SEED=<n> runs exactly one.
const faultMs = Number(process.env.CELL_SIM_FAULT_MS ?? 3000);
const only = process.env.CELL_SIM_SEED;
const base = Number(process.env.CELL_SIM_BASE ?? 1);
const CI_SEEDS = 100;
const count = only !== undefined ? 1 : Number(process.env.CELL_SIM_SEEDS ?? CI_SEEDS);
const first = only !== undefined ? Number(only) : base;

const replay = (seed: number, ms: number) =>
  `replay: ${replayCommand(seed, ms)}  (or CELL_SIM_SEED=${seed} CELL_SIM_FAULT_MS=${ms} node --test dist/test/consensus/sim.test.js)`;

test(`simulation: ${count} seeds of RaftNodes under faults, safety after every event, liveness after healing, linearizable history`, async () => {
  const failures: string[] = [];
  let unknown = 0;
  let commits = 0;
  let reads = 0;
  let crashes = 0;
  let pauses = 0;
  let changes = 0;
  let slowest = { seed: 0, recoveryMs: 0, convergedMs: 0 };
  for (let seed = first; seed < first + count; seed++) {
    const sim = new ShellSim({ seed, faultMs, livenessMs: 10_000 });
    try {
      const r = await sim.run();
      if (r.linearizability === 'unknown') unknown++;
      commits += r.commits;
      reads += r.reads;
      crashes += r.crashes;
      pauses += r.pauses;
      changes += r.membershipChanges;
      if (r.convergedMs > slowest.convergedMs) slowest = { seed, recoveryMs: r.recoveryMs, convergedMs: r.convergedMs };
    } catch (e) {
      failures.push(`${(e as Error).message}\n  swarm ${sim.describe()}\n  ${replay(seed, faultMs)}`);
      if (failures.length >= 5) break;
    }
  }
  assert.deepEqual(failures, [], failures.join('\n'));
  console.log(
    `# ${count} seeds from ${first}: ${commits} acknowledged writes, ${reads} linearizable reads, ${crashes} crashes, ${pauses} pauses, ${changes} membership changes, ${unknown} histories too large to check; ` +
      `slowest convergence after healing: seed ${slowest.seed}, first write acknowledged at +${slowest.recoveryMs} ms, every voter caught up at +${slowest.convergedMs} ms (virtual)`,
  );
  assert.ok(unknown <= Math.ceil(count / 100), `${unknown} of ${count} histories could not be checked in time`);
  assert.ok(commits > count, 'the workload made progress');
  if (count >= 20)
    assert.ok(crashes > 0 && pauses > 0 && changes > 0, 'crashes, pauses and membership changes happened');
});

// Seeds that once missed the 10 s liveness bound, each for the reason noted; they must now converge
// well inside it. 1000765, 1002755: five nodes, one entry per append, one append in flight; the
// cluster had recovered 51 and 122 ms after healing (no election, every follower in replicate state),
// but the check waited for every voter to have applied every acknowledged write while the clients kept
// writing, a target that moved with each ack (11.1 s and 15.3 s). The clients now stop once the
// cluster has recovered.
const REGRESSION_SEEDS = [1000765, 1002755];

test(`simulation: regression seeds ${REGRESSION_SEEDS.join(', ')} converge within 2 s of healing`, async () => {
  for (const seed of REGRESSION_SEEDS) {
    const sim = new ShellSim({ seed, faultMs: 6000, livenessMs: 10_000 });
    let r: Awaited<ReturnType<ShellSim['run']>>;
    try {
      r = await sim.run();
    } catch (e) {
      assert.fail(`${(e as Error).message}\n  swarm ${sim.describe()}\n  ${replay(seed, 6000)}`);
    }
    assert.ok(
      r.convergedMs >= 0 && r.convergedMs < 2000,
      `seed ${seed}: every voter caught up ${r.convergedMs} ms after healing (recovered at ${r.recoveryMs} ms); ${replay(seed, 6000)}`,
    );
  }
});

test('simulation: a follower that lost the acknowledged tail of its WAL catches up under the same leader', async () => {
  // Odd seeds take no snapshots, so only the log can repair the follower (before the leader learnt to
  // recognise the loss it probed at its stale match index forever; with snapshots it was rescued only
  // once its own log compaction passed that index).
  let reported = 0;
  const seeds = 60;
  for (let seed = 1; seed <= seeds; seed++) {
    const opts: ShellSimOptions = {
      seed,
      faultMs: 3000,
      livenessMs: 10_000,
      lostTail: { atMs: 1500, entries: 1 + ((seed * 7) % 60) },
      ...(seed % 2 === 1 ? { snapshotEvery: Number.POSITIVE_INFINITY } : {}),
    };
    const sim = new ShellSim(opts);
    const where = () => `seed ${seed} (${JSON.stringify(opts)}), swarm ${sim.describe()}`;
    let r: Awaited<ReturnType<ShellSim['run']>>;
    try {
      r = await sim.run();
    } catch (e) {
      assert.fail(`${(e as Error).message}\n  ${where()}\n  warnings: ${sim.warnings.join(' | ')}`);
    }
    const lt = sim.lostTailReport;
    assert.ok(lt, `${where()}: no tail was lost`);
    assert.ok(lt.lostTo >= lt.lostFrom);
    assert.ok(
      lt.caughtUpMs >= 0 && lt.caughtUpMs <= 1000,
      `${where()}: follower ${lt.node} caught up ${lt.caughtUpMs} ms after losing ${lt.lostFrom}..${lt.lostTo}`,
    );
    for (const n of sim.nodes) {
      if (n.core.term !== 0) assert.equal(n.core.term, lt.term, `${where()}: node ${n.id} changed term`);
    }
    assert.equal(r.leaders, lt.leadersBefore, `${where()}: a new leader was elected`);
    assert.ok(
      sim.nodes[lt.leader - 1].core.log.committed > lt.leaderCommit + 1,
      `${where()}: the leader kept committing`,
    );
    for (const w of sim.warnings) {
      assert.ok(w.includes(`raft node ${lt.node}:`) || w.includes(`follower ${lt.node} had acknowledged`), w);
    }
    if (sim.warnings.some((w) => w.includes(`follower ${lt.node} had acknowledged`))) reported++;
  }
  console.log(
    `# lost WAL tails: the leader reported the loss in ${reported} of ${seeds} seeds (the rest were repaired by appends already in flight, or by a snapshot)`,
  );
  assert.ok(reported >= seeds / 2, `the leader reported only ${reported} of ${seeds} losses`);
});

test('simulation: a seed replays exactly', async () => {
  const a = await new ShellSim({ seed: 42, faultMs: 2000, livenessMs: 10_000 }).run();
  const b = await new ShellSim({ seed: 42, faultMs: 2000, livenessMs: 10_000 }).run();
  assert.deepEqual(a, b);
});

test('simulation: the same seed gives the same client history, operation for operation', async () => {
  for (const seed of [5, 7, 42, 1000765]) {
    const a = new ShellSim({ seed, faultMs: 2000, livenessMs: 10_000 });
    const b = new ShellSim({ seed, faultMs: 2000, livenessMs: 10_000 });
    const ra = await a.run();
    const rb = await b.run();
    assert.ok(a.history.length > 20, `seed ${seed}: a history worth comparing (${a.history.length} operations)`);
    assert.deepEqual(a.history, b.history, `seed ${seed}: histories differ; ${replay(seed, 2000)}`);
    assert.equal(ra.traceHash, rb.traceHash, `seed ${seed}`);
  }
});

test('simulation: reads served from local state without ReadIndex are caught as non-linearizable', async () => {
  let caught = 0;
  for (let seed = 1; seed <= 40; seed++) {
    try {
      await new ShellSim({ seed, faultMs: 3000, livenessMs: 10_000, sabotage: 'stale-reads' }).run();
    } catch (e) {
      assert.match((e as Error).message, /not linearizable/);
      caught++;
    }
  }
  assert.ok(caught > 0, 'stale reads went unnoticed in 40 seeds');
});

/** The shell bug this variant of RaftNode has: every Ready's `messagesAfterSync` (append and vote
 * responses) leave with its `messages`, before the WAL write is durable. The real `handleReady` runs;
 * only the Ready it is handed is merged. */
async function withSendBeforeSync<T>(run: () => Promise<T>): Promise<T> {
  const proto = RaftNode.prototype as unknown as { handleReady(this: { raft: Raft }): Promise<void> };
  const handleReady = proto.handleReady;
  proto.handleReady = function (this: { raft: Raft }) {
    const core = this.raft;
    const ready = core.ready;
    core.ready = (): Ready => {
      core.ready = ready;
      const rd = ready.call(core);
      return { ...rd, messages: [...rd.messages, ...rd.messagesAfterSync], messagesAfterSync: [] };
    };
    return handleReady.call(this);
  };
  try {
    return await run();
  } finally {
    proto.handleReady = handleReady;
  }
}

/** The first CI seed whose run fails (its first message line), as a one-element list; empty if none does. */
async function firstFailingSeed(): Promise<string[]> {
  for (let seed = 1; seed <= CI_SEEDS; seed++) {
    try {
      await new ShellSim({ seed, faultMs: 3000, livenessMs: 10_000 }).run();
    } catch (e) {
      return [`seed ${seed}: ${(e as Error).message.split('\n')[0]}`];
    }
  }
  return [];
}

test('simulation: a RaftNode that sends messagesAfterSync before its fsync fails within the CI seeds', async () => {
  const caught = await withSendBeforeSync(firstFailingSeed);
  console.log(`# send-before-sync shell: ${caught[0] ?? 'not caught'}`);
  assert.ok(caught.length > 0, `a shell that acknowledges before its fsync went unnoticed in ${CI_SEEDS} seeds`);
});

interface ShellInternals {
  raft: Raft;
  proposals: Map<number, { term: number; resolve(r: unknown): void }>;
}

/** The shell bug this variant of RaftNode has: a proposal is acknowledged as soon as this node's own
 * WAL write of its entry is durable, before a quorum holds it (the entry is applied later as usual). */
async function withAckOnLocalWrite<T>(run: () => Promise<T>): Promise<T> {
  const proto = RaftNode.prototype as unknown as { handleReady(this: ShellInternals): Promise<void> };
  const handleReady = proto.handleReady;
  proto.handleReady = async function (this: ShellInternals) {
    const core = this.raft;
    const ready = core.ready;
    let written: Ready['entries'] = [];
    core.ready = (): Ready => {
      core.ready = ready;
      const rd = ready.call(core);
      written = rd.entries;
      return rd;
    };
    await handleReady.call(this);
    for (const e of written) {
      const p = this.proposals.get(e.index);
      if (p && p.term === e.term) {
        this.proposals.delete(e.index);
        p.resolve(undefined);
      }
    }
  };
  try {
    return await run();
  } finally {
    proto.handleReady = handleReady;
  }
}

test('simulation: a RaftNode that acknowledges writes once its own WAL holds them fails within the CI seeds', async () => {
  const caught = await withAckOnLocalWrite(firstFailingSeed);
  console.log(`# ack-on-local-write shell: ${caught[0] ?? 'not caught'}`);
  assert.ok(
    caught.length > 0,
    `a shell that acknowledges before a quorum holds the write went unnoticed in ${CI_SEEDS} seeds`,
  );
});
