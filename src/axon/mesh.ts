import type { Duplex } from 'node:stream';
import { CellError } from '../errors/index.js';
import type { Membrane } from '../membrane/index.js';
import type { MethodDef, MethodInput, MethodOutput, ServiceDef } from '../service/types.js';
import type { CallOptions, Connector, Resolver } from '../synapse/index.js';
import { ClientConnection } from '../synapse/index.js';
import type { BalanceStrategy } from './balancer.js';
import { Balancer } from './balancer.js';
import { parsePeer, RemoteCell } from './client.js';
import type { MeshIdentity } from './identity/index.js';
import { loadMeshIdentity } from './identity/index.js';
import type { RemoteInstance } from './pheromones/index.js';
import { Pheromones } from './pheromones/index.js';
import type { MeshCellServer } from './server.js';
import { lanAddress, serveCellOnMesh } from './server.js';
import { connectMesh } from './tls/index.js';

/**
 * Where Axon meets Membrane and Synapse: a Membrane also serves authenticated TLS sockets and is
 * announced; Synapse gains a resolver after the local socket (discovered instance, then CELL_PEER);
 * `growAcrossMesh` spreads each call over every instance of a cell. The bytes on the TLS stream are
 * the § 2 frames, handshake and fingerprint check included, exactly as on the Unix socket.
 */

interface SharedMesh {
  identity: MeshIdentity;
  pheromones: Promise<Pheromones>;
}
let shared: SharedMesh | undefined;

/** This process's mesh identity and pheromone listener, created on first use and shared. */
export function sharedMesh(): SharedMesh {
  if (shared === undefined) {
    const identity = loadMeshIdentity();
    const pheromones = Pheromones.start({ identity, interfaceAddress: process.env.CELL_LAN_ADDRESS });
    // A client process must still be able to exit: the listener is background work.
    pheromones.then(
      (p) => p.unref(),
      () => {},
    );
    shared = { identity, pheromones };
  }
  return shared;
}

/** Serves a Membrane over mutual TLS on the LAN and announces it; `close()` withdraws and stops. */
export async function exposeOnMesh(
  membrane: Membrane,
  options: { address?: string; port?: number; identity?: MeshIdentity; pheromones?: Pheromones } = {},
): Promise<MeshCellServer> {
  const mesh = options.identity === undefined || options.pheromones === undefined ? sharedMesh() : undefined;
  const identity = options.identity ?? (mesh as SharedMesh).identity;
  const pheromones = options.pheromones ?? (await (mesh as SharedMesh).pheromones);
  return serveCellOnMesh({
    identity,
    name: membrane.cellName,
    fingerprint: membrane.service.fingerprint,
    address: options.address ?? lanAddress(),
    port: options.port,
    pheromones,
    load: () => membrane.metrics.inFlight,
    onSocket: (socket) => {
      membrane.serveStream(socket);
    },
  });
}

/**
 * Synapse's remote resolver (order 300, after the local socket and the Root). Active when CELL_LAN=1
 * (discovery) or CELL_PEER is set, and then it needs this host's mesh identity (E_MESH_IDENTITY
 * otherwise); without either variable it answers "nothing" without touching the network.
 */
