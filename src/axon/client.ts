import type { TLSSocket } from 'node:tls';
import { CellError, isCellError } from '../errors/index.js';
import { validateCellName } from '../paths/index.js';
import type { BalanceStrategy } from './balancer.js';
import { Balancer } from './balancer.js';
import type { MeshIdentity } from './identity/index.js';
import type { Pheromones, RemoteInstance } from './pheromones/index.js';
import { connectMesh } from './tls/index.js';

/** What a transport puts on an authenticated mesh socket: anything that can carry calls. */
export interface RemoteChannel<Req, Res> {
  call(request: Req, timeoutMs: number): Promise<Res>;
  readonly inFlight: number;
  readonly closed: boolean;
  close(): void;
}

export interface RemoteCellOptions<Req, Res> {
  identity: MeshIdentity;
  /** The cell to reach. */
  name: string;
  /** Discovered instances come from here; without it only CELL_PEER / `peer` is used. */
  pheromones?: Pheromones;
  /** `host:port` used when discovery knows no instance; defaults to CELL_PEER. */
  peer?: string;
  /** Wraps a freshly authenticated socket in the calling protocol (handshake included). */
  open: (socket: TLSSocket, instance: RemoteInstance) => Promise<RemoteChannel<Req, Res>>;
  strategy?: BalanceStrategy;
  connectTimeoutMs?: number;
  callTimeoutMs?: number;
  /** How long to wait for a first discovered instance before giving up. */
  discoveryTimeoutMs?: number;
}

/** Parses CELL_PEER-style `host:port` (IPv4 or a name). */
export function parsePeer(peer: string): { host: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(peer.trim());
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) {
    throw new CellError('E_INVALID_ARGUMENT', `CELL_PEER ${JSON.stringify(peer)} is not host:port.`, {
      fix: 'set CELL_PEER=10.0.0.5:7070 (the remote cell’s TLS address).',
    });
  }
  return { host: m[1] as string, port };
}

interface Slot<Req, Res> {
  channel: RemoteChannel<Req, Res> | undefined;
  opening: Promise<RemoteChannel<Req, Res>> | undefined;
}

/**
 * Calls one cell's instances on other hosts: discovered through pheromones (or CELL_PEER), reached over
 * mutual TLS pinned to the announced host certificate, one connection per instance carrying many
 * pipelined calls, load spread by the Balancer. When an instance cannot be reached the call moves to
 * the next one before anything was sent; a call whose connection drops after it was sent fails with
 * E_CONNECTION_LOST (it may have run, so it is not silently repeated) and the instance is skipped
 * until it proves healthy again.
 */
export class RemoteCell<Req, Res> {
  private readonly slots = new Map<string, Slot<Req, Res>>();
  private readonly balancer: Balancer;
  private readonly peer: { host: string; port: number } | undefined;
  private closed = false;

  constructor(private readonly options: RemoteCellOptions<Req, Res>) {
    validateCellName(options.name);
    this.balancer = new Balancer({ strategy: options.strategy });
    const peer = options.peer ?? process.env.CELL_PEER;
    this.peer = peer ? parsePeer(peer) : undefined;
  }

  /** Calls per instance key, for observing the spread. */
  readonly servedBy = new Map<string, number>();

  instances(): RemoteInstance[] {
    const found = this.options.pheromones?.lookup(this.options.name) ?? [];
    if (found.length > 0 || this.peer === undefined) return found;
    return [
      {
        key: `peer/${this.peer.host}:${this.peer.port}`,
        name: this.options.name,
        fingerprint: 0n,
        address: this.peer.host,
        port: this.peer.port,
        load: 0,
        hostName: '',
        hostFingerprint: '',
        expiresAt: Number.POSITIVE_INFINITY,
      },
    ];
  }

  async call(request: Req, timeoutMs = this.options.callTimeoutMs ?? 5_000): Promise<Res> {
    if (this.closed) throw new CellError('E_CLOSED', 'remote cell client is closed.', { cell: this.options.name });
    let list = this.instances();
    if (list.length === 0 && this.options.pheromones !== undefined) {
      list = await this.options.pheromones.waitFor(this.options.name, 1, this.options.discoveryTimeoutMs ?? 2_000);
    }
    if (list.length === 0) {
      throw new CellError('E_CELL_NOT_FOUND', 'no instance on this host or the mesh.', {
        cell: this.options.name,
        fix: 'start the cell with CELL_LAN=1 on a mesh host, or set CELL_PEER=host:port.',
      });
    }
    const tried = new Set<string>();
    let lastError: unknown;
    let waited = false;
    for (;;) {
      let inst = this.balancer.pick(list, (k) => this.slots.get(k)?.channel?.inFlight ?? 0, tried);
      if (inst === undefined && !waited && this.options.pheromones !== undefined) {
        // Every known instance failed before anything was sent: another may be announcing right
        // now (a host just came back), so ask and wait briefly rather than fail at once.
        waited = true;
        const fresh = await this.options.pheromones.waitFor(
          this.options.name,
          tried.size + 1,
          this.options.discoveryTimeoutMs ?? 1_000,
        );
        list = fresh;
        inst = this.balancer.pick(list, (k) => this.slots.get(k)?.channel?.inFlight ?? 0, tried);
      }
      if (inst === undefined) break;
      tried.add(inst.key);
      let channel: RemoteChannel<Req, Res>;
      try {
        channel = await this.channelFor(inst);
      } catch (err) {
        lastError = err;
        this.balancer.markFailed(inst.key);
        continue; // nothing was sent: safe to try the next instance
      }
      this.servedBy.set(inst.key, (this.servedBy.get(inst.key) ?? 0) + 1);
      try {
        const res = await channel.call(request, timeoutMs);
        this.balancer.markHealthy(inst.key);
        return res;
      } catch (err) {
        if (isCellError(err, 'E_CONNECTION_LOST') || isCellError(err, 'E_TIMEOUT')) {
          this.balancer.markFailed(inst.key);
          if (isCellError(err, 'E_TIMEOUT')) this.drop(inst.key);
        }
        throw err;
      }
    }
    throw new CellError(
      'E_CONNECTION_LOST',
      `no instance of ${list.length} answered (${(lastError as Error)?.message ?? 'unknown'}).`,
      {
        cell: this.options.name,
        cause: lastError,
        fix: 'check the hosts are up and reachable; calls resume by themselves when one returns.',
      },
    );
  }

  close(): void {
    this.closed = true;
    for (const key of [...this.slots.keys()]) this.drop(key);
  }

  private drop(key: string): void {
    const slot = this.slots.get(key);
    this.slots.delete(key);
    slot?.channel?.close();
  }

  private channelFor(inst: RemoteInstance): Promise<RemoteChannel<Req, Res>> {
    let slot = this.slots.get(inst.key);
    if (slot?.channel !== undefined && !slot.channel.closed) return Promise.resolve(slot.channel);
    if (slot?.opening !== undefined) return slot.opening;
    slot = { channel: undefined, opening: undefined };
    this.slots.set(inst.key, slot);
    const s = slot;
    s.opening = (async () => {
      try {
        const socket = await connectMesh({
          identity: this.options.identity,
          host: inst.address,
          port: inst.port,
          fingerprint: inst.hostFingerprint || undefined,
          timeoutMs: this.options.connectTimeoutMs ?? 2_000,
        });
        const channel = await this.options.open(socket, inst);
        s.channel = channel;
        return channel;
      } catch (err) {
        if (this.slots.get(inst.key) === s) this.slots.delete(inst.key);
        throw err;
      } finally {
        s.opening = undefined;
      }
    })();
    return s.opening;
  }
}
