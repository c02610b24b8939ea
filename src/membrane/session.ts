import { CellError, isCellError } from '../errors/index.js';
import {
  BUILTIN_METHOD_FIRST,
  BuiltinMethod,
  bigintToString,
  CONTROL_FRAME_FIRST,
  CONTROL_FRAME_LAST,
  type ControlFrameCallback,
  DEFAULT_MAX_FRAME,
  decodeHandshake,
  type ErrorPayload,
  encodeErrorPayload,
  encodeFrame,
  encodeHandshake,
  type FrameLoan,
  type FrameReceiver,
  FrameType,
  fingerprintHex,
  HandshakeFlag,
  HEADER_SIZE,
  helloChallenge,
  MAX_HANDSHAKE_FRAME,
  PROTOCOL_VERSION,
  type Transport,
  type TransportStatus,
  writeHeader,
} from '../frame/index.js';
import type { FrameSink } from '../frame/writer.js';
import type { MethodDef, ServiceDef } from '../service/types.js';
import { Vesicle } from '../vesicle/index.js';
import type { CallMetrics, CallObserver } from './observer.js';

/** What a session needs from the byte carrier under it (a socket, a TLS stream, a shared-memory ring). */
export interface SessionTransport {
  /**
   * Finish sending what is queued, then close. `abrupt`: the peer was refused or broke the protocol;
   * it gets a short linger (1 s) to read the error before the connection is destroyed.
   */
  end(abrupt?: boolean): void;
  /** Close at once. */
  destroy(): void;
  /** The carrier itself (a net.Socket for Unix sockets), for control-frame handlers that need the fd. */
  readonly carrier: unknown;
}

/** Handles a frame in the control range (0x10–0x1F) after the handshake, given its session. */
export type ControlFrameHandler = ControlFrameCallback<ServerSession>;

/** The state a Membrane shares with all of its sessions. */
export interface SessionHost {
  readonly service: ServiceDef;
  readonly cellName: string;
  /** Handlers indexed by method id. */
  readonly handlers: ReadonlyArray<AnyHandler>;
  /** By method id, 1 when the handler declares its input alone (it gets no CallContext). */
  readonly contextFree: Uint8Array;
  readonly maxFrameSize: number;
  readonly maxInFlight: number;
  readonly metrics: MembraneMetrics;
  /** The default call observer: per-method counters and latency histograms (src/metrics). */
  readonly callMetrics: CallMetrics;
  /** The other call observer (the tap) while someone watches, else null: the hot path tests only this field. */
  readonly observer: CallObserver | null;
  readonly controlHandlers: ReadonlyMap<number, ControlFrameHandler>;
  readonly startedAt: number;
  readonly draining: boolean;
  /** `metrics` answers only sessions from the operator's inspection socket. */
  readonly metricsForOperatorOnly: boolean;
  /**
   * A peer's HELLO passed the version and contract checks: give it a connection slot, or say why not
   * (E_OVERLOADED). `inspection`: fingerprint 0, only built-in methods.
   */
  admitPeer(session: ServerSession, inspection: boolean): CellError | null;
  sessionClosed(session: ServerSession): void;
  /** Shared-memory transport state for the metrics method. */
  shmStatus(): Record<string, unknown>;
  /** The cell's answer to a HELLO's attestation challenge (docs/PROTOCOL.md § 2.3.1), if it has an identity. */
  attest(challenge: Buffer): Buffer | undefined;
  connectionCount(): number;
}

export interface MembraneMetrics {
  connectionsTotal: number;
  connectionsRefused: number;
  requests: number;
  replies: number;
  errors: number;
  shed: number;
  inFlight: number;
  protocolErrors: number;
}

// biome-ignore lint/suspicious/noExplicitAny: handlers are typed at the Membrane's public surface
export type AnyHandler = (input: any, ctx: CallContext) => unknown;

/**
 * What a handler gets besides its input view: the method, the request id, the cell, the message
 * buffer and a signal that aborts when the caller gives up or its connection drops.
 */
export interface CallContext {
  readonly method: MethodDef;
  readonly requestId: number;
  /** The cell serving the call. */
  readonly cell: string;
  /** The request's payload bytes. Borrowed ones are valid until the handler settles (see Vesicle). */
  readonly vesicle: Vesicle;
  /**
   * Aborts when the caller gives up on this call (its timeout or AbortSignal sends CANCEL; reason
   * E_ABORTED) or when the connection it came on closes (E_CONNECTION_LOST). Stop the work then:
   * the caller no longer waits for the reply and drops it.
   */
  readonly signal: AbortSignal;
}