export function axonResolver(options: { strategy?: BalanceStrategy } = {}): Resolver {
  const balancer = new Balancer({ strategy: options.strategy ?? 'least-in-flight' });
  return {
    name: 'axon',
    order: 300,
    async resolve(cell, context): Promise<Connector | null> {
      const lan = process.env.CELL_LAN === '1';
      const peer = process.env.CELL_PEER;
      if (!lan && !peer) return null;
      // Asked to look beyond this host without a mesh identity: say so rather than "not found".
      const mesh = sharedMesh();
      let found: RemoteInstance[] = [];
      if (lan) {
        const pheromones = await mesh.pheromones;
        found = pheromones.lookup(cell);
        if (found.length === 0 && context.attempt === 0) pheromones.query(cell);
      }
      if (found.length === 0 && peer) {
        const { host, port } = parsePeer(peer);
        return {
          describe: `tls:${host}:${port} (CELL_PEER)`,
          connect: () => connectMesh({ identity: mesh.identity, host, port }) as Promise<Duplex>,
        };
      }
      if (found.length === 0) return null;
      const candidates = found;
      return {
        describe: `tls:${candidates.map((i) => `${i.hostName}@${i.address}:${i.port}`).join('|')}`,
        async connect(): Promise<Duplex> {
          // One Synapse holds one connection: spread connections by announced load, and fail over
          // to the next instance when one cannot be reached.
          const tried = new Set<string>();
          let last: unknown;
          for (;;) {
            const inst = balancer.pick(candidates, () => 0, tried);
            if (inst === undefined) break;
            tried.add(inst.key);
            try {
              const socket = await connectMesh({
                identity: mesh.identity,
                host: inst.address,
                port: inst.port,
                fingerprint: inst.hostFingerprint,
                timeoutMs: 2_000,
              });
              balancer.markHealthy(inst.key);
              return socket;
            } catch (err) {
              last = err;
              balancer.markFailed(inst.key);
            }
          }
          throw last ?? new CellError('E_CONNECTION_LOST', 'no instance reachable.', { cell });
        },
      };
    },
  };
}

export type MeshClient<S extends ServiceDef> = {
  readonly [K in keyof S['methods']]: (
    input: MethodInput<S['methods'][K]>,
    options?: CallOptions,
  ) => Promise<MethodOutput<S['methods'][K]>>;
} & {
  readonly $remote: RemoteCell<MeshCall, unknown>;
  $close(): void;
};

interface MeshCall {
  def: MethodDef;
  input: unknown;
  options: CallOptions | undefined;
}

export interface GrowAcrossMeshOptions {
  name?: string;
  strategy?: BalanceStrategy;
  timeoutMs?: number;
  identity?: MeshIdentity;
  pheromones?: Pheromones;
  peer?: string;
  maxFrameSize?: number;
}

/**
 * A typed client whose every call goes to the least-busy instance of the cell across the mesh (one
 * connection per instance, each with the full handshake), failing over when an instance vanishes.
 */
export async function growAcrossMesh<S extends ServiceDef>(
  service: S,
  options: GrowAcrossMeshOptions = {},
): Promise<MeshClient<S>> {
  const mesh = options.identity === undefined ? sharedMesh() : undefined;
  const identity = options.identity ?? (mesh as SharedMesh).identity;
  const pheromones = options.pheromones ?? (mesh === undefined ? undefined : await mesh.pheromones);
  const cell = options.name ?? service.name;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const remote = new RemoteCell<MeshCall, unknown>({
    identity,
    name: cell,
    pheromones,
    peer: options.peer,
    strategy: options.strategy,
    callTimeoutMs: timeoutMs,
    open: async (socket) => {
      const conn = await ClientConnection.open(socket, {
        cell,
        service,
        fingerprint: service.fingerprint,
        timeoutMs,
        maxFrameSize: options.maxFrameSize ?? 64 * 1024 * 1024,
      });
      return {
        call: (req: MeshCall, t: number) =>
          conn.call(req.def, req.input, { ...req.options, timeoutMs: req.options?.timeoutMs ?? t }),
        get inFlight() {
          return conn.inFlight;
        },
        get closed() {
          return !conn.isOpen;
        },
        close: () => {
          conn.close();
        },
      };
    },
  });
  const proxy: Record<string, unknown> = {};
  for (const def of service.byId) {
    proxy[def.name] = (input: unknown, callOptions?: CallOptions) =>
      remote.call({ def, input, options: callOptions }, callOptions?.timeoutMs ?? timeoutMs);
  }
  Object.defineProperties(proxy, { $remote: { value: remote }, $close: { value: () => remote.close() } });
  return proxy as MeshClient<S>;
}
