import type { CellSample, TopDataSource } from '../observation/index.js';
import { CellProbe } from '../observation/index.js';
import { inspectSocketPath, rootSocketPath } from '../paths/index.js';
import type { Infer } from '../protein/index.js';
import { connectRoot, isSocket, type RootClient } from './client.js';
import type { CellStatusRow } from './contract.js';

/**
 * The Root's rows (state, restarts, sandbox, last exit) joined with each running cell's own metrics,
 * CPU and RSS. `list` is the Root's list request, over its socket or in the Root's own process.
 */
export async function sampleRootCells(
  list: () => Promise<{ cells: readonly Infer<typeof CellStatusRow>[] }>,
  probe: CellProbe,
): Promise<CellSample[]> {
  const { cells } = await list();
  probe.retain(cells.map((c) => c.name));
  return Promise.all(
    cells.map(async (c) => {
      const base = { name: c.name, state: c.state, restarts: c.restarts, generation: c.generation };
      const root = { sandbox: c.sandbox, lastExit: c.lastExit, error: c.error };
      if (c.state !== 'running') {
        return { ...base, ...root, transport: '-', pid: c.pid || undefined, startedAt: c.startedAt || undefined };
      }
      // A cell's metrics answer only on its inspection socket, which only the operator can reach.
      const s = await probe.sample({ ...base, socketPath: inspectSocketPath(c.name), pid: c.pid || undefined });
      return { ...s, ...root, rssBytes: c.memoryBytes || s.rssBytes };
    }),
  );
}

/** `cell top` / `cell metrics` over the Root: its registry and states, plus each cell's own metrics. */
export class RootTopSource implements TopDataSource {
  readonly label = 'Root';
  private readonly probe = new CellProbe();

  private constructor(private readonly root: RootClient) {}

  /** The Root-backed source when a Root answers, else undefined (callers fall back to a socket scan). */
  static async connect(): Promise<RootTopSource | undefined> {
    if (!isSocket(rootSocketPath())) return undefined;
    try {
      return new RootTopSource(await connectRoot({ timeoutMs: 10_000 }));
    } catch {
      return undefined;
    }
  }

  sample(): Promise<CellSample[]> {
    return sampleRootCells(() => this.root.list(undefined), this.probe);
  }

  async logTail(name: string, lines: number): Promise<string[]> {
    return (await this.call(() => this.root.logs({ name, lines }))).lines;
  }

  async swap(name: string): Promise<string> {
    const r = await this.call(() => this.root.swap({ name }));
    return `${name}: generation ${r.previousGeneration} → ${r.generation} in ${r.durationMs} ms`;
  }

  async restart(name: string): Promise<string> {
    const r = await this.call(() => this.root.restart({ name, wait: true }));
    return `${name}: ${r.state} (pid ${r.pid})`;
  }

  private call<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }

  async close(): Promise<void> {
    await this.probe.close();
    await this.root.$close();
  }
}
