import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ShellSim } from '../../src/consensus/sim/shell.js';

// The seeds drive real RaftNodes (WAL on SimDisk, virtual timers, simulated network). CELL_SHELL_SEEDS
// runs more; CELL_SHELL_SEED=<n> exactly one.
const only = process.env.CELL_SHELL_SEED;
const count = only !== undefined ? 1 : Number(process.env.CELL_SHELL_SEEDS ?? 30);
const first = only !== undefined ? Number(only) : Number(process.env.CELL_SHELL_BASE ?? 1);
const faultMs = Number(process.env.CELL_SIM_FAULT_MS ?? 3000);

test(`shell simulation: ${count} seeds of RaftNodes under faults, safety after every event, linearizable history`, async () => {
  const failures: string[] = [];
  let commits = 0;
  let reads = 0;
  let crashes = 0;
  let events = 0;
  for (let seed = first; seed < first + count; seed++) {
    const sim = new ShellSim({ seed, faultMs, livenessMs: 10_000 });
    try {
      const r = await sim.run();
      commits += r.commits;
      reads += r.reads;
      crashes += r.crashes;
      events += r.events;
    } catch (e) {
      failures.push(
        `${(e as Error).message}\n  swarm ${sim.describe()}\n  replay: CELL_SHELL_SEED=${seed} node --test dist/test/consensus/sim-shell.test.js`,
      );
      if (failures.length >= 3) break;
    }
  }
  assert.deepEqual(failures, [], failures.join('\n'));
  console.log(
    `# ${count} shell seeds from ${first}: ${commits} acknowledged writes, ${reads} linearizable reads, ${crashes} crashes, ${events} events`,
  );
  assert.ok(commits > count, 'the workload made progress');
});

test('shell simulation: the same seed gives the same history', async () => {
  const a = new ShellSim({ seed: 5, faultMs: 1500, livenessMs: 10_000 });
  const b = new ShellSim({ seed: 5, faultMs: 1500, livenessMs: 10_000 });
  const ra = await a.run();
  const rb = await b.run();
  assert.ok(a.history.length > 20, `a history worth comparing (${a.history.length} operations)`);
  assert.deepEqual(ra, rb);
  assert.deepEqual(a.history, b.history);
});
