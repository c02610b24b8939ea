import type { ServiceMetricsSnapshot } from '../metrics/index.js';

/** One cell as the dashboard samples it. Counters are cumulative; the dashboard derives rates. */
export interface CellSample {
  readonly name: string;
  /** Lifecycle state as the Root reports it (running, starting, building, crashed, crash-loop, stopping, stopped). */
  readonly state: string;
  readonly pid?: number | undefined;
  /** When the current process started (ms since the epoch). */
  readonly startedAt?: number | undefined;
  readonly restarts: number;
  /** How callers reach it: 'socket', 'shm', 'socket+shm', or '-' when unknown. */
  readonly transport: string;
  readonly generation?: number | undefined;
  readonly cpuPercent?: number | undefined;
  /** Cumulative user + system CPU seconds of the current process. */
  readonly cpuSeconds?: number | undefined;
  readonly rssBytes?: number | undefined;
  /** How the Root runs it: 'bwrap' or 'none' (unknown without a Root). */
  readonly sandbox?: string | undefined;
  /** Why its previous process ended ('exit 1', 'signal SIGKILL', 'oom-killed'), '' or absent when none. */
  readonly lastExit?: string | undefined;
  /** The last error the Root met for it (a failed build or readiness check). */
  readonly error?: string | undefined;
  /** The Membrane's per-method counters; absent while the cell is not answering. */
  readonly metrics?: ServiceMetricsSnapshot | undefined;
}

/**
 * Everything `cell top` needs from the outside world. The Root implements it over its control
 * socket; tests and demos can implement it over anything that produces samples.
 */
export interface TopDataSource {
  /** Where the samples come from, shown in the header ('Root', 'socket scan'). */
  readonly label?: string;
  sample(): Promise<CellSample[]>;
  /** The last `lines` log lines of a cell, oldest first. */
  logTail(name: string, lines: number): Promise<string[]>;
  /** Hot-swaps a cell; resolves with a one-line outcome to show. */
  swap(name: string): Promise<string>;
  restart(name: string): Promise<string>;
  close?(): void | Promise<void>;
}
