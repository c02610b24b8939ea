import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CellError } from '../errors/index.js';
import { parseServiceMetricsSnapshot, type ServiceMetricsSnapshot } from '../metrics/index.js';
import { socketDir } from '../paths/index.js';
import { type CellInspector, Synapse, unixConnector } from '../synapse/index.js';
import { ProcessSampler } from './proc.js';
import type { CellSample, TopDataSource } from './source.js';

/** A cell's dir in the rendezvous dir is named for it; its public socket is `<name>/<name>.sock`. */
const CELL_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** What the caller already knows about a cell (the Root knows all of it; a socket scan only the name). */
export interface KnownCell {
  readonly name: string;
  /** Where to ask it; default `<socketDir>/<name>/<name>.sock`. */
  readonly socketPath?: string;
  readonly state?: string;
  readonly restarts?: number;
  readonly generation?: number;
  /** The process the caller started: its CPU and memory are read even when it does not answer. */
  readonly pid?: number;
}

/**
 * Asks cells for health and metrics over contract-less connections (kept open between samples) and
 * reads CPU and memory from /proc: the collection step behind `cell top` and `cell metrics`, usable
 * by the Root for the cells it runs and by a plain socket scan for cells started by hand.
 */
export class CellProbe {
  private readonly clients = new Map<string, { path: string; client: CellInspector }>();
  private readonly processes = new ProcessSampler();

  constructor(
    private readonly dir: string = socketDir(),
    private readonly timeoutMs = 1000,
  ) {}

  private async client(name: string, path: string): Promise<CellInspector> {
    const existing = this.clients.get(name);
    if (existing !== undefined && existing.path === path) return existing.client;
    if (existing !== undefined) {
      this.clients.delete(name);
      void existing.client.close().catch(() => {});
    }
    const client = await Synapse.inspect(name, {
      waitMs: 0,
      timeoutMs: this.timeoutMs,
      resolvers: [{ name: 'socket', order: 0, resolve: () => unixConnector(path) }],
    });
    this.clients.set(name, { path, client });
    return client;
  }

  /** One cell's sample; a cell that does not answer is reported with its known state, or 'unreachable'. */
  async sample(cell: KnownCell): Promise<CellSample> {
    const { name } = cell;
    const path = cell.socketPath ?? join(this.dir, name, `${name}.sock`);
    try {
      const client = await this.client(name, path);
      const [health, metrics] = (await Promise.all([client.health(), client.metrics()])) as [
        { status?: string; pid?: number; uptimeMs?: number },
        { shm?: { connections?: number } } | undefined,
      ];
      let snapshot: ServiceMetricsSnapshot | undefined;
      try {
        snapshot = parseServiceMetricsSnapshot(metrics);
      } catch {
        snapshot = undefined;
      }
      // A host pid the caller knows (the Root's, for a sandboxed cell) wins over the cell's own
      // answer, which is its pid inside its pid namespace: another process on the host.
      const pid =
        cell.pid !== undefined && cell.pid > 0 ? cell.pid : typeof health.pid === 'number' ? health.pid : undefined;
      const proc = pid === undefined ? undefined : this.processes.sample(pid);
      // The Membrane's count of connections running on shared-memory rings right now.
      const shmActive = typeof metrics?.shm?.connections === 'number' && metrics.shm.connections > 0;
      return {
        name,
        state: cell.state ?? (health.status === 'ok' ? 'running' : String(health.status ?? 'unknown')),
        pid,
        startedAt: typeof health.uptimeMs === 'number' ? Date.now() - health.uptimeMs : undefined,
        restarts: cell.restarts ?? 0,
        transport: shmActive ? 'socket+shm' : 'socket',
        generation: cell.generation,
        cpuPercent: proc?.cpuPercent,
        cpuSeconds: proc?.cpuSeconds,
        rssBytes: proc?.rssBytes,
        metrics: snapshot,
      };
    } catch {
      this.forget(name);
      const proc = cell.pid === undefined || cell.pid <= 0 ? undefined : this.processes.sample(cell.pid);
      return {
        name,
        state: cell.state ?? 'unreachable',
        pid: proc === undefined ? undefined : cell.pid,
        restarts: cell.restarts ?? 0,
        transport: '-',
        generation: cell.generation,
        cpuPercent: proc?.cpuPercent,
        cpuSeconds: proc?.cpuSeconds,
        rssBytes: proc?.rssBytes,
      };
    }
  }

  /**
   * Samples every cell in `cells` at once (and drops connections to cells no longer listed): what
   * the Root calls for `cell metrics`, its metrics port and `cell top`.
   */
  collect(cells: readonly KnownCell[]): Promise<CellSample[]> {
    this.retain(cells.map((c) => c.name));
    return Promise.all(cells.map((c) => this.sample(c)));
  }

  /** Drops connections to cells not in `names`. */
  retain(names: readonly string[]): void {
    for (const name of [...this.clients.keys()]) if (!names.includes(name)) this.forget(name);
  }

  private forget(name: string): void {
    const entry = this.clients.get(name);
    this.clients.delete(name);
    void entry?.client.close().catch(() => {});
  }

  async close(): Promise<void> {
    const all = [...this.clients.values()];
    this.clients.clear();
    await Promise.all(all.map((c) => c.client.close().catch(() => {})));
  }
}

/**
 * One-shot collection with a fresh probe (CPU percentages need two samples, so they are absent here;
 * keep a CellProbe and call `collect` repeatedly to get them).
 */
export async function collectCellSamples(cells: readonly KnownCell[], timeoutMs = 1000): Promise<CellSample[]> {
  const probe = new CellProbe(socketDir(), timeoutMs);
  try {
    return await probe.collect(cells);
  } finally {
    await probe.close();
  }
}

/**
 * A data source that finds cells by their sockets in the socket directory. It needs no Root, so it
 * also shows cells started by hand; it cannot restart, swap or show logs (the Root keeps those), and
 * says so.
 */
export class SocketScanSource implements TopDataSource {
  readonly label = 'socket scan';
  private readonly dir: string;
  private readonly probe: CellProbe;

  constructor(opts: { dir?: string; timeoutMs?: number } = {}) {
    this.dir = opts.dir ?? socketDir();
    this.probe = new CellProbe(this.dir, opts.timeoutMs ?? 1000);
  }

  private names(): string[] {
    let entries: string[];
    try {
      entries = readdirSync(this.dir);
    } catch {
      return [];
    }
    return entries.filter((n) => CELL_NAME.test(n) && isSocket(join(this.dir, n, `${n}.sock`))).sort();
  }

  async sample(): Promise<CellSample[]> {
    return this.probe.collect(this.names().map((name) => ({ name })));
  }

  async logTail(): Promise<string[]> {
    return ['(log lines are kept by the Root: start cells with `cell up` / `cell spawn` to see them here)'];
  }

  swap(name: string): Promise<string> {
    return Promise.reject(
      new CellError('E_ROOT_UNAVAILABLE', 'swapping needs the Root, which builds and starts generations.', {
        cell: name,
        fix: 'run the mesh under the Root (`cell up`).',
      }),
    );
  }

  restart(name: string): Promise<string> {
    return Promise.reject(
      new CellError('E_ROOT_UNAVAILABLE', 'restarting needs the Root, which owns the cell processes.', {
        cell: name,
        fix: 'run the mesh under the Root (`cell up`).',
      }),
    );
  }

  close(): Promise<void> {
    return this.probe.close();
  }
}

function isSocket(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}