/** One call in flight on a session: the CallContext its handler sees, and what the session tracks. */
class ServerCall implements CallContext {
  readonly method: MethodDef;
  readonly requestId: number;
  readonly session: ServerSession;
  bytes: Buffer;
  start: number;
  end: number;
  owned: boolean;
  /** The carrier that lent the request's memory and the token to give it back by, or null. */
  loan: FrameLoan | null;
  token: number;
  /** The request's Vesicle, made when the handler first reads `vesicle`. */
  lent: Vesicle | null;
  /** performance.now() when the request was dispatched. */
  startedAt: number;
  /** What the observer's `begin` returned (the tap's decoded request), kept only while one watches. */
  observed: unknown;
  /** This call's own controller, made when the handler first reads `signal`. */
  controller: AbortController | null;
  /** The call has been answered (a signal read after that is never aborted). */
  finished: boolean;

  constructor(
    session: ServerSession,
    method: MethodDef,
    requestId: number,
    bytes: Buffer,
    start: number,
    end: number,
    owned: boolean,
    loan: FrameLoan | null,
    token: number,
    startedAt: number,
    observed: unknown,
  ) {
    this.session = session;
    this.method = method;
    this.requestId = requestId;
    this.bytes = bytes;
    this.start = start;
    this.end = end;
    this.owned = owned;
    this.loan = loan;
    this.token = token;
    this.lent = null;
    this.startedAt = startedAt;
    this.observed = observed;
    this.controller = null;
    this.finished = false;
  }

  get vesicle(): Vesicle {
    if (this.lent === null) {
      const length = this.end - this.start;
      // Released (or retained) by the handler, a lent request goes back to its carrier at once.
      this.lent = this.owned
        ? new Vesicle(this.bytes, this.start, length, false, null)
        : Vesicle.borrowed(this.bytes, this.start, length, this.loan === null ? null : () => this.giveBack());
    }
    return this.lent;
  }

  /** The call is over: its request's memory goes back to the carrier, its Vesicle reads released. */
  release(): void {
    if (this.lent !== null) this.lent.release();
    else this.giveBack();
  }

  private giveBack(): void {
    const loan = this.loan;
    if (loan === null) return;
    this.loan = null;
    loan.done(this.token);
  }

  get signal(): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController();
      this.session.watch(this);
    }
    return this.controller.signal;
  }

  get cell(): string {
    return this.session.host.cellName;
  }
}

/**
 * A HELLO's maximum frame below this is raised to it: every reply needs room for its header and an
 * error message (an announced limit of a few bytes would make every call fail).
 */
const MIN_PEER_FRAME = 1024;

const AWAITING_HELLO = 0;
const OPEN = 1;
const CLOSED = 2;

/**
 * One peer connection's server logic, independent of the carrier: frames come in through `onFrame`
 * (or `deliver`, which adds a release hook for borrowed memory), replies go out through a FrameSink.
 * Synchronous handlers are answered inline with no promise and no allocation beyond the context.
 */
export class ServerSession implements FrameReceiver {
  readonly host: SessionHost;
  /** Replaced by a ring-backed sink when the connection upgrades to shared memory (switchCarrier). */
  sink: FrameSink;
  /** Which carrier the connection uses and, if it stayed on the socket, why. */
  readonly transportStatus: TransportStatus = { transport: 'socket', shmDeclined: undefined };
  readonly transport: SessionTransport;
  /** Peer's handshake, once received. */
  peerName = '';
  peerPid = 0;
  /** The peer's uid (SO_PEERCRED) when the carrier knows it, else -1; set before HELLO. */
  peerUid = -1;
  /** The connection slot the Membrane gave this session at HELLO (see ConnectionSlots). */
  slot = 0;
  /** Came in on the operator's inspection socket (see SessionHost.metricsForOperatorOnly). */
  operator = false;
  /** Largest frame the peer accepts (its HELLO), header included: larger replies become errors. */
  peerMaxFrame = DEFAULT_MAX_FRAME;
  /** Frames arrived since the idle sweep last looked; `quietSince` is when it last saw none. */
  seen = true;
  quietSince = 0;
  inFlight = 0;
  private state = AWAITING_HELLO;
  private builtinsOnly = false;
  private goawaySent = false;
  private peerEnded = false;
  /** Calls in flight whose handler holds their signal, by request id (for CANCEL and close). */
  private watched: Map<number, ServerCall> | null = null;
  private forgotten = false;
  /**
   * performance.now() when the carrier's current chunk arrived, or 0 outside a chunk. Synchronous
   * calls answered within one chunk share one clock read at its end (arrival → reply handed to the
   * carrier), so per-request timing costs an array store rather than two clock reads.
   */
  private batchStart = 0;
  private batchMethods = new Int32Array(256);
  private batchLength = 0;
  /** Called when the handshake succeeded, so the carrier can raise its frame limit. */
  onOpen: ((session: ServerSession) => void) | null = null;

