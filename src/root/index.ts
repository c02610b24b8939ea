// The Mycelium Root: the per-user daemon that grows cells on demand and supervises them. This is what
// other components use of it: its client and control contract, the manifest's location and the log
// lines. The daemon, its engine and the spawn resolver load on demand, through their own modules
// (`cell up`, `cell doctor`, `cell top` and the composition root import them lazily).

export type { RootClient } from './client.js';
export { connectRoot, isSocket, processAlive, rootPid, rootPidPath, withRoot } from './client.js';
export type { CellState, CellStatusRow } from './contract.js';
export { RootService } from './contract.js';
export { parseLogLine, tailLines } from './log.js';
export { MANIFEST_FILE, manifestPath } from './manifest.js';
