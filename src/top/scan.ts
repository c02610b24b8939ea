import { readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { CellError } from '../errors/index.js';
import { ProcessSampler, parseServiceMetricsSnapshot, type ServiceMetricsSnapshot } from '../metrics/index.js';
import { socketDir } from '../paths/index.js';
import { service } from '../service/index.js';
import { Synapse, type SynapseClient } from '../synapse/index.js';
import type { CellSample, TopDataSource } from './source.js';

const Probe = service('probe', {});
type ProbeClient = SynapseClient<typeof Probe>;

/** `<name>.sock` only: generation sockets (`<name>.<gen>.sock`), tap sockets and the Root's are skipped. */
const CELL_SOCKET = /^([a-z0-9][a-z0-9_-]{0,62})\.sock$/;

/**
 * A data source that finds cells by their sockets in the socket directory and asks each one for
 * health and metrics over a contract-less connection, with CPU and memory from /proc. It needs no
 * Root, so it also shows cells started by hand; it cannot restart, swap or show logs (the Root keeps
 * those), and says so.
 */
export class SocketScanSource implements TopDataSource {
  private readonly dir: string;
  private readonly clients = new Map<string, ProbeClient>();
  private readonly processes = new ProcessSampler();
  private readonly timeoutMs: number;

  constructor(opts: { dir?: string; timeoutMs?: number } = {}) {
    this.dir = opts.dir ?? socketDir();
    this.timeoutMs = opts.timeoutMs ?? 1000;
  }

  private names(): string[] {
    let entries: string[];
    try {
      entries = readdirSync(this.dir);
    } catch {
      return [];
    }
    return entries
      .map((f) => CELL_SOCKET.exec(f)?.[1])
      .filter((n): n is string => n !== undefined && n !== 'mitosis')
      .sort();
  }

  private async client(name: string): Promise<ProbeClient> {
    const existing = this.clients.get(name);
    if (existing !== undefined) return existing;
    const path = join(this.dir, `${name}.sock`);
    const client = await Synapse.grow(Probe, {
      name,
      inspectOnly: true,
      waitMs: 0,
      timeoutMs: this.timeoutMs,
      resolvers: [
        {
          name: 'socket dir',
          order: 0,
          resolve: () => ({
            describe: path,
            connect: () =>
              new Promise<Duplex>((resolve, reject) => {
                const s = connect({ path, allowHalfOpen: true });
                s.once('error', reject);
                s.once('connect', () => resolve(s));
              }),
          }),
        },
      ],
    });
    this.clients.set(name, client);
    return client;
  }

  private async one(name: string): Promise<CellSample> {
    try {
      const client = await this.client(name);
      const [health, metrics] = (await Promise.all([client.$health(), client.$metrics()])) as [
        { status?: string; pid?: number; uptimeMs?: number },
        unknown,
      ];
      let snapshot: ServiceMetricsSnapshot | undefined;
      try {
        snapshot = parseServiceMetricsSnapshot(metrics);
      } catch {
        snapshot = undefined;
      }
      const pid = typeof health.pid === 'number' ? health.pid : undefined;
      const proc = pid === undefined ? undefined : this.processes.sample(pid);
      return {
        name,
        state: health.status === 'ok' ? 'running' : String(health.status ?? 'unknown'),
        pid,
        startedAt: typeof health.uptimeMs === 'number' ? Date.now() - health.uptimeMs : undefined,
        restarts: 0,
        transport: 'socket',
        cpuPercent: proc?.cpuPercent,
        cpuSeconds: proc?.cpuSeconds,
        rssBytes: proc?.rssBytes,
        metrics: snapshot,
      };
    } catch {
      const stale = this.clients.get(name);
      this.clients.delete(name);
      void stale?.$close().catch(() => {});
      return { name, state: 'unreachable', restarts: 0, transport: '-' };
    }
  }

  async sample(): Promise<CellSample[]> {
    const names = this.names();
    for (const [name, client] of this.clients) {
      if (!names.includes(name)) {
        this.clients.delete(name);
        void client.$close().catch(() => {});
      }
    }
    return Promise.all(names.map((n) => this.one(n)));
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
    return this.swap(name);
  }

  async close(): Promise<void> {
    const all = [...this.clients.values()];
    this.clients.clear();
    await Promise.all(all.map((c) => c.$close().catch(() => {})));
  }
}
