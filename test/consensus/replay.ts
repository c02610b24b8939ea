// Replays one simulation seed and prints what happened: `node dist/test/consensus/replay.js <seed> [faultMs]`.
import { ShellSim } from '../../src/consensus/sim/shell.js';

const seed = Number(process.argv[2]);
const faultMs = Number(process.argv[3] ?? process.env.CELL_SIM_FAULT_MS ?? 3000);
if (!Number.isFinite(seed)) {
  console.error('usage: node dist/test/consensus/replay.js <seed> [faultMs]');
  process.exit(2);
}
const sim = new ShellSim({ seed, faultMs, livenessMs: 10_000 });
console.log(`seed ${seed}, ${faultMs} ms of faults; swarm ${sim.describe()}`);
try {
  const r = await sim.run();
  console.log(JSON.stringify(r));
} catch (e) {
  console.error((e as Error).message);
  console.error(sim.status().split('; ').join('\n'));
  process.exit(1);
}
