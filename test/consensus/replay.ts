// Replays one simulation seed and prints what happened: `node dist/test/consensus/replay.js <seed> [faultMs]`.
import { ClusterSim } from '../../src/consensus/sim/cluster.js';

const seed = Number(process.argv[2]);
const faultMs = Number(process.argv[3] ?? process.env.CELL_SIM_FAULT_MS ?? 6000);
if (!Number.isFinite(seed)) {
  console.error('usage: node dist/test/consensus/replay.js <seed> [faultMs]');
  process.exit(2);
}
const sim = new ClusterSim({ seed, faultMs, livenessMs: 10_000 });
console.log(`seed ${seed}, ${faultMs} ms of faults; swarm ${sim.describe()}`);
try {
  const r = sim.run();
  console.log(JSON.stringify(r));
} catch (e) {
  console.error((e as Error).message);
  for (const n of sim.nodes) {
    const c = n.core;
    console.error(
      `node ${n.id}: ${n.up ? 'up' : 'down'} role=${c.role} term=${c.term} lead=${c.lead} commit=${c.log.committed} applied=${c.log.applied} snap=${c.log.snapIndex} last=${c.log.lastIndex()} voters=${[...c.voters]}`,
    );
  }
  process.exit(1);
}
