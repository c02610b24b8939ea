import { statSync } from 'node:fs';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { cellSocketPath } from '../paths/index.js';

/** A way to open a byte stream to one cell instance; called again on every reconnect. */
export interface Connector {
  /** Human-readable target, for error messages ("unix:/home/u/.cell/run/exchange.sock"). */
  readonly describe: string;
  /** Opens a connected stream; rejects with an errno-style error when the target is not there. */
  connect(): Promise<Duplex>;
}

/**
 * Finds a cell. Synapse.grow asks the registered resolvers in ascending `order` and uses the first
 * connector that connects:
 *   100 local socket (this file) → 200 the Mycelium Root spawns the cell on demand → 300 remote (Axon,
 *   NATS); src/runtime.ts registers all but the first.
 * A resolver returns null when it cannot produce the cell; it may be asked again while grow waits,
 * so resolvers with side effects (spawning) must be idempotent.
 */
export interface Resolver {
  readonly name: string;
  readonly order: number;
  resolve(cell: string, context: ResolveContext): Promise<Connector | null> | Connector | null;
}

export interface ResolveContext {
  /** Absolute time (Date.now()) by which grow gives up. */
  readonly deadline: number;
  /** 0 on the first pass, then 1, 2, … while grow keeps polling. */
  readonly attempt: number;
}

export function unixConnector(path: string): Connector {
  return {
    describe: `unix:${path}`,
    connect: () =>
      new Promise<Duplex>((resolve, reject) => {
        const s = connect({ path, allowHalfOpen: true });
        const onError = (err: Error) => reject(err);
        s.once('error', onError);
        s.once('connect', () => {
          s.off('error', onError);
          resolve(s);
        });
      }),
  };
}

/** The cell's socket in CELL_SOCKET_DIR (or ~/.cell/run), if the file exists. */
export const localSocketResolver: Resolver = {
  name: 'local socket',
  order: 100,
  resolve(cell) {
    const path = cellSocketPath(cell);
    try {
      if (!statSync(path).isSocket()) return null;
    } catch {
      return null;
    }
    return unixConnector(path);
  },
};

// Synapse knows only the local socket: the package entry's composition root (src/runtime.ts) adds the
// Root's spawn-on-demand and the mesh carriers, so this layer never imports the ones above it.
const registry: Resolver[] = [localSocketResolver];

/** Registers a resolver (e.g. the Root's spawn-on-demand, Axon's remote lookup); replaces one of the same name. */
export function addResolver(resolver: Resolver): void {
  const i = registry.findIndex((r) => r.name === resolver.name);
  if (i >= 0) registry.splice(i, 1);
  registry.push(resolver);
  registry.sort((a, b) => a.order - b.order);
}

export function removeResolver(name: string): void {
  const i = registry.findIndex((r) => r.name === name);
  if (i >= 0) registry.splice(i, 1);
}

/** The registered resolvers, in the order grow asks them. */
export function resolvers(): readonly Resolver[] {
  return registry;
}