  constructor(host: SessionHost, sink: FrameSink, transport: SessionTransport) {
    this.host = host;
    this.sink = sink;
    this.transport = transport;
  }

  /** @internal A call's handler asked for its signal: CANCEL or the connection closing aborts it. */
  watch(ctx: ServerCall): void {
    const controller = ctx.controller as AbortController;
    if (ctx.finished) return;
    if (this.state === CLOSED) {
      controller.abort(connectionGone(this.host.cellName));
      return;
    }
    if (this.watched === null) this.watched = new Map();
    this.watched.set(ctx.requestId, ctx);
  }

  private unwatch(ctx: ServerCall): void {
    if (this.watched !== null && this.watched.get(ctx.requestId) === ctx) this.watched.delete(ctx.requestId);
  }

  /** CANCEL: the caller stopped waiting for `requestId` (timeout or abort); its handler's signal fires. */
  private cancel(requestId: number): void {
    const ctx = this.watched?.get(requestId);
    if (ctx === undefined) return; // finished already, or the handler never looked at its signal
    this.watched?.delete(requestId);
    ctx.controller?.abort(
      new CellError('E_ABORTED', `the caller gave up on its call to '${ctx.method.name}' (timeout or abort).`, {
        cell: this.host.cellName,
        fix: 'stop the work: the caller drops the reply.',
        details: { requestId },
      }),
    );
  }

  get isOpen(): boolean {
    return this.state === OPEN;
  }

  /** The peer opened the connection without a contract (fingerprint 0): built-in methods only. */
  get inspection(): boolean {
    return this.builtinsOnly;
  }

  onFrame(
    type: number,
    flags: number,
    method: number,
    requestId: number,
    bytes: Buffer,
    start: number,
    end: number,
    owned: boolean,
  ): void {
    if (type === FrameType.REQUEST && this.state === OPEN && requestId !== 0) {
      this.dispatch(method, requestId, bytes, start, end, owned, null, 0);
      return;
    }
    this.slowFrame(type, flags, method, requestId, bytes, start, end, owned, null, 0);
  }

  /**
   * Entry point for carriers whose payload memory must be given back (a shared-memory ring slot):
   * `loan.done(token)` runs when the handler settles (or at once if the frame is not a request).
   */
  deliverFrame(
    type: number,
    flags: number,
    method: number,
    requestId: number,
    bytes: Buffer,
    start: number,
    end: number,
    loan: FrameLoan,
    token: number,
  ): void {
    if (type === FrameType.REQUEST && this.state === OPEN && requestId !== 0) {
      this.dispatch(method, requestId, bytes, start, end, false, loan, token);
      return;
    }
    try {
      this.slowFrame(type, flags, method, requestId, bytes, start, end, false, loan, token);
    } finally {
      if (type !== FrameType.REQUEST) loan.done(token);
    }
  }

  /**
   * From now on replies go out through `sink`, another carrier's (the shared-memory rings the peer
   * picked up); the Membrane installs it when the upgrade returns it.
   */
  switchCarrier(sink: FrameSink, transport: Transport): void {
    this.sink = sink;
    this.transportStatus.transport = transport;
    this.transportStatus.shmDeclined = undefined;
  }

  /** The connection stays on its carrier: `why` is what the metrics report. */
  stayOnCarrier(why: string): void {
    this.transportStatus.shmDeclined = why;
  }

  /** The client wrote garbage into its ring: close the connection with the reason. */
  ringCorrupt(err: CellError): void {
    if (err.code === 'E_CONNECTION_LOST') {
      // The client let go of its rings: it is gone, there is nobody to tell.
      this.transport.destroy();
      this.closed();
      return;
    }
    this.fatal(err);
  }

