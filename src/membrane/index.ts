import { rmdirSync, statSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { basename, dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { CellError } from '../errors/index.js';
import {
  CONTROL_FRAME_FIRST,
  CONTROL_FRAME_LAST,
  DEFAULT_MAX_FRAME,
  encodeErrorPayload,
  encodeFrame,
  FrameDecoder,
  FrameType,
  MAX_HANDSHAKE_FRAME,
} from '../frame/index.js';
import { type FrameSink, StreamFrameSink } from '../frame/writer.js';
import { attest, servingIdentity } from '../identity/index.js';
import { ServiceMetrics } from '../metrics/index.js';
import {
  bootInfo,
  type CellIdentity,
  cellSocketPath,
  ensurePrivateDir,
  socketLockPath,
  validateCellName,
} from '../paths/index.js';
import type { MethodInputView, MethodOutput, ServiceDef } from '../service/types.js';
import { loadNative } from '../shm/native.js';
import { declineFrame, FrameControl, ShmServerGlue, UPGRADE_TIMEOUT_MS } from '../shm/wire.js';
import { alreadyRunning, InstanceLock, probeSocket } from './lock.js';
import { CallMetrics, type CallObserver } from './observer.js';
import { listenPrivately, PrivateListener } from './private-listener.js';
import {
  type AnyHandler,
  type CallContext,
  type ControlFrameHandler,
  type MembraneMetrics,
  ServerSession,
  type SessionHost,
  type SessionTransport,
  toErrorPayload,
} from './session.js';
import { ConnectionSlots, SLOT_NONE, type Slot } from './slots.js';

export { CallMetrics } from './observer.js';
export { PrivateListener } from './private-listener.js';
export type { CallContext, CallObserver, ControlFrameHandler, MembraneMetrics, SessionTransport };
export { ServerSession };

/** How long a connection we ended may wait for the peer to close its side. */
const LINGER_MS = 5000;
/** How long a refused connection, or one closed for a protocol error, may take to read its ERROR. */
const REFUSED_LINGER_MS = 1000;
/**
 * Connections still waiting for their HELLO, beyond the connection and reserved slots: the sockets a
 * Membrane holds at once are capped at maxConnections + reservedInspectionSlots + this.
 */
const HANDSHAKE_HEADROOM = 64;
/** Unix socket paths are limited by sun_path (108 bytes with the terminating NUL). */
const MAX_SOCKET_PATH = 107;

type ViewOf<M> = MethodInputView<M>;
type OutputOf<M> = MethodOutput<M>;

/** One handler per method: gets the lazy view of the input, returns the output (or a promise of it). */
export type Handlers<S extends ServiceDef> = {
  [K in keyof S['methods']]: (
    input: ViewOf<S['methods'][K]>,
    ctx: CallContext,
  ) => OutputOf<S['methods'][K]> | PromiseLike<OutputOf<S['methods'][K]>>;
};

export interface MembraneOptions {
  /** Cell name (the socket file's name); defaults to the service name. */
  name?: string;
  /** Full socket path; defaults to `<socketDir()>/<name>.sock`. */
  socketPath?: string;
  /** Largest frame accepted, header included (default 16 MiB). */
  maxFrameSize?: number;
  /** Unsettled asynchronous calls allowed per connection before new ones are shed (default 4096). */
  maxInFlight?: number;
  /**
   * Connections served at once; more are refused with E_OVERLOADED at their HELLO (default 1024).
   * docs/PROTOCOL.md § 2.9 has every limit and what it costs.
   */
  maxConnections?: number;
  /** Of maxConnections, what one peer uid may hold (default three quarters, rounded up). */
  maxConnectionsPerUid?: number;
  /**
   * Further connections only inspection callers (fingerprint 0: health, genome, metrics) may take once
   * the others are full, so health checks always get in (default 8).
   */
  reservedInspectionSlots?: number;
  /**
   * A connection with no call in flight that sends nothing for this long gets GOAWAY, and is closed if
   * it stays quiet a little longer (default 5 min; 0 turns it off).
   */
  idleTimeoutMs?: number;
  /** How long a new connection may take to send its HELLO (default 5 s). */
  helloTimeoutMs?: number;
  /** How long close() waits for clients to finish before cutting them off (default 10 s). */
  drainTimeoutMs?: number;
  /**
   * Close gracefully and exit the process on SIGTERM/SIGINT (default true for `bind`; the signal-drain
   * extension, registered by the package entry, reads it).
   */
  handleSignals?: boolean;
  /**
   * Offer same-user clients the shared-memory transport (default true; CELL_DISABLE_SHM or a missing
   * native addon turn it off, and clients are told why). `ringCapacity`: bytes per ring direction.
   */
  shm?: boolean | { ringCapacity?: number };
  /**
   * Decides, per accepted Unix-socket connection, whether its peer may talk to this Membrane at all
   * (the Root's control socket checks SO_PEERCRED here). A returned CellError is sent as the
   * connection-level ERROR and the connection is closed, as for E_OVERLOADED.
   */
  admit?: (socket: Socket) => CellError | undefined;
  /**
   * The Root-signed identity this cell proves to callers that ask (docs/PROTOCOL.md § 2.3.1).
   * Default: the one the Root's boot contract gives this process for this cell name, else, in an
   * operator process that can read the Root's key, one it issues itself. `false`: prove nothing
   * (callers that verify then refuse the connection).
   */
  identity?: CellIdentity | false;
}

/**
 * Something `Membrane.bind` adds to a cell once its socket listens: the tap, serving the mesh or a
 * message bus, draining on signals, watching the Root. Components above the Membrane register one with
 * `addMembraneExtension` (the package entry's composition root, src/runtime.ts, registers the built-in
 * ones), so the Membrane never imports them. `bind` attaches them in registration order; `close()`
 * first asks every attachment to `drain` (a cell taking calls from several carriers stops taking new
 * ones everywhere at once), then, once the connections are gone, `close`s them last-in-first-out.
 */
export interface MembraneExtension {
  readonly name: string;
  /** Null when this cell does not use the extension (it is not configured). Throwing fails `bind`. */
  attach(membrane: Membrane, options: MembraneOptions): Promise<MembraneAttachment | null> | MembraneAttachment | null;
}

export interface MembraneAttachment {
  /**
   * Stops taking new calls through the carrier and resolves once the calls it took have been answered
   * (or `membrane.drainTimeoutMs` passed). Called once, at the start of `close()`.
   */
  drain?(): Promise<void>;
  /** Releases what `attach` took; called once, after the connections are gone, last attached first. */
  close?(): Promise<void> | void;
}

const extensions: MembraneExtension[] = [];

/** Registers an extension every later `Membrane.bind` asks; replaces one of the same name. */
export function addMembraneExtension(extension: MembraneExtension): void {
  const i = extensions.findIndex((e) => e.name === extension.name);
  if (i >= 0) extensions.splice(i, 1, extension);
  else extensions.push(extension);
}

/**
 * A cell's server. `Membrane.bind` listens on the cell's Unix socket and attaches the registered
 * extensions (see MembraneExtension); `serveStream` serves any other duplex byte stream (a TLS socket
 * from Axon); `openSession` lets a non-stream carrier (a message bus) feed frames in and take replies
 * out through its own FrameSink.
 *
 * Extension seams for other transports:
 * - control frames 0x10–0x1F after the handshake go to `onControlFrame(type, handler)`; the handler
 *   gets the session, whose `transport.carrier` is the net.Socket (for fd passing);
 * - ServerSession.deliverFrame(…, lease) releases borrowed ring memory when the handler settles;
 * - ServerSession.switchCarrier(sink, transport) moves a session's replies to another carrier's sink
 *   (the shared-memory upgrade returns one, and the Membrane installs it).
 */
export class Membrane<S extends ServiceDef = ServiceDef> implements SessionHost {
  readonly service: S;
  readonly cellName: string;
  readonly handlers: AnyHandler[];
  readonly contextFree: Uint8Array;
  readonly maxFrameSize: number;
  readonly maxInFlight: number;
  readonly maxConnections: number;
  readonly drainTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly helloTimeoutMs: number;
  readonly slots: ConnectionSlots;
  readonly metrics: MembraneMetrics = {
    connectionsTotal: 0,
    connectionsRefused: 0,
    requests: 0,
    replies: 0,
    errors: 0,
    shed: 0,
    inFlight: 0,
    protocolErrors: 0,
  };
  /** Per-method counters and latency histograms, read by the `metrics` built-in. */
  readonly calls: ServiceMetrics;
  /** The default call observer, over `calls`. */
  readonly callMetrics: CallMetrics;
  /**
   * The other call observer, set only while someone watches the calls: the tap extension installs
   * itself here and removes itself when its last client leaves.
   */
  observer: CallObserver | null = null;
  /** The operator's inspection socket, when the Root started this process as this cell. */
  private inspect: PrivateListener | null = null;
  /**
   * Whether `metrics` answers only on the inspection socket: so in a cell the Root started, whose
   * public socket every other cell can reach. A process run by hand shares its socket directory
   * (mode 0700) with nobody, and keeps answering there.
   */
  readonly metricsForOperatorOnly: boolean;
  private readonly admit: ((socket: Socket) => CellError | undefined) | undefined;
  readonly controlHandlers = new Map<number, ControlFrameHandler>();
  readonly startedAt = Date.now();
  draining = false;
  private readonly sessions = new Set<ServerSession>();
  private server: Server | null = null;
  private lock: InstanceLock | null = null;
  private path: string | null = null;
  private closing: Promise<void> | null = null;
  private idleWaiters: Array<() => void> = [];
  /**
   * Sockets this Membrane ended (refused, closed for a protocol error, shared-memory pickups) that
   * wait for the peer to close: each is destroyed after its linger, and close() destroys them at once.
   */
  private readonly ending = new Set<Duplex>();
  private idleSweep: NodeJS.Timeout | null = null;
  /** The shared-memory upgrade, or null when turned off by the options. */
  readonly shm: ShmServerGlue<ServerSession> | null;
  /** The identity proved at the handshake: undefined until resolved, null when there is none. */
  private identity: CellIdentity | null | undefined;
  /** What extensions attached, by extension name, in attach order (see MembraneExtension). */
  private readonly attached = new Map<string, MembraneAttachment>();

  constructor(service: S, handlers: Handlers<S>, options: MembraneOptions = {}) {
    this.service = service;
    this.cellName = validateCellName(options.name ?? service.name);
    this.maxFrameSize = options.maxFrameSize ?? DEFAULT_MAX_FRAME;
    this.maxInFlight = options.maxInFlight ?? 4096;
    this.maxConnections = options.maxConnections ?? 1024;
    this.drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 300_000;
    this.helloTimeoutMs = options.helloTimeoutMs ?? 5000;
    this.slots = new ConnectionSlots({
      maxConnections: this.maxConnections,
      perUid: options.maxConnectionsPerUid ?? Math.ceil((this.maxConnections * 3) / 4),
      reserved: options.reservedInspectionSlots ?? 8,
    });
    this.metricsForOperatorOnly = bootInfo()?.name === this.cellName;
    this.admit = options.admit;
    this.identity = options.identity === false ? null : options.identity;
    this.calls = new ServiceMetrics(
      service.name,
      service.byId.map((m) => m.name),
    );
    this.callMetrics = new CallMetrics(this.calls);
    this.handlers = service.byId.map((m) => {
      const h = (handlers as Record<string, AnyHandler | undefined>)[m.name];
      if (typeof h !== 'function') {
        throw new CellError('E_INVALID_ARGUMENT', `no handler for method '${m.name}'.`, {
          cell: this.cellName,
          fix: `pass a function for every method of service '${service.name}'.`,
        });
      }
      return h;
    });
    this.contextFree = Uint8Array.from(this.handlers, (h) => (h.length === 1 ? 1 : 0));
    const shm = options.shm ?? true;
    // The upgrade hands back the ring sink; the session installs it (shm writes no session field).
    this.shm =
      shm === false
        ? null
        : new ShmServerGlue<ServerSession>(shm === true ? {} : shm, (session, sink) =>
            session.switchCarrier(sink, 'shm'),
          );
    const glue = this.shm;
    this.controlHandlers.set(FrameControl.UPGRADE_REQUEST, (session, _flags, features, requestId) => {
      // Clients ask by default; an unanswered request would be a protocol error on their side.
      const declined =
        glue === null
          ? 'server: shared memory is turned off in the Membrane options'
          : glue.onUpgradeRequest(session, requestId, features);
      if (declined === undefined) return;
      session.stayOnCarrier(declined);
      session.writeCold(declineFrame(requestId, declined));
    });
  }

  /** Signs a HELLO's challenge with this cell's identity (resolved once); undefined without one. */
  attest(challenge: Buffer): Buffer | undefined {
    if (this.identity === undefined) this.resolveIdentity();
    const identity = this.identity;
    if (identity === null || identity === undefined) return undefined;
    return attest(identity, challenge, this.service.fingerprint, this.service.name);
  }

  private resolveIdentity(): void {
    if (this.identity !== undefined) return;
    const found = servingIdentity(this.cellName);
    this.identity = found.identity ?? null;
    if (found.identity === undefined) {
      // Callers that verify will refuse this cell and can only say it proved nothing: say why here.
      process.emitWarning(
        `cell '${this.cellName}' serves without an identity (${found.reason}); callers that verify it refuse the connection with E_IDENTITY_MISMATCH.`,
        { code: 'CELL_NO_IDENTITY' },
      );
    }
  }

  shmStatus(): Record<string, unknown> {
    const glue = this.shm;
    if (glue === null) return { available: false, reason: 'turned off in the Membrane options' };
    const reason = glue.unavailable;
    return {
      available: reason === undefined,
      ...(reason === undefined ? {} : { reason }),
      connections: glue.active,
      upgrades: glue.upgrades,
      declines: glue.declines,
      transports: [...this.sessions].map((s) => ({
        peer: s.peerName,
        pid: s.peerPid,
        transport: s.transportStatus.transport,
        ...(s.transportStatus.shmDeclined === undefined ? {} : { shmDeclined: s.transportStatus.shmDeclined }),
      })),
    };
  }

  /** Creates the Membrane and listens on the cell's socket. */
  static async bind<S extends ServiceDef>(
    service: S,
    handlers: Handlers<S>,
    options: MembraneOptions = {},
  ): Promise<Membrane<S>> {
    const m = new Membrane(service, handlers, options);
    await m.listen(options.socketPath);
    try {
      for (const ext of extensions) m.attach(ext.name, await ext.attach(m as unknown as Membrane, options));
    } catch (err) {
      await m.close();
      throw err;
    }
    return m;
  }

  /** Keeps what an extension attached, for close(); null (not configured) is dropped. */
  attach(name: string, attachment: MembraneAttachment | null): void {
    if (attachment !== null) this.attached.set(name, attachment);
  }

  /** What the extension of that name attached to this Membrane, if anything. */
  attachment(name: string): MembraneAttachment | undefined {
    return this.attached.get(name);
  }

  /** The socket path this Membrane listens on, once listening. */
  get socketPath(): string | null {
    return this.path;
  }

  /**
   * Listens on `path` (default `<socketDir>/<name>.sock`). Refuses with E_CELL_ALREADY_RUNNING when
   * another live process holds the name; replaces a stale lock or socket left by a dead one. The lock
   * file sits beside the socket (`<path without .sock>.lock`), so a hot swap that binds a temporary
   * path and renames it over the public one has one lock per generation; note that close() unlinks
   * the path it bound (Node does so for Unix sockets), which after such a rename is already gone.
   */
  async listen(path?: string): Promise<void> {
    if (this.server !== null) throw new CellError('E_INVALID_ARGUMENT', 'already listening.', { cell: this.cellName });
    const sockPath = path ?? bindPathFor(this.cellName);
    if (Buffer.byteLength(sockPath) > MAX_SOCKET_PATH) {
      throw new CellError('E_INVALID_ARGUMENT', `socket path ${sockPath} is longer than ${MAX_SOCKET_PATH} bytes.`, {
        cell: this.cellName,
        fix: 'point CELL_SOCKET_DIR at a shorter directory (Unix sockets cannot have longer paths).',
      });
    }
    ensurePrivateDir(dirname(sockPath));
    const lock = InstanceLock.acquire(socketLockPath(sockPath), this.cellName);
    try {
      const state = await probeSocket(sockPath);
      if (state === 'live') throw alreadyRunning(this.cellName, undefined, sockPath);
      if (state === 'stale') {
        try {
          if (statSync(sockPath).isSocket()) unlinkSync(sockPath);
        } catch {
          // gone already
        }
      }
      const server = createServer({ allowHalfOpen: true, pauseOnConnect: false });
      server.on('connection', (socket) => this.accept(socket));
      try {
        await listenPrivately(server, sockPath);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw e.code === 'EADDRINUSE'
          ? alreadyRunning(this.cellName, undefined, sockPath)
          : new CellError('E_INTERNAL', `cannot listen on ${sockPath}: ${e.message}`, {
              cell: this.cellName,
              cause: e,
            });
      }
      this.server = server;
      this.lock = lock;
      this.path = sockPath;
      // Resolved before the first caller arrives (reading or creating the Root's key takes a moment).
      this.resolveIdentity();
      const boot = bootInfo();
      if (boot !== undefined && boot.name === this.cellName) await this.listenInspect(boot.inspectPath);
    } catch (err) {
      lock.release();
      throw err;
    }
  }

  private async listenInspect(path: string): Promise<void> {
    this.inspect = await PrivateListener.listen(path, (socket) => {
      if (this.draining) {
        socket.destroy();
        return;
      }
      this.serveStream(socket, false, peerUidOf(socket)).operator = true;
    });
  }

  private accept(socket: Socket): void {
    const denied = this.admit?.(socket);
    const cap = this.maxConnections + this.slots.limits.reserved + HANDSHAKE_HEADROOM;
    if (denied !== undefined || this.draining || this.sessions.size >= cap) {
      this.refuseSocket(
        socket,
        denied !== undefined
          ? denied
          : this.draining
            ? new CellError('E_GOAWAY', 'the cell is shutting down and accepts no new connections.', {
                cell: this.cellName,
                fix: 'retry shortly; a new instance may take over.',
              })
            : new CellError('E_OVERLOADED', `the cell already holds ${cap} connections.`, {
                cell: this.cellName,
                fix: 'reuse connections (one Synapse per process is enough) or raise maxConnections.',
              }),
      );
      return;
    }
    this.serveStream(socket, this.shm !== null, peerUidOf(socket));
  }

  /**
   * Answers a connection we will not serve with a connection-level ERROR and gets rid of it: what the
   * peer sends is read and dropped (so its close is seen), and the socket is destroyed once the
   * ERROR is out or after REFUSED_LINGER_MS. It counts nowhere, and close() does not wait for it.
   */
  private refuseSocket(socket: Socket, err: CellError): void {
    this.metrics.connectionsRefused++;
    socket.on('error', () => {});
    socket.resume();
    socket.end(encodeFrame(FrameType.ERROR, 0, 0, encodeErrorPayload(toErrorPayload(err))));
    this.linger(socket, REFUSED_LINGER_MS);
  }

  /** `stream` was ended by us: destroy it if the peer has not closed it within `ms`, or when we close. */
  private linger(stream: Duplex, ms: number): void {
    if (stream.destroyed || this.ending.has(stream)) return;
    this.ending.add(stream);
    const timer = setTimeout(() => stream.destroy(), ms);
    timer.unref();
    stream.once('close', () => {
      clearTimeout(timer);
      this.ending.delete(stream);
    });
    if (this.closing !== null) destroyWhenFlushed(stream);
  }

  /** Gives a peer whose HELLO passed a connection slot, or the E_OVERLOADED that refuses it. */
  admitPeer(session: ServerSession, inspection: boolean): CellError | null {
    const got = this.slots.admit(session.peerUid, inspection);
    if (typeof got === 'number') {
      session.slot = got;
      return null;
    }
    const { maxConnections, perUid } = this.slots.limits;
    return new CellError(
      'E_OVERLOADED',
      got === 'full'
        ? `the cell already serves ${maxConnections} connections.`
        : `uid ${session.peerUid} already holds ${perUid} of the cell's ${maxConnections} connections.`,
      {
        cell: this.cellName,
        fix:
          got === 'full'
            ? 'reuse connections (one Synapse per process is enough) or raise maxConnections.'
            : 'reuse connections (one Synapse per process is enough) or raise maxConnectionsPerUid.',
      },
    );
  }

  /**
   * Serves one connection over any duplex byte stream (Unix socket, TLS socket, in-memory pair).
   * With `sniffPickup`, a connection whose first bytes are the shared-memory pickup magic ("CELL", which
   * as a frame length would exceed any limit) is handed to the shm glue instead (docs/PROTOCOL.md § 3).
   */
  serveStream(stream: Duplex, sniffPickup = false, peerUid = -1): ServerSession {
    const transport: SessionTransport = {
      carrier: stream,
      end: (abrupt = false) => {
        if (!stream.writableEnded) stream.end();
        // A peer that never closes its side must not hold the connection forever.
        this.linger(stream, abrupt ? REFUSED_LINGER_MS : LINGER_MS);
      },
      destroy: () => stream.destroy(),
    };
    let paused = false;
    // Declared before the sink so its back-pressure hook can pause frame delivery mid-chunk.
    let decoder: FrameDecoder | null = null;
    const sink = new StreamFrameSink(stream, () => {
      // The peer is not reading our replies: stop taking its requests until they drain.
      if (paused) return;
      paused = true;
      stream.pause();
      decoder?.pause();
      stream.once('drain', () => {
        paused = false;
        stream.resume();
        try {
          decoder?.resume();
        } catch (err) {
          session.fatal(err);
        }
        sink.flush();
      });
    });
    const session = this.openSession(sink, transport);
    session.peerUid = peerUid;
    const frames = new FrameDecoder(session, MAX_HANDSHAKE_FRAME);
    decoder = frames;
    session.onOpen = (s) => {
      // An inspection connection carries empty built-in requests only: it keeps the small limit.
      if (s.slot !== 0 && !s.inspection) frames.maxFrame = this.maxFrameSize;
    };
    let opening: Buffer | null = sniffPickup ? Buffer.alloc(0) : null;
    stream.on('data', (data: Buffer) => {
      let chunk = data;
      if (opening !== null) {
        const head = opening.length === 0 ? chunk : Buffer.concat([opening, chunk]);
        const pickup = ShmServerGlue.isPickup(head);
        if (pickup === undefined) {
          opening = head;
          return;
        }
        opening = null;
        if (pickup && this.shm !== null) {
          stream.removeAllListeners('data');
          clearTimeout(handshakeTimer);
          this.metrics.connectionsTotal--;
          session.closed();
          // Answered and closed by the glue within its timeout; close() must not wait for it either.
          this.linger(stream, UPGRADE_TIMEOUT_MS + REFUSED_LINGER_MS);
          this.shm.servePickup(stream as Socket, head);
          return;
        }
        chunk = head;
      }
      session.beginBatch();
      try {
        frames.push(chunk);
      } catch (err) {
        session.fatal(err);
      }
      sink.flush();
      session.endBatch();
    });
    // A connection that never completes the handshake (slowloris) is cut.
    const handshakeTimer = setTimeout(() => {
      if (!session.isOpen) {
        session.fatal(
          new CellError('E_TIMEOUT', `no HELLO within ${this.helloTimeoutMs} ms.`, {
            cell: this.cellName,
            fix: 'connect with Synapse, which sends HELLO at once.',
          }),
        );
      }
    }, this.helloTimeoutMs);
    handshakeTimer.unref();
    stream.on('end', () => session.peerEnd());
    stream.on('error', () => {
      // ECONNRESET/EPIPE from a vanished client: 'close' follows and cleans up
    });
    stream.on('close', () => {
      clearTimeout(handshakeTimer);
      this.shm?.forget(session);
      session.closed();
    });
    return session;
  }

  /**
   * Creates a session fed by a custom carrier: the carrier calls `session.onFrame` (or `deliver`, with
   * a release hook for borrowed memory) per frame and gets replies through `sink`.
   */
  openSession(sink: FrameSink, transport: SessionTransport): ServerSession {
    const session = new ServerSession(this, sink, transport);
    session.quietSince = Date.now();
    this.sessions.add(session);
    this.metrics.connectionsTotal++;
    if (this.idleSweep === null && this.idleTimeoutMs > 0) this.startIdleSweep();
    return session;
  }

  /** Looks at every connection four times per idle timeout (see ServerSession.idleCheck). */
  private startIdleSweep(): void {
    const timeout = this.idleTimeoutMs;
    // After GOAWAY an idle Synapse leaves at once; a peer that ignores it is closed after this grace.
    const grace = Math.min(timeout, LINGER_MS);
    this.idleSweep = setInterval(
      () => {
        const now = Date.now();
        for (const s of this.sessions) s.idleCheck(now, timeout, grace);
      },
      Math.max(10, Math.min(timeout / 4, 30_000)),
    );
    this.idleSweep.unref();
  }

  /** Routes frames of a control type (0x10–0x1F) to `handler`, e.g. the shared-memory upgrade. */
  onControlFrame(type: number, handler: ControlFrameHandler): void {
    if (type < CONTROL_FRAME_FIRST || type > CONTROL_FRAME_LAST) {
      throw new CellError('E_INVALID_ARGUMENT', `control frame types are 0x10–0x1F, not 0x${type.toString(16)}.`);
    }
    // Two handlers for one type would silently break whichever registered first (the shm upgrade owns 0x10).
    if (this.controlHandlers.has(type)) {
      throw new CellError('E_INVALID_ARGUMENT', `control frame type 0x${type.toString(16)} already has a handler.`, {
        cell: this.cellName,
        fix: 'pick a free type; 0x10–0x12 belong to the shared-memory upgrade (docs/PROTOCOL.md § 3).',
      });
    }
    this.controlHandlers.set(type, handler);
  }

  sessionClosed(session: ServerSession): void {
    this.metrics.inFlight -= session.inFlight;
    session.inFlight = 0;
    this.slots.release(session.slot as Slot, session.peerUid);
    session.slot = SLOT_NONE;
    this.sessions.delete(session);
    if (this.sessions.size === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  connectionCount(): number {
    return this.sessions.size;
  }

  /**
   * Graceful stop: stop accepting, send GOAWAY on every connection, let in-flight calls finish while
   * clients move away, and cut off whoever is left after drainTimeoutMs. Releases the socket and lock.
   */
  close(): Promise<void> {
    if (this.closing === null) this.closing = this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.draining = true;
    // Withdraw from the extensions' carriers (the mesh, a message bus) first, so remote clients stop
    // choosing this instance while it drains.
    const attachments = [...this.attached.values()];
    const attachmentsDrained = Promise.all(attachments.map((a) => a.drain?.().catch(() => {})));
    const server = this.server;
    if (server !== null && this.path !== null) unlinkPublicNameIfOurs(this.path, this.cellName);
    const closed = server === null ? Promise.resolve() : new Promise<void>((r) => server.close(() => r()));
    const inspectClosed = this.inspect?.close();
    this.inspect = null;
    // Connections we ended have nothing more to say: the server's close must not wait for their peers.
    for (const stream of this.ending) destroyWhenFlushed(stream);
    for (const s of this.sessions) {
      if (s.isOpen) s.goaway();
    }
    if (this.sessions.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.idleWaiters.push(resolve);
        timer = setTimeout(resolve, this.drainTimeoutMs);
      });
      clearTimeout(timer);
      for (const s of [...this.sessions]) {
        s.transport.destroy();
        s.closed();
      }
    }
    if (this.idleSweep !== null) clearInterval(this.idleSweep);
    this.idleSweep = null;
    await closed;
    await inspectClosed;
    await attachmentsDrained;
    for (const a of attachments.reverse()) await Promise.resolve(a.close?.()).catch(() => {});
    this.lock?.release();
    this.lock = null;
    if (this.path !== null) removeEmptyCellDir(this.path, this.cellName);
  }
}

/**
 * Where a cell listens by default: `<socketDir>/<name>.sock`, unless the Root started this process as
 * one generation of a hot-swappable cell and gave it `CELL_BIND_PATH=<socketDir>/<name>.<gen>.sock`,
 * which it renames over the public path once the cell is healthy (see src/swap).
 */
function bindPathFor(cell: string): string {
  const assigned = bootInfo()?.bindPath ?? process.env.CELL_BIND_PATH;
  if (assigned !== undefined && assigned !== '' && basename(assigned).startsWith(`${cell}.`)) return assigned;
  return cellSocketPath(cell);
}

/**
 * A generation bound at `<name>.<gen>.sock` was published as `<name>.sock` by a hard link. When it
 * stops while still the published one (no newer generation took the name), the public name would be
 * left pointing at a dead socket: remove it, so callers wait for the cell instead of being refused.
 */
function unlinkPublicNameIfOurs(ownPath: string, cell: string): void {
  const publicPath = join(dirname(ownPath), `${cell}.sock`);
  if (publicPath === ownPath) return;
  try {
    if (statSync(publicPath).ino === statSync(ownPath).ino) unlinkSync(publicPath);
  } catch {
    // either name is gone already
  }
}

/**
 * A cell's run dir (`<socketDir>/<name>/`) that it leaves empty goes too, so a cell started by hand
 * leaves nothing behind. Under the Root the dir is a mount point inside the sandbox and stays (EBUSY).
 */
function removeEmptyCellDir(ownPath: string, cell: string): void {
  const dir = dirname(ownPath);
  if (basename(dir) !== cell) return;
  try {
    rmdirSync(dir);
  } catch {
    // not empty, in use as a mount point, or gone
  }
}

/** The uid of the process at the other end of a Unix socket (SO_PEERCRED), or -1 when unknown. */
function peerUidOf(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  const addon = loadNative().addon;
  if (typeof fd !== 'number' || fd < 0 || addon === undefined) return -1;
  try {
    return addon.peerCred(fd).uid;
  } catch {
    return -1;
  }
}

/** Destroys a stream we ended as soon as what we wrote has left (at once if it has). */
function destroyWhenFlushed(stream: Duplex): void {
  if (stream.destroyed) return;
  if (stream.writableFinished) stream.destroy();
  else stream.once('finish', () => stream.destroy());
}
