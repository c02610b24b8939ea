import type { KeyObject } from 'node:crypto';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { CellError, isCellError } from '../errors/index.js';
import type { TransportStatus } from '../frame/index.js';
import { BuiltinMethod } from '../frame/index.js';
import { callerRootKey } from '../identity/index.js';
import { validateCellName } from '../paths/index.js';
import type { MethodDef, MethodInput, MethodOutput, ServiceDef } from '../service/types.js';
import {
  type CallOptions,
  ClientConnection,
  type FrameCarrier,
  type IdentityStatus,
  RemoteError,
} from './connection.js';
import { type Connector, type Resolver, resolvers as registeredResolvers } from './resolve.js';

export type { Connector, ResolveContext, Resolver } from './resolve.js';
export { addResolver, localSocketResolver, removeResolver, resolvers, unixConnector } from './resolve.js';
export type { CallOptions, FrameCarrier, IdentityStatus };

/** A connection's carrier and whether the cell proved its identity (`$synapse.transport`). */
export interface SynapseTransport extends TransportStatus {
  identity: IdentityStatus;
}
export { ClientConnection, RemoteError };

type InputOf<M> = MethodInput<M>;
type OutputOf<M> = MethodOutput<M>;

/** One method of the typed proxy: call it for one request, or `.many` for a run of them. */
export interface MethodCaller<I, O> {
  (input: I, options?: CallOptions): Promise<O>;
  /**
   * Sends one request per input back to back and resolves with the replies in input order. Each is
   * an ordinary call in the cell (its own handler run and reply); the caller keeps one promise for
   * the lot instead of one per call, which is what pipelining millions of small calls costs most.
   * Rejects with the first failure (`details.index` names the input); `timeoutMs` and `signal`
   * apply to the whole run. An input that fails to encode stops the run there (the requests before
   * it have gone out and run).
   */
  many(inputs: readonly I[], options?: CallOptions): Promise<O[]>;
}

/** The typed proxy `Synapse.grow` returns: one async function per method, plus `$`-prefixed extras. */
export type SynapseClient<S extends ServiceDef> = {
  readonly [K in keyof S['methods']]: MethodCaller<InputOf<S['methods'][K]>, OutputOf<S['methods'][K]>>;
} & {
  readonly $synapse: Synapse<S>;
  /** Closes after in-flight calls settle. */
  $close(): Promise<void>;
  $genome(options?: CallOptions): Promise<unknown>;
  $health(options?: CallOptions): Promise<unknown>;
  $metrics(options?: CallOptions): Promise<unknown>;
};

/** What `Synapse.inspect` returns: the built-in methods every cell answers. */
export interface CellInspector {
  genome(options?: CallOptions): Promise<unknown>;
  health(options?: CallOptions): Promise<unknown>;
  metrics(options?: CallOptions): Promise<unknown>;
  close(): Promise<void>;
}

export interface GrowOptions {
  /** Cell name (default: the service name). */
  name?: string;
  /** Default per-call timeout (default 30 s). */
  timeoutMs?: number;
  /** How long grow (and each reconnect) waits for the cell to appear (default 3 s). */
  waitMs?: number;
  /** Resolvers to use instead of the registered ones (see addResolver). */
  resolvers?: readonly Resolver[];
  /** Largest reply frame accepted (default 64 MiB). */
  maxFrameSize?: number;
  /**
   * Open a contract-less connection (fingerprint 0): only $genome/$health/$metrics work. For tools
   * that inspect cells whose contract they do not have.
   */
  inspectOnly?: boolean;
  /** Use the shared-memory transport when the cell runs as the same user (default true). */
  shm?: boolean;
  /**
   * On every local (Unix-socket) connection, make the cell prove it is the one the Root certified
   * under this name (docs/PROTOCOL.md § 2.3.1); an impostor fails grow and calls with
   * E_IDENTITY_MISMATCH (default true). Connections through Axon are covered by its TLS certificates
   * instead and never ask.
   */
  verifyIdentity?: boolean;
}

/**
 * The typed client of one cell. Holds at most one open connection; a dropped connection fails its
 * in-flight calls and the next call reconnects (resolving the cell again, with backoff). On GOAWAY new
 * calls go to a fresh connection while the old one drains its replies.
 */
export class Synapse<S extends ServiceDef = ServiceDef> {
  readonly service: S;
  readonly cell: string;
  private readonly timeoutMs: number;
  private readonly waitMs: number;
  private readonly resolverList: readonly Resolver[] | undefined;
  private readonly maxFrameSize: number;
  private readonly fingerprint: bigint;
  private readonly shm: boolean;
  private readonly verifyIdentity: boolean;
  private conn: ClientConnection | null = null;
  private connecting: Promise<ClientConnection> | null = null;
  private readonly draining = new Set<ClientConnection>();
  private closedFlag = false;
  /** Where the current connection goes (for messages and `cell status`). */
  target = '';