  private slowFrame(
    type: number,
    flags: number,
    method: number,
    requestId: number,
    bytes: Buffer,
    start: number,
    end: number,
    owned: boolean,
    loan: FrameLoan | null,
    token: number,
  ): void {
    if (this.state === CLOSED) return;
    if (this.state === AWAITING_HELLO) {
      if (type !== FrameType.HELLO) {
        this.fatal(
          new CellError('E_PROTOCOL', `expected HELLO as the first frame, got type 0x${type.toString(16)}.`, {
            cell: this.host.cellName,
            fix: 'connect with Synapse, or send HELLO first (docs/PROTOCOL.md § 2).',
          }),
        );
        return;
      }
      this.hello(bytes, start, end);
      return;
    }
    if (type === FrameType.REQUEST) {
      if (requestId === 0) {
        // An ERROR for it would carry id 0, which means the whole connection (§ 2.1).
        this.fatal(
          new CellError('E_PROTOCOL', 'request id 0 is reserved for the connection itself.', {
            cell: this.host.cellName,
            fix: 'number requests from 1 (docs/PROTOCOL.md § 2.4).',
          }),
        );
        return;
      }
      this.dispatch(method, requestId, bytes, start, end, owned, loan, token);
      return;
    }
    if (type === FrameType.CANCEL) {
      this.cancel(requestId);
      return;
    }
    if (type >= CONTROL_FRAME_FIRST && type <= CONTROL_FRAME_LAST) {
      const control = this.host.controlHandlers.get(type);
      if (control !== undefined) {
        control(this, flags, method, requestId, bytes, start, end);
        return;
      }
    }
    this.fatal(
      new CellError('E_PROTOCOL', `unexpected frame type 0x${type.toString(16)} from a client.`, {
        cell: this.host.cellName,
        fix: 'the client speaks a different protocol version or a transport extension this cell lacks.',
      }),
    );
  }

  private hello(bytes: Buffer, start: number, end: number): void {
    const host = this.host;
    let h: ReturnType<typeof decodeHandshake>;
    try {
      h = decodeHandshake(bytes, start, end);
    } catch (err) {
      this.fatal(err as CellError);
      return;
    }
    this.peerName = h.name;
    this.peerPid = h.pid;
    this.peerMaxFrame = h.maxFrame === 0 ? DEFAULT_MAX_FRAME : Math.max(h.maxFrame, MIN_PEER_FRAME);
    const inspection = h.fingerprint === 0n;
    // Over the limit: ERROR instead of WELCOME (§ 2.3). A peer that then fails the checks below gives
    // its slot back when it closes.
    const refused = host.admitPeer(this, inspection);
    if (refused !== null) {
      this.refuse(refused);
      return;
    }
    // The WELCOME goes out even on a mismatch so the client can name both fingerprints.
    this.sink.flush();
    // Attest only when asked: a client that sends flags 0 gets the plain WELCOME.
    const challenge = helloChallenge(h);
    const attestation = challenge === undefined ? undefined : host.attest(challenge);
    const welcome = encodeHandshake({
      version: PROTOCOL_VERSION,
      fingerprint: host.service.fingerprint,
      name: host.service.name,
      // An inspection connection carries empty built-in requests only (§ 2.1).
      maxFrame: inspection ? MAX_HANDSHAKE_FRAME : host.maxFrameSize,
      maxInFlight: host.maxInFlight,
      pid: process.pid,
      flags: attestation === undefined ? 0 : HandshakeFlag.ATTEST,
      trailer: attestation,
    });
    this.writeCold(encodeFrame(FrameType.WELCOME, 0, 0, welcome));
    if (h.version !== PROTOCOL_VERSION) {
      this.fatal(
        new CellError(
          'E_PROTOCOL',
          `protocol version ${h.version} is not supported (this cell speaks ${PROTOCOL_VERSION}).`,
          { cell: host.cellName, fix: 'use the same Cell release on both sides.' },
        ),
      );
      return;
    }
    if (h.fingerprint === 0n) {
      this.builtinsOnly = true;
    } else if (h.fingerprint !== host.service.fingerprint || h.name !== host.service.name) {
      this.fatal(schemaMismatch(host.cellName, host.service.name, host.service.fingerprint, h.name, h.fingerprint));
      return;
    }
    this.state = OPEN;
    if (this.onOpen !== null) this.onOpen(this);
    if (host.draining) this.goaway();
  }

  private dispatch(
    method: number,
    id: number,
    bytes: Buffer,
    start: number,
    end: number,
    owned: boolean,
    loan: FrameLoan | null,
    token: number,
  ): void {
    const host = this.host;
    const metrics = host.metrics;
    metrics.requests++;
    if (method >= BUILTIN_METHOD_FIRST) {
      this.builtin(method, id);
      if (loan !== null) loan.done(token);
      return;
    }
    const def = host.service.byId[method];
    if (def === undefined || this.builtinsOnly) {
      this.errorReply(id, method, this.notServed(method, def));
      if (loan !== null) loan.done(token);
      return;
    }
    const calls = host.callMetrics;
    const t0 = this.batchStart !== 0 ? this.batchStart : performance.now();
    calls.begin(method, bytes, start, end - start);
    if (this.inFlight >= host.maxInFlight) {
      this.shed(method, id, end - start);
      if (loan !== null) loan.done(token);
      return;
    }
    let input: unknown;
    try {
      input = def.input.view(bytes, start, end - start);
    } catch (err) {
      this.errorReply(id, method, err);
      calls.end(method, id, undefined, undefined, err, (performance.now() - t0) * 1e6, end - start, -1);
      if (loan !== null) loan.done(token);
      return;
    }
    this.run(def, input, id, bytes, start, end, owned, loan, token, t0);
  }

