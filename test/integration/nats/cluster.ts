import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Real nats-server processes for the tests: one on loopback (a random port), or a cluster with one
 * node per network-namespace host, joined by routes to each other's addresses. Every process is
 * started and stopped by the test; configuration files live in the test's temporary directory.
 */
export const NATS_SERVER = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find((p) =>
  existsSync(p),
);

export function natsServerAvailable(): boolean {
  return NATS_SERVER !== undefined;
}

export interface NatsNode {
  readonly index: number;
  /** The network namespace it runs in, or null for the root namespace. */
  readonly ns: string | null;
  readonly address: string;
  port: number;
  readonly confPath: string;
  proc: ChildProcess | null;
  log: string;
}

export interface ClusterOptions {
  dir: string;
  /** One address per node (inside its namespace, or 127.0.0.1 for loopback). */
  addresses: readonly string[];
  /** One namespace per node; omit for the root namespace. */
  namespaces?: readonly string[];
  /** A config block appended to every node's file (authorization, accounts). */
  extra?: string;
  /** Client port (0 = random, loopback only). */
  port?: number;
}

const ROUTE_PORT = 6222;

export class NatsCluster {
  readonly nodes: NatsNode[] = [];
  private constructor() {}

  static async start(options: ClusterOptions): Promise<NatsCluster> {
    const c = new NatsCluster();
    const n = options.addresses.length;
    for (let i = 0; i < n; i++) {
      const address = options.addresses[i] as string;
      const port = options.port ?? (n > 1 ? 4222 : 0);
      const lines = [`server_name: "n${i}"`, `listen: "${address}:${port === 0 ? -1 : port}"`];
      if (n > 1) {
        const routes = options.addresses
          .filter((_, j) => j !== i)
          .map((a) => `"nats-route://${a}:${ROUTE_PORT}"`)
          .join(', ');
        lines.push(`cluster {\n  name: "cell-test"\n  listen: "${address}:${ROUTE_PORT}"\n  routes: [${routes}]\n}`);
      }
      if (options.extra !== undefined) lines.push(options.extra);
      const confPath = join(options.dir, `nats-n${i}.conf`);
      writeFileSync(confPath, `${lines.join('\n')}\n`, { mode: 0o600 });
      c.nodes.push({ index: i, ns: options.namespaces?.[i] ?? null, address, port, confPath, proc: null, log: '' });
    }
    try {
      await Promise.all(c.nodes.map((node) => c.launch(node)));
      if (n > 1) await c.waitRoutes();
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  url(i: number): string {
    const node = this.nodes[i] as NatsNode;
    return `nats://${node.address}:${node.port}`;
  }

  /** Every node's URL, comma-separated (what CELL_NATS takes). */
  urls(): string {
    return this.nodes.map((_, i) => this.url(i)).join(',');
  }

  private launch(node: NatsNode): Promise<void> {
    const bin = NATS_SERVER as string;
    const argv = ['-c', node.confPath];
    const proc =
      node.ns === null
        ? spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn('ip', ['netns', 'exec', node.ns, bin, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    node.proc = proc;
    node.log = '';
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats-server n${node.index} not ready:\n${node.log}`)), 10_000);
      const onData = (d: Buffer) => {
        node.log += d.toString();
        const m = /Listening for client connections on [^\s]+:(\d+)/.exec(node.log);
        if (m !== null && node.port === 0) node.port = Number(m[1]);
        if (node.log.includes('Server is ready')) {
          clearTimeout(timer);
          resolve();
        }
      };
      proc.stdout?.on('data', onData);
      proc.stderr?.on('data', onData);
      proc.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (!node.log.includes('Server is ready'))
          reject(new Error(`nats-server n${node.index} exited (${code ?? signal}):\n${node.log}`));
      });
    });
  }

  /** Waits until every node has a route to every other one (full mesh). */
  async waitRoutes(timeoutMs = 15_000): Promise<void> {
    const want = this.nodes.length - 1;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const ok = this.nodes.every(
        (n) =>
          n.proc === null ||
          new Set([...n.log.matchAll(/rid:(\d+) - Route connection created/g)].map((m) => m[1])).size >= want,
      );
      if (ok) return;
      if (Date.now() > deadline)
        throw new Error(`cluster routes incomplete:\n${this.nodes.map((n) => n.log).join('\n---\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Kills node `i` (SIGKILL by default: no lame-duck mode, clients see the TCP connection die). */
  async kill(i: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const node = this.nodes[i] as NatsNode;
    const proc = node.proc;
    if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    // Inside a namespace the child is `ip netns exec`, which execs nats-server: same pid.
    proc.kill(signal);
    await exited;
    node.proc = null;
  }

  async restart(i: number): Promise<void> {
    await this.launch(this.nodes[i] as NatsNode);
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.kill(n.index, 'SIGKILL')));
  }
}
