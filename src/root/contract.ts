// The Mycelium Root's control contract: what `cell` (and Synapse.grow's spawn resolver, and `cell top`)
// ask the per-user Root over `rootSocketPath()`. The Root is itself a Membrane serving this service,
// so the wire is the ordinary Cell protocol (docs/PROTOCOL.md § 4).
import { protein, t } from '../protein/index.js';
import { rpc, service } from '../service/index.js';

/** Lifecycle of one cell as the Root sees it. */
export type CellState =
  /** Known (registered DNA), no process. */
  | 'stopped'
  /** The Ribosome is bundling its DNA. */
  | 'building'
  /** A process runs but has not answered its health check yet. */
  | 'starting'
  /** Serving: socket bound and handshake answered. */
  | 'running'
  /** Exited unexpectedly; a restart is scheduled (exponential backoff). */
  | 'crashed'
  /** Failed too often too fast (its restart policy): no more restarts until `cell restart`/`spawn`. */
  | 'crash-loop'
  /** Being stopped (SIGTERM sent, draining). */
  | 'stopping';

/** The last Ribosome build of a cell's DNA. */
export const BuildInfo = protein('BuildInfo', {
  /** Content hash of the DNA's sources (the cache key). */
  hash: t.string,
  /** True when the bundle came from the cache (no compile). */
  cached: t.bool,
  buildMs: t.uint,
  bundlePath: t.string,
});

/** One row of `cell status`. Numbers are 0 when unknown (no process, no sample). */
export const CellStatusRow = protein('CellStatusRow', {
  name: t.string,
  /** A CellState. */
  state: t.string,
  /** 0 when no process runs. */
  pid: t.uint,
  /** When the current process started (ms since the epoch), 0 when none. */
  startedAt: t.uint,
  uptimeMs: t.uint,
  /** Automatic restarts after crashes since the last explicit spawn/restart. */
  restarts: t.uint,
  /** Hot-swap generation of the current process (1 for the first start). */
  generation: t.uint,
  /** How callers reach it: 'shm', 'socket', 'socket+shm', or '-' when not known. */
  transport: t.string,
  /** 'bwrap' or 'none' (the latter only with --no-sandbox, and status says so loudly). */
  sandbox: t.string,
  /** cgroup memory.current when the cell has a cgroup, else /proc RSS; 0 when unknown. */
  memoryBytes: t.uint,
  /** Why the previous process ended: 'exit 1', 'signal SIGKILL', 'oom-killed', … ('' when none). */
  lastExit: t.string,
  /** Times the cell was OOM-killed (memory limit). */
  oomKills: t.uint,
  /** Absolute path of the DNA folder. */
  dna: t.string,
  /** Public socket path callers dial. */
  socketPath: t.string,
  /** The last error the Root met for this cell (build failure, readiness timeout), '' when none. */
  error: t.string,
  build: t.option(BuildInfo),
});

export const CellList = protein('CellList', {
  cells: t.vec(CellStatusRow),
  /** The Root's own pid and start time, and whether it runs cells unsandboxed (--no-sandbox). */
  rootPid: t.uint,
  rootStartedAt: t.uint,
  noSandbox: t.bool,
  /** Stem cells waiting for a cell to grow into (docs/SANDBOX.md § Stem cells); none when the pool is off. */
  stemCells: t.option(t.struct('StemCells', { ready: t.uint, starting: t.uint, off: t.string })),
});

export const CellName = protein('CellName', { name: t.string });

export const SpawnRequest = protein('SpawnRequest', {
  name: t.string,
  /** Resolve once the cell answers its health check (default behaviour of `cell spawn`). */
  wait: t.bool,
});

/** Registers (or replaces) the DNA of a cell. Optional fields mirror one cell.json entry. */
export const AddRequest = protein('AddRequest', {
  name: t.string,
  /** DNA folder; relative paths are resolved against the Root's working directory. */
  dna: t.string,
  entry: t.option(t.string),
  /** JSON of the manifest's `limits` object ({"memory":"256M","cpu":0.5,"pids":128}). */
  limitsJson: t.option(t.string),
  network: t.option(t.bool),
  lan: t.option(t.bool),
  autostart: t.option(t.bool),
  /** JSON object of extra environment variables. */
  envJson: t.option(t.string),
});

/** Loads a manifest (cell.json) into the registry and starts its autostart cells. */
export const LoadRequest = protein('LoadRequest', {
  /** Path of cell.json, or of the folder holding it. */
  path: t.string,
  /** Start every cell whose entry does not say autostart: false. */
  start: t.bool,
  /** Take over names registered from another manifest (otherwise that is refused). */
  replace: t.option(t.bool),
});

export const SwapReply = protein('SwapReply', {
  name: t.string,
  generation: t.uint,
  previousGeneration: t.uint,
  pid: t.uint,
  previousPid: t.uint,
  durationMs: t.uint,
  /** Set when the old generation did not drain cleanly (the swap itself happened). */
  drainError: t.string,
  build: t.option(BuildInfo),
});

export const LogRequest = protein('LogRequest', { name: t.string, lines: t.uint });
export const LogLines = protein('LogLines', { path: t.string, lines: t.vec(t.string) });

export const ShutdownReply = protein('ShutdownReply', { stopped: t.uint });

/**
 * The Root's service. Method ids are the declaration order; append new methods at the end.
 * Denials are CellErrors with stable codes: E_DNA_UNKNOWN, E_NAME_INVALID, E_BUILD_FAILED (with the
 * compiler's message), E_SANDBOX_UNAVAILABLE / E_CGROUP_UNAVAILABLE, E_SPAWN_FAILED (with the tail of
 * the cell's log), E_CELL_CRASH_LOOP, E_SWAP_FAILED, E_INVALID_ARGUMENT.
 */
export const RootService = service('mitosis', {
  /** Starts the cell (building its DNA first) unless it runs; clears a crash-loop mark. */
  spawn: rpc(SpawnRequest, CellStatusRow),
  /** Stops the cell gracefully (SIGTERM → GOAWAY → drain), SIGKILL after a grace period. */
  stop: rpc(CellName, CellStatusRow),
  /** Builds, then stops and starts the cell (a failed build leaves it running); clears a crash-loop mark. */
  restart: rpc(SpawnRequest, CellStatusRow),
  status: rpc(CellName, CellStatusRow),
  list: rpc(t.unit, CellList),
  add: rpc(AddRequest, CellStatusRow),
  /** Hot swap: rebuild, start generation n+1 beside n, publish, drain n. */
  swap: rpc(CellName, SwapReply),
  /** Stops every cell, then the Root itself exits (after replying). */
  shutdown: rpc(t.unit, ShutdownReply),
  load: rpc(LoadRequest, CellList),
  logs: rpc(LogRequest, LogLines),
  /** Stops the cell and forgets it: the registry entry and its saved spec go; its log stays. */
  rm: rpc(CellName, CellStatusRow),
});

export type RootServiceDef = typeof RootService;