  /** Runs the handler of a dispatched request and answers it now, or when its promise settles. */
  private run(
    def: MethodDef,
    input: unknown,
    id: number,
    bytes: Buffer,
    start: number,
    end: number,
    owned: boolean,
    loan: FrameLoan | null,
    token: number,
    t0: number,
  ): void {
    const host = this.host;
    const method = def.id;
    const observer = host.observer;
    const observed =
      observer !== null && observer.wanted[method] === 1
        ? observer.begin(method, bytes, start, end - start)
        : undefined;
    // A handler declared with its input alone can't reach its context: none is made for it unless
    // its call goes on after the handler returns.
    let ctx =
      host.contextFree[method] === 1
        ? undefined
        : new ServerCall(this, def, id, bytes, start, end, owned, loan, token, t0, observed);
    let result: unknown;
    try {
      result = host.handlers[method](input, ctx as ServerCall);
    } catch (err) {
      if (!isCellError(err)) logHandlerError(host.cellName, def.name, err);
      this.errorReply(id, method, err);
      if (ctx !== undefined) this.finishCall(ctx, undefined, err, -1);
      else this.finish(method, id, t0, end - start, observed, undefined, err, -1);
      if (loan !== null) loan.done(token);
      return;
    }
    if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
      ctx ??= new ServerCall(this, def, id, bytes, start, end, owned, loan, token, t0, observed);
      this.pending(ctx, result as PromiseLike<unknown>);
      return;
    }
    const replyBytes = this.reply(def, id, result);
    if (ctx !== undefined) {
      this.finishCall(ctx, result, undefined, replyBytes);
      ctx.release();
      return;
    }
    this.finish(method, id, t0, end - start, observed, result, undefined, replyBytes);
    if (loan !== null) loan.done(token);
  }

  /** Why a request for `method` can't run on this connection. */
  private notServed(method: number, def: MethodDef | undefined): CellError {
    const cell = this.host.cellName;
    return def === undefined
      ? new CellError('E_UNKNOWN_METHOD', `method id ${method} does not exist.`, {
          cell,
          fix: `the caller's contract differs from the cell's; compare fingerprints (\`cell genome ${cell}\`).`,
        })
      : new CellError('E_SCHEMA_MISMATCH', 'this connection was opened without a contract (fingerprint 0).', {
          cell,
          fix: 'open the connection with the service definition to call its methods.',
        });
  }

  /** Refuses a request over the connection's in-flight limit: counted, answered E_OVERLOADED, not run. */
  private shed(method: number, id: number, bytesIn: number): void {
    const host = this.host;
    host.metrics.shed++;
    host.callMetrics.end(method, id, undefined, undefined, undefined, 0, bytesIn, -1);
    this.errorReply(
      id,
      method,
      new CellError('E_OVERLOADED', `more than ${host.maxInFlight} requests in flight on one connection.`, {
        cell: host.cellName,
        fix: 'lower the caller’s concurrency or raise maxInFlight on the Membrane; this call was not run.',
      }),
    );
  }

  /** The handler returned a promise: the call stays in flight until it settles. */
  private pending(ctx: ServerCall, result: PromiseLike<unknown>): void {
    this.inFlight++;
    this.host.metrics.inFlight++;
    result.then(
      (value) => this.settled(ctx, value),
      (err) => this.failed(ctx, err),
    );
  }

  /** Hands a finished call to the metrics and, when one watches this method, the other observer. */
  private finishCall(ctx: ServerCall, value: unknown, err: unknown, replyBytes: number): void {
    ctx.finished = true;
    if (ctx.controller !== null) this.unwatch(ctx);
    this.finish(ctx.method.id, ctx.requestId, ctx.startedAt, ctx.end - ctx.start, ctx.observed, value, err, replyBytes);
  }

  private finish(
    id: number,
    requestId: number,
    startedAt: number,
    bytesIn: number,
    observed: unknown,
    value: unknown,
    err: unknown,
    replyBytes: number,
  ): void {
    // An observer whose filters rule this method out costs it nothing, like no observer at all.
    const observer = this.host.observer !== null && this.host.observer.wanted[id] === 1 ? this.host.observer : null;
    if (this.batchStart !== 0 && observer === null) {
      this.host.callMetrics.endUntimed(id, replyBytes);
      if (this.batchLength === this.batchMethods.length) {
        const grown = new Int32Array(this.batchMethods.length * 2);
        grown.set(this.batchMethods);
        this.batchMethods = grown;
      }
      this.batchMethods[this.batchLength++] = id;
      return;
    }
    const ns = (performance.now() - startedAt) * 1e6;
    this.host.callMetrics.end(id, requestId, undefined, value, err, ns, bytesIn, replyBytes);
    if (observer !== null) {
      observer.end(id, requestId, observed, replyBytes < 0 ? undefined : value, err, ns, bytesIn, replyBytes);
    }
  }

  private settled(ctx: ServerCall, value: unknown): void {
    // A closed session already took its calls off the shared in-flight count.
    if (this.forgotten) {
      this.finishCall(ctx, undefined, connectionGone(this.host.cellName), -1);
      ctx.release();
      return;
    }
    this.inFlight--;
    this.host.metrics.inFlight--;
    // Released after the reply is encoded (the value may still view the request's bytes, in memory the
    // peer reuses) but before it goes out: a caller that sends its next big request as soon as it
    // has this reply finds its big slot free again.
    const sink = this.sink;
    sink.cork?.();
    try {
      if (this.state !== CLOSED) this.finishCall(ctx, value, undefined, this.reply(ctx.method, ctx.requestId, value));
      else this.finishCall(ctx, undefined, connectionGone(this.host.cellName), -1);
      ctx.release();
    } finally {
      sink.uncork?.();
    }
    this.maybeFinish();
  }

  private failed(ctx: ServerCall, err: unknown): void {
    ctx.release();
    if (this.forgotten) {
      this.finishCall(ctx, undefined, err, -1);
      return;
    }
    this.inFlight--;
    this.host.metrics.inFlight--;
    if (!isCellError(err)) logHandlerError(this.host.cellName, ctx.method.name, err);
    if (this.state !== CLOSED) this.errorReply(ctx.requestId, ctx.method.id, err);
    this.finishCall(ctx, undefined, err, -1);
    this.maybeFinish();
  }

  /** Encodes a reply straight into the sink; returns its payload size, or -1 if it became an error reply. */
  private reply(def: MethodDef, id: number, value: unknown): number {
    const out = def.output;
    const sink = this.sink;
    let o = 0;
    let size = 0;
    try {
      size = out.sizeOf(value);
      if (size + HEADER_SIZE > this.peerMaxFrame)
        throw this.tooLargeForPeer(`the reply of '${def.name}'`, size + HEADER_SIZE);
      o = sink.reserve(HEADER_SIZE + size);
      const end = out.encodeInto(value, sink.buf, writeHeader(sink.buf, o, size, FrameType.REPLY, def.id, id));
      sink.commit(end);
    } catch (err) {
      this.errorReply(
        id,
        def.id,
        isCellError(err)
          ? err
          : new CellError('E_ENCODE', `the handler of '${def.name}' returned a value its output schema rejects.`, {
              cell: this.host.cellName,
              cause: err,
            }),
      );
      return -1;
    }
    this.host.metrics.replies++;
    return size;
  }

  /** Sends an ERROR frame for one request; the connection stays usable. */
  errorReply(id: number, method: number, err: unknown): void {
    this.host.metrics.errors++;
    if (this.state === CLOSED) return;
    let payload = encodeErrorPayload(toErrorPayload(err));
    if (payload.length + HEADER_SIZE > this.peerMaxFrame) {
      payload = encodeErrorPayload(
        toErrorPayload(this.tooLargeForPeer('the error of this call', payload.length + HEADER_SIZE)),
      );
    }
    this.writeCold(encodeFrame(FrameType.ERROR, method, id, payload));
  }

  /** `what` would exceed the maximum frame the caller announced in its HELLO: that call fails instead. */
  private tooLargeForPeer(what: string, size: number): CellError {
    return new CellError(
      'E_FRAME_TOO_LARGE',
      `${what} is ${size} bytes; the caller accepts at most ${this.peerMaxFrame}.`,
      {
        cell: this.host.cellName,
        fix: "raise the caller's maxFrameSize, or return less per call.",
        details: { size, limit: this.peerMaxFrame },
      },
    );
  }

  private builtin(method: number, id: number): void {
    const host = this.host;
    let body: unknown;
    if (method === BuiltinMethod.GENOME) {
      body = {
        cell: host.cellName,
        service: host.service.name,
        protocol: PROTOCOL_VERSION,
        fingerprint: fingerprintHex(host.service.fingerprint),
        genome: host.service.genome,
        methods: host.service.byId.map((m) => ({
          id: m.id,
          name: m.name,
          input: fingerprintHex(m.input.fingerprint),
          output: fingerprintHex(m.output.fingerprint),
        })),
      };
    } else if (method === BuiltinMethod.HEALTH) {
      body = {
        status: host.draining ? 'draining' : 'ok',
        cell: host.cellName,
        pid: process.pid,
        uptimeMs: Date.now() - host.startedAt,
        connections: host.connectionCount(),
        inFlight: host.metrics.inFlight,
      };
    } else if (method === BuiltinMethod.METRICS) {
      if (host.metricsForOperatorOnly && !this.operator) {
        this.errorReply(
          id,
          method,
          new CellError('E_PERMISSION_DENIED', "the cell's metrics are for the operator only.", {
            cell: host.cellName,
            fix: 'read them through the Root: `cell metrics`, `cell top` or `cell up --metrics-port`.',
          }),
        );
        return;
      }
      const mem = process.memoryUsage();
      body = {
        cell: host.cellName,
        pid: process.pid,
        uptimeMs: Date.now() - host.startedAt,
        connections: host.connectionCount(),
        ...host.metrics,
        shm: host.shmStatus(),
        service: host.service.name,
        since: host.callMetrics.metrics.since,
        methods: host.callMetrics.metrics.snapshot().methods,
        rssBytes: mem.rss,
        heapUsedBytes: mem.heapUsed,
      };
    } else {
      this.errorReply(
        id,
        method,
        new CellError('E_UNKNOWN_METHOD', `built-in method 0x${method.toString(16)} does not exist.`, {
          cell: host.cellName,
          fix: 'the caller is newer than this cell; upgrade the cell.',
        }),
      );
      return;
    }
    const json = Buffer.from(JSON.stringify(body, bigintToString));
    if (json.length + HEADER_SIZE > this.peerMaxFrame) {
      this.errorReply(
        id,
        method,
        this.tooLargeForPeer(`the reply of built-in 0x${method.toString(16)}`, json.length + HEADER_SIZE),
      );
      return;
    }
    this.writeCold(encodeFrame(FrameType.REPLY, method, id, json));
    host.metrics.replies++;
  }

  /** The carrier is about to feed one chunk of frames (see batchStart); `at` if it read the clock already. */
  beginBatch(at: number = performance.now()): void {
    this.batchStart = at;
    this.seen = true;
  }

  /** The chunk's frames are handled and its replies handed to the carrier: time them all at once. */
  endBatch(): void {
    const n = this.batchLength;
    if (n > 0) {
      this.host.callMetrics.recordBatch(this.batchMethods, n, (performance.now() - this.batchStart) * 1e6);
      this.batchLength = 0;
    }
    this.batchStart = 0;
  }

  /** Appends a prebuilt frame after everything already queued. */
  writeCold(frame: Uint8Array): void {
    const o = this.sink.reserve(frame.length);
    this.sink.buf.set(frame, o);
    this.sink.commit(o + frame.length);
  }

  /** Tells the client to open a new connection for new calls; in-flight calls still complete here. */
  goaway(): void {
    if (this.goawaySent || this.state !== OPEN) return;
    this.goawaySent = true;
    this.writeCold(encodeFrame(FrameType.GOAWAY, 0, 0));
    this.sink.flush();
  }

  /** The peer half-closed: finish in-flight calls, then close our side. */
  peerEnd(): void {
    this.peerEnded = true;
    if (this.inFlight > 0) this.probePeer();
    this.maybeFinish();
  }

  /**
   * End of stream from the peer is either a half-close (it still reads its replies) or the end of the
   * peer (a crash, a destroyed socket): only a write tells them apart. GOAWAY is harmless to a
   * half-closed caller (it sends nothing more anyway); to a dead one the write fails, the connection
   * closes, and the calls still running see their signal abort instead of running on for nobody.
   * It goes on the socket itself even when replies travel through shared memory.
   */
  private probePeer(): void {
    if (this.goawaySent || this.state !== OPEN) return;
    this.goawaySent = true;
    const frame = encodeFrame(FrameType.GOAWAY, 0, 0);
    this.sink.flush();
    const carrier = this.transport.carrier as { write?: unknown; destroyed?: boolean } | null;
    if (carrier !== null && typeof carrier.write === 'function' && carrier.destroyed !== true) {
      (carrier as { write(b: Uint8Array): boolean }).write(frame);
    } else {
      this.writeCold(frame);
      this.sink.flush();
    }
  }

  private maybeFinish(): void {
    if (this.peerEnded && this.inFlight === 0 && this.state !== CLOSED) {
      this.sink.flush();
      this.transport.end();
    }
  }

  /** A connection-level error: report it with requestId 0, then close once it is sent. */
  fatal(err: unknown): void {
    if (this.state === CLOSED) return;
    this.host.metrics.protocolErrors++;
    this.closeWith(err);
  }

  /** Turns the peer away at HELLO (connection limits): ERROR instead of WELCOME, then close. */
  private refuse(err: CellError): void {
    this.host.metrics.connectionsRefused++;
    this.closeWith(err);
  }

  private closeWith(err: unknown): void {
    this.writeCold(encodeFrame(FrameType.ERROR, 0, 0, encodeErrorPayload(toErrorPayload(err))));
    this.sink.flush();
    this.state = CLOSED;
    this.transport.end(true);
    this.closed();
  }

  /**
   * The idle sweep (Membrane, every quarter of `timeoutMs`): an open connection with no call in flight
   * that received nothing for `timeoutMs` gets GOAWAY (a Synapse then half-closes it and opens a fresh
   * connection for its next call); one still quiet `graceMs` after that is closed.
   */
  idleCheck(now: number, timeoutMs: number, graceMs: number): void {
    if (this.state !== OPEN) return;
    if (this.seen || this.inFlight > 0) {
      this.seen = false;
      this.quietSince = now;
      return;
    }
    const quiet = now - this.quietSince;
    if (!this.goawaySent) {
      if (quiet >= timeoutMs) {
        this.goaway();
        this.quietSince = now;
      }
      return;
    }
    if (quiet >= graceMs) {
      this.sink.flush();
      this.state = CLOSED;
      this.transport.end(true);
      this.closed();
    }
  }

  /** The carrier is gone: abort handlers' signals and forget the session. Idempotent. */
  closed(): void {
    if (this.watched !== null) {
      const calls = [...this.watched.values()];
      this.watched = null;
      for (const ctx of calls) ctx.controller?.abort(connectionGone(this.host.cellName));
    }
    this.state = CLOSED;
    if (this.forgotten) return;
    this.forgotten = true;
    this.host.sessionClosed(this);
  }
}