  private constructor(service: S, options: GrowOptions) {
    this.service = service;
    this.cell = validateCellName(options.name ?? service.name);
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.waitMs = options.waitMs ?? 3000;
    this.resolverList = options.resolvers;
    this.maxFrameSize = options.maxFrameSize ?? 64 * 1024 * 1024;
    this.fingerprint = options.inspectOnly ? 0n : service.fingerprint;
    this.shm = options.shm ?? true;
    this.verifyIdentity = options.verifyIdentity ?? true;
  }

  /**
   * The current connection's carrier ('shm' or 'socket'), why shared memory was declined if it was,
   * and whether the cell proved its identity.
   */
  get transport(): SynapseTransport | null {
    const c = this.conn;
    return c === null ? null : { ...c.transportStatus, identity: c.identityStatus };
  }

  /**
   * Finds the cell (local socket → registered resolvers, waiting up to `waitMs` for it to appear),
   * handshakes, and returns the typed proxy. Fails with E_CELL_NOT_FOUND, E_IDENTITY_MISMATCH (the
   * process at the cell's socket is not the cell the Root certified) or E_SCHEMA_MISMATCH.
   */
  static async grow<S extends ServiceDef>(service: S, options: GrowOptions = {}): Promise<SynapseClient<S>> {
    const syn = new Synapse(service, options);
    await syn.connection();
    return syn.client();
  }

  /**
   * A contract-less client for tools (`cell status`, `cell genome`): only the built-in methods, for a
   * cell whose service definition the caller does not have.
   */
  static async inspect(cell: string, options: Omit<GrowOptions, 'name' | 'inspectOnly'> = {}): Promise<CellInspector> {
    const stub: ServiceDef = {
      name: validateCellName(cell),
      methods: {},
      byId: [],
      genome: { kind: 'service', name: cell, methods: [] },
      fingerprint: 0n,
    };
    const syn = new Synapse(stub, { ...options, name: cell, inspectOnly: true });
    await syn.connection();
    return {
      genome: (o) => syn.builtin(BuiltinMethod.GENOME, o),
      health: (o) => syn.builtin(BuiltinMethod.HEALTH, o),
      metrics: (o) => syn.builtin(BuiltinMethod.METRICS, o),
      close: () => syn.close(),
    };
  }

  /** A Synapse over an already-open stream (no resolving, no reconnect). */
  static async attach<S extends ServiceDef>(
    service: S,
    stream: Duplex,
    options: GrowOptions = {},
  ): Promise<SynapseClient<S>> {
    const syn = new Synapse(service, { ...options, resolvers: [] });
    const conn = await syn.handshake(stream, 'stream');
    syn.adopt(conn);
    return syn.client();
  }

  /** The typed proxy over this Synapse (built once per Synapse; methods are plain closures). */
  client(): SynapseClient<S> {
    const proxy: Record<string, unknown> = {};
    for (const def of this.service.byId) {
      const caller = (input: unknown, options?: CallOptions) => this.call(def, input, options);
      caller.many = (inputs: readonly unknown[], options?: CallOptions) => this.callMany(def, inputs, options);
      proxy[def.name] = caller;
    }
    Object.defineProperties(proxy, {
      $synapse: { value: this },
      $close: { value: () => this.close() },
      $genome: { value: (o?: CallOptions) => this.builtin(BuiltinMethod.GENOME, o) },
      $health: { value: (o?: CallOptions) => this.builtin(BuiltinMethod.HEALTH, o) },
      $metrics: { value: (o?: CallOptions) => this.builtin(BuiltinMethod.METRICS, o) },
    });
    return proxy as SynapseClient<S>;
  }

  /** Calls one method. The fast path (an open connection) is synchronous up to the returned promise. */
  call(def: MethodDef, input: unknown, options?: CallOptions): Promise<unknown> {
    const c = this.conn;
    if (c?.isOpen) return c.call(def, input, options);
    return this.connection().then((conn) => conn.call(def, input, options));
  }

  /** Calls one method once per input, pipelined, with one promise for the replies (see MethodCaller.many). */
  callMany(def: MethodDef, inputs: readonly unknown[], options?: CallOptions): Promise<unknown[]> {
    const c = this.conn;
    if (c?.isOpen) return c.callMany(def, inputs, options);
    return this.connection().then((conn) => conn.callMany(def, inputs, options));
  }

  private builtin(method: number, options?: CallOptions): Promise<unknown> {
    return this.connection().then((conn) => conn.callBuiltin(method, options));
  }

