// The Mycelium Root: the per-user daemon that grows cells on demand and supervises them.
export type { RootClient } from './client.js';
export { connectRoot, rootPid, rootPidPath, withRoot } from './client.js';
export type { CellState } from './contract.js';
export { CELL_STATES, CellStatusRow, RootService } from './contract.js';
export type { RootOptions } from './daemon.js';
export { CRASH_LOOP_FAILURES, CRASH_LOOP_WINDOW_MS, Root } from './daemon.js';
export type { DnaSpec } from './manifest.js';
export { loadManifest, MANIFEST_FILE, manifestPath } from './manifest.js';
export { spawnThroughRoot } from './resolver.js';