function connectionGone(cell: string): CellError {
  return new CellError('E_CONNECTION_LOST', 'the caller’s connection closed before the call finished.', { cell });
}

export function schemaMismatch(
  cell: string,
  serverName: string,
  serverFp: bigint,
  clientName: string,
  clientFp: bigint,
): CellError {
  return new CellError(
    'E_SCHEMA_MISMATCH',
    `the caller was built against '${clientName}' ${fingerprintHex(clientFp)} but the cell serves '${serverName}' ${fingerprintHex(serverFp)}.`,
    {
      cell,
      fix: `rebuild the caller against the cell's current contract (see \`cell genome ${cell}\`), or run the cell version the caller expects.`,
      details: { expected: fingerprintHex(clientFp), actual: fingerprintHex(serverFp), clientName, serverName },
    },
  );
}

/** At most this many handler stacks per second reach stderr; the rest are counted. */
const HANDLER_LOG_PER_SECOND = 10;
let handlerLogWindow = 0;
let handlerLogCount = 0;
let handlerLogSuppressed = 0;

/**
 * A handler that threw something other than a CellError has a bug: the caller gets E_REMOTE with
 * the message, and the cell's stderr (its log under the Root) gets the stack — mapped to the cell's
 * .ts source when Node runs with --enable-source-maps, as the Root's cells do.
 */
function logHandlerError(cell: string, method: string, err: unknown): void {
  const now = Math.floor(Date.now() / 1000);
  if (now !== handlerLogWindow) {
    if (handlerLogSuppressed > 0) {
      process.stderr.write(`cell ${cell}: ${handlerLogSuppressed} more handler errors not shown\n`);
    }
    handlerLogWindow = now;
    handlerLogCount = 0;
    handlerLogSuppressed = 0;
  }
  if (++handlerLogCount > HANDLER_LOG_PER_SECOND) {
    handlerLogSuppressed++;
    return;
  }
  const text = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err);
  process.stderr.write(`cell ${cell}: method '${method}' threw: ${text}\n`);
}

export function toErrorPayload(err: unknown): ErrorPayload {
  if (isCellError(err)) {
    const p: ErrorPayload = { code: err.code, message: err.message };
    if (err.cell !== undefined) p.cell = err.cell;
    if (err.method !== undefined) p.method = err.method;
    if (err.fix !== undefined) p.fix = err.fix;
    if (err.details !== undefined) p.details = err.details;
    return p;
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'E_REMOTE', message };
}
