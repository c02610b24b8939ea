export { ClusterSim, replayCommand, runSeed, SimFailure, type SimOptions, type SimResult } from './cluster.js';
export { Prng } from './prng.js';
export { ShellSim, type ShellSimOptions, type ShellSimResult } from './shell.js';