  /** The open connection, connecting (or reconnecting) if needed. */
  connection(): Promise<ClientConnection> {
    if (this.closedFlag) {
      return Promise.reject(new CellError('E_CLOSED', 'this Synapse was closed.', { cell: this.cell }));
    }
    const c = this.conn;
    if (c?.isOpen) return Promise.resolve(c);
    if (this.connecting === null) {
      this.connecting = this.resolveAndConnect().then(
        (conn) => {
          this.connecting = null;
          this.adopt(conn);
          return conn;
        },
        (err) => {
          this.connecting = null;
          throw err;
        },
      );
    }
    return this.connecting;
  }

  private adopt(conn: ClientConnection): void {
    if (this.closedFlag) {
      void conn.close();
      return;
    }
    this.conn = conn;
    conn.onGoaway = (c) => {
      if (this.conn === c) this.conn = null;
      this.draining.add(c);
    };
    conn.onClose = (c) => {
      if (this.conn === c) this.conn = null;
      this.draining.delete(c);
    };
  }

  private async resolveAndConnect(): Promise<ClientConnection> {
    const list = this.resolverList ?? registeredResolvers();
    const deadline = Date.now() + this.waitMs;
    const tried: string[] = [];
    let delay = 10;
    let lastError: unknown = null;
    for (let attempt = 0; ; attempt++) {
      for (const r of list) {
        const connector: Connector | null = await r.resolve(this.cell, { deadline, attempt });
        if (connector === null) {
          if (attempt === 0) tried.push(`${r.name}: nothing`);
          continue;
        }
        let stream: Duplex;
        try {
          stream = await connector.connect();
        } catch (err) {
          lastError = err;
          if (attempt === 0) tried.push(`${r.name}: ${connector.describe} (${(err as NodeJS.ErrnoException).code})`);
          continue;
        }
        try {
          const conn = await this.handshake(stream, connector.describe);
          this.target = connector.describe;
          return conn;
        } catch (err) {
          // A cell that is shutting down refuses with E_GOAWAY: keep looking for its successor.
          if (isCellError(err) && (err.code === 'E_GOAWAY' || err.code === 'E_CONNECTION_LOST')) {
            lastError = err;
            continue;
          }
          throw err;
        }
      }
      if (Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 200);
    }
    throw new CellError('E_CELL_NOT_FOUND', `cell not found after waiting ${this.waitMs} ms (${tried.join('; ')}).`, {
      cell: this.cell,
      fix: `start a Root with \`cell up\` (in the folder of your cell.json; it spawns registered cells on demand) and register the cell (\`cell add ${this.cell} <dir>\`), or run the cell's program yourself; check CELL_SOCKET_DIR points where it listens.`,
      cause: lastError ?? undefined,
    });
  }

  private handshake(stream: Duplex, describe: string): Promise<ClientConnection> {
    let verifyIdentity: KeyObject | undefined;
    let unverifiedBecause: string | undefined;
    if (!this.verifyIdentity) {
      unverifiedBecause = 'turned off in the Synapse options';
    } else if (!isLocalSocket(stream)) {
      unverifiedBecause = 'not a local socket: the remote transport authenticates the host';
    } else {
      const root = callerRootKey();
      verifyIdentity = root.key;
      if (root.key === undefined) unverifiedBecause = `no Root key to check it with: ${root.reason}`;
    }
    return ClientConnection.open(stream, {
      verifyIdentity,
      unverifiedBecause,
      // The path we dialled reaches the cell again for the shm pickup even when the cell sees its
      // socket under another path (a sandbox's bind mount).
      socketPath: describe.startsWith('unix:') ? describe.slice(5) : undefined,
      cell: this.cell,
      service: this.service,
      fingerprint: this.fingerprint,
      timeoutMs: this.timeoutMs,
      maxFrameSize: this.maxFrameSize,
      shm: this.shm,
    });
  }

  /** Stops new calls, lets in-flight ones finish, closes every connection. */
  async close(): Promise<void> {
    this.closedFlag = true;
    const all = [...this.draining];
    if (this.conn !== null) all.push(this.conn);
    this.conn = null;
    const pendingConnect = this.connecting;
    if (pendingConnect !== null) {
      try {
        all.push(await pendingConnect);
      } catch {
        // nothing to close
      }
    }
    await Promise.all(all.map((c) => c.close()));
  }
}

/** A Unix-socket stream (TLS streams, TCP and in-memory pairs are not). */
function isLocalSocket(stream: Duplex): boolean {
  return (
    stream instanceof Socket &&
    (stream as { encrypted?: boolean }).encrypted !== true &&
    stream.remoteAddress === undefined &&
    !stream.destroyed
  );
}

export function isRemoteError(err: unknown): err is RemoteError {
  return err instanceof RemoteError;
}
