import { networkInterfaces } from 'node:os';
import type { Server, TLSSocket } from 'node:tls';
import { CellError } from '../errors/index.js';
import type { MeshIdentity } from './identity/index.js';
import type { Pheromones } from './pheromones/index.js';
import { listenMesh } from './tls/index.js';

/** A cell joins the LAN only when asked: its manifest says so, or CELL_LAN=1. */
export function lanEnabled(manifestLan?: boolean): boolean {
  if (process.env.CELL_LAN !== undefined) return process.env.CELL_LAN === '1';
  return manifestLan === true;
}

/** The address a LAN cell listens on and announces: CELL_LAN_ADDRESS, else the first non-internal IPv4. */
export function lanAddress(): string {
  const fromEnv = process.env.CELL_LAN_ADDRESS;
  if (fromEnv) return fromEnv;
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family === 'IPv4' && !a.internal && !a.address.startsWith('169.254.')) return a.address;
    }
  }
  throw new CellError('E_INVALID_ARGUMENT', 'this host has no non-loopback IPv4 address to serve the LAN on.', {
    fix: 'set CELL_LAN_ADDRESS to the address other mesh hosts reach this one at.',
  });
}

export interface MeshCellServerOptions {
  identity: MeshIdentity;
  name: string;
  fingerprint: bigint;
  address?: string;
  port?: number;
  pheromones?: Pheromones;
  /** Hands an authenticated socket to the cell's server (the same one serving its Unix socket). */
  onSocket: (socket: TLSSocket) => void;
  /** Calls in flight, announced so remote balancers can prefer idle instances. */
  load?: () => number;
  onRefused?: (err: Error, remote: string) => void;
}

export interface MeshCellServer {
  server: Server;
  address: string;
  port: number;
  /** Withdraws, stops accepting and cuts every open connection. */
  close(): Promise<void>;
  /** Withdraws and stops accepting; resolves once the owner has closed the open connections. */
  stopAccepting(): Promise<void>;
}

/** Serves one cell on the mesh: a TLS 1.3 mutual-auth listener plus its pheromone announcements. */
export async function serveCellOnMesh(options: MeshCellServerOptions): Promise<MeshCellServer> {
  const address = options.address ?? lanAddress();
  const sockets = new Set<TLSSocket>();
  const server = await listenMesh({
    identity: options.identity,
    host: address,
    port: options.port ?? Number(process.env.CELL_LAN_PORT ?? 0),
    onRefused: options.onRefused,
    onSocket: (socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      options.onSocket(socket);
    },
  });
  const port = (server.address() as { port: number }).port;
  options.pheromones?.announce({
    name: options.name,
    fingerprint: options.fingerprint,
    address,
    port,
    load: options.load,
  });
  return {
    server,
    address,
    port,
    stopAccepting: async () => {
      options.pheromones?.withdraw(options.name);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    close: async () => {
      options.pheromones?.withdraw(options.name);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
    },
  };
}
