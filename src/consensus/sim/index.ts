export { Prng } from './prng.js';
export { replayCommand, ShellSim, type ShellSimOptions, type ShellSimResult } from './shell.js';
export { type LostTailReport, pickSwarm, SimFailure, type Swarm } from './swarm.js';
