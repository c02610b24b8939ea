import { type KeyObject, randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { CellError, type CellErrorCode, type CellErrorOptions, isCellError } from '../errors/index.js';
import {
  ATTEST_CHALLENGE_BYTES,
  CONTROL_FRAME_FIRST,
  CONTROL_FRAME_LAST,
  type ControlFrameCallback,
  DEFAULT_MAX_FRAME,
  decodeErrorPayload,
  decodeHandshake,
  type ErrorPayload,
  encodeFrame,
  encodeHandshake,
  FrameDecoder,
  type FrameReceiver,
  FrameType,
  fingerprintHex,
  type Handshake,
  HandshakeFlag,
  HEADER_SIZE,
  PROTOCOL_VERSION,
  type Transport,
  type TransportStatus,
  welcomeAttestation,
  writeHeader,
} from '../frame/index.js';
import { StreamFrameSink } from '../frame/writer.js';
import { verifyAttestation } from '../identity/index.js';
import type { MethodDef, ServiceDef } from '../service/types.js';
import { FrameControl, onUpgradeAnswer, type StreamSink, upgradeClient } from '../shm/wire.js';
import { BatchCall, OWN_TIMER, PendingCall, PendingTable, UNSTAMPED } from './pending.js';
import { SendWindow } from './window.js';

/** An error the cell's handler raised (or the cell reported for one call), carried back to the caller. */
export class RemoteError extends CellError {
  readonly remote = true;
  constructor(code: CellErrorCode, message: string, options: CellErrorOptions) {
    super(code, message, options);
    this.name = 'RemoteError';
  }
}

/** How often the sweep looks for calls past their default timeout. */
const SWEEP_MS = 50;

/**
 * The caller's error for an ERROR frame: the cell's own code, cause and fix as fields. An error about
 * another cell (a Root's denial about the cell it was asked to spawn) keeps that cell and no method;
 * otherwise it concerns this cell and the method that was called.
 */
function remoteError(e: ErrorPayload, cell: string, method: string | undefined, details = e.details): RemoteError {
  const other = e.cell !== undefined && e.cell !== cell;
  return new RemoteError(e.code, e.message, {
    cell: e.cell ?? cell,
    method: e.method ?? (other ? undefined : method),
    fix: e.fix,
    details,
  });
}

// One shared executor: avoids allocating a closure per call just to capture resolve/reject.
let nextResolve: (v: unknown) => void = () => {};
let nextReject: (e: unknown) => void = () => {};
function capture(resolve: (v: unknown) => void, reject: (e: unknown) => void): void {
  nextResolve = resolve;
  nextReject = reject;
}

export interface CallOptions {
  /** Per-call timeout in ms (default: the Synapse's, 30 s). */
  timeoutMs?: number;
  /** Cancels the call: it rejects with E_ABORTED and its late reply is ignored. */
  signal?: AbortSignal;
}

export interface ConnectionOptions {
  cell: string;
  service: ServiceDef;
  /** 0n asks for a contract-less connection (built-in methods only). */
  fingerprint: bigint;
  timeoutMs: number;
  maxFrameSize: number;
  /** How long the handshake may take (default 5 s). */
  handshakeTimeoutMs?: number;
  /** Ask a same-user cell for the shared-memory transport after the handshake (default true). */
  shm?: boolean;
  /** The Unix socket path the stream was opened on, if known (for the shared-memory pickup). */
  socketPath?: string | undefined;
  /**
   * Ask the server to prove it is `cell` (docs/PROTOCOL.md § 2.3.1) and check the proof with this
   * Root public key; a server that does not is refused with E_IDENTITY_MISMATCH. Undefined: don't ask.
   */
  verifyIdentity?: KeyObject | undefined;
  /** Why the identity is not checked when `verifyIdentity` is undefined (reported in the status). */
  unverifiedBecause?: string | undefined;
}

/** Whether the process at the other end proved the identity of the cell it was dialled as. */
export type IdentityStatus = 'verified' | `unverified (${string})`;
/**
 * A stream whose carrier moves whole frames itself (a message bus) instead of bytes: the connection
 * writes its frames into `frameSink`, and the carrier hands the cell's frames to the handler given to
 * `bindFrames`. The Duplex then only stands for the connection's lifetime (`end()` leaves it, 'close'
 * ends it), so ids, timeouts, CANCEL, `many`, GOAWAY and error codes stay this file's, whatever
 * carries the frames. A Connector may return such a stream (see src/nats).
 */
export interface FrameCarrier {
  readonly frameSink: StreamSink;
  /** What `transportStatus.transport` reports. */
  readonly transportName: Transport;
  bindFrames(handler: FrameReceiver): void;
}

function frameCarrierOf(stream: Duplex): FrameCarrier | null {
  const c = stream as Duplex & Partial<FrameCarrier>;
  return c.frameSink !== undefined && typeof c.bindFrames === 'function' ? (c as FrameCarrier) : null;
}

const HANDSHAKE = 0;
const OPEN = 1;
const DRAINING = 2;
const CLOSED = 3;

/**
 * One multiplexed client connection over any duplex stream: requests carry ids, replies may arrive in
 * any order, writes coalesce per tick. Calls in flight when the stream dies fail with
 * E_CONNECTION_LOST; nothing is retried, because a request that reached the cell may have run.
 */
export class ClientConnection implements FrameReceiver {
  readonly stream: Duplex;
  readonly cell: string;
  readonly options: ConnectionOptions;
  server: Handshake | null = null;
  onClose: ((conn: ClientConnection) => void) | null = null;
  onGoaway: ((conn: ClientConnection) => void) | null = null;
  /**
   * Receives frames in the control range (0x10–0x1F) from the cell, e.g. the shared-memory upgrade
   * answer. Without a handler such a frame is a protocol error.
   */
  onControlFrame: ControlFrameCallback<number> | null = null;
  /** The socket's sink, or a ring-backed one after the shared-memory upgrade. */
  sink: StreamSink;
  /** Which carrier the connection uses and, if it stayed on the socket, why. */
  transportStatus: TransportStatus = { transport: 'socket', shmDeclined: undefined };
  /** Whether the cell proved its Root-attested identity at the handshake, or why not. */
  identityStatus: IdentityStatus;
  /** The attestation challenge sent in HELLO, or null when not asking. */
  private readonly challenge: Buffer | null;
  private readonly decoder: FrameDecoder;
  private readonly pending = new PendingTable();
  /** Holds requests past the cell's in-flight limit until answers make room. */
  private readonly window = new SendWindow();
  private nextId = 1;
  private state = HANDSHAKE;
  private serverMaxFrame = DEFAULT_MAX_FRAME;
  private closeError: CellError | null = null;
  private handshakeResolve: (() => void) | null = null;
  private handshakeReject: ((e: unknown) => void) | null = null;
  private readonly canRef: boolean;
  /** Set when the stream carries frames itself (no byte decoding, no shared-memory upgrade). */
  private readonly carrier: FrameCarrier | null;
  /** Whether the stream currently keeps the process alive. */
  private refed = true;
  /**
   * Went idle since the last sweep: the sweep unrefs the stream then. Unref at once and ref again on
   * the next call cost two trips through net.Socket per sequential call.
   */
  unrefDue = false;

  private constructor(stream: Duplex, options: ConnectionOptions) {
    this.stream = stream;
    this.cell = options.cell;
    this.options = options;
    this.challenge = options.verifyIdentity === undefined ? null : randomBytes(ATTEST_CHALLENGE_BYTES);
    this.identityStatus = `unverified (${options.unverifiedBecause ?? 'not asked'})`;
    this.carrier = frameCarrierOf(stream);
    this.sink = this.carrier !== null ? this.carrier.frameSink : new StreamFrameSink(stream);
    this.decoder = new FrameDecoder(this, options.maxFrameSize);
    this.canRef = typeof (stream as { ref?: unknown }).ref === 'function';
    if (this.carrier !== null) {
      const name = this.carrier.transportName;
      this.transportStatus = { transport: name, shmDeclined: `client: the ${name} carrier moves frames itself` };
      this.carrier.bindFrames(this);
    }
    stream.on('data', (chunk: Buffer) => {
      try {
        this.decoder.push(chunk);
      } catch (err) {
        this.fail(err as CellError);
        stream.destroy();
      }
    });
    stream.on('end', () => {
      if (!stream.writableEnded) stream.end();
    });
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (this.closeError === null) {
        this.closeError = new CellError('E_CONNECTION_LOST', `connection error: ${err.code ?? err.message}.`, {
          cell: this.cell,
          cause: err,
        });
      }
    });
    stream.on('close', () => this.closed());
    swept.add(this);
    sweeper ??= setInterval(sweepAll, SWEEP_MS).unref();
  }

  /** Sends HELLO on `stream` and resolves once the cell's WELCOME matches the contract. */
  static open(stream: Duplex, options: ConnectionOptions): Promise<ClientConnection> {
    const conn = new ClientConnection(stream, options);
    return new Promise<ClientConnection>((resolve, reject) => {
      const timer = setTimeout(() => {
        conn.fail(
          new CellError('E_TIMEOUT', `no handshake reply within ${options.handshakeTimeoutMs ?? 5000} ms.`, {
            cell: options.cell,
            fix: 'the socket belongs to a process that is not a Cell Membrane, or the cell is stuck.',
          }),
        );
        stream.destroy();
      }, options.handshakeTimeoutMs ?? 5000);
      conn.handshakeResolve = () => {
        clearTimeout(timer);
        resolve(conn);
      };
      conn.handshakeReject = (e) => {
        clearTimeout(timer);
        reject(e);
      };
      conn.sink.writeFrame(
        encodeFrame(
          FrameType.HELLO,
          0,
          0,
          encodeHandshake({
            version: PROTOCOL_VERSION,
            fingerprint: options.fingerprint,
            name: options.service.name,
            maxFrame: options.maxFrameSize,
            maxInFlight: 0,
            pid: process.pid,
            flags: conn.challenge === null ? 0 : HandshakeFlag.ATTEST,
            trailer: conn.challenge ?? undefined,
          }),
        ),
      );
      conn.ref();
    });
  }

  get isOpen(): boolean {
    return this.state === OPEN;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** Encodes the request straight into the write slab and returns the reply's promise. */
  call(def: MethodDef, input: unknown, options: CallOptions | undefined): Promise<unknown> {
    if (this.state !== OPEN) return Promise.reject(this.notOpen());
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(aborted(this.cell, def.name));
    const enc = def.input;
    let id: number;
    try {
      const size = enc.sizeOf(input);
      if (size + HEADER_SIZE > this.serverMaxFrame) {
        throw new CellError(
          'E_FRAME_TOO_LARGE',
          `the request to '${def.name}' is ${size + HEADER_SIZE} bytes; the cell accepts at most ${this.serverMaxFrame}.`,
          { cell: this.cell, fix: 'split the payload into smaller calls or raise maxFrameSize on the cell.' },
        );
      }
      id = this.claimId();
      if (this.window.full) return this.track(def, id, options, this.encodeHeld(def, input, size, id));
      const sink = this.sink;
      const o = sink.reserve(HEADER_SIZE + size);
      const end = enc.encodeInto(input, sink.buf, writeHeader(sink.buf, o, size, FrameType.REQUEST, def.id, id));
      // With calls in flight the cell is busy with those: this request may join the others sent
      // before this process next looks for replies. A lone call goes out at once.
      if (this.pending.size > 0 && sink.commitSoon !== undefined) sink.commitSoon(end);
      else sink.commit(end);
      this.window.sent();
    } catch (err) {
      return Promise.reject(err);
    }
    return this.track(def, id, options);
  }

  /**
   * Sends one request per input, back to back, and resolves with the replies in input order. Each
   * request is an ordinary call on the wire and in the cell (its own id, handler run and reply); only
   * the caller's bookkeeping is shared: one promise for the lot instead of one per call. Rejects with
   * the first failure (its `details.index` says which input); replies still to come are dropped. An
   * input that fails to encode stops the run there: the requests before it have gone out and run.
   */
  callMany(def: MethodDef, inputs: readonly unknown[], options: CallOptions | undefined): Promise<unknown[]> {
    if (this.state !== OPEN) return Promise.reject(this.notOpen());
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(aborted(this.cell, def.name));
    const n = inputs.length;
    if (n === 0) return Promise.resolve([]);
    const enc = def.input;
    // Sizes first: an input the schema rejects fails the batch before any request is sent.
    const sizes = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      let size: number;
      try {
        size = enc.sizeOf(inputs[i]);
      } catch (err) {
        return Promise.reject(batchItemError(this.cell, def, i, err));
      }
      if (size + HEADER_SIZE > this.serverMaxFrame) {
        return Promise.reject(
          new CellError(
            'E_FRAME_TOO_LARGE',
            `request ${i} to '${def.name}' is ${size + HEADER_SIZE} bytes; the cell accepts at most ${this.serverMaxFrame}.`,
            {
              cell: this.cell,
              fix: 'split the payload into smaller calls or raise maxFrameSize on the cell.',
              details: { index: i },
            },
          ),
        );
      }
      sizes[i] = size;
    }
    if (this.pending.size === 0) this.ref();
    const promise = new Promise(capture);
    const batch = new BatchCall(n, nextResolve, nextReject);
    const timeoutMs = options?.timeoutMs;
    const deadline = timeoutMs === undefined ? UNSTAMPED : OWN_TIMER;
    const sink = this.sink;
    const pending = this.pending;
    let i = 0;
    sink.cork?.();
    try {
      for (; i < n; i++) {
        const size = sizes[i] as number;
        const id = this.claimId();
        const p = new PendingCall(id, def, noop, batch.fail, deadline, batch, i);
        if (this.window.full) this.window.hold(p, this.encodeHeld(def, inputs[i], size, id));
        else {
          const o = sink.reserve(HEADER_SIZE + size);
          sink.commit(
            enc.encodeInto(inputs[i], sink.buf, writeHeader(sink.buf, o, size, FrameType.REQUEST, def.id, id)),
          );
          this.window.sent();
        }
        pending.set(p);
        batch.items[i] = p;
      }
    } catch (err) {
      // Requests before `i` are on their way; their replies are dropped once the batch has failed.
      batch.fail(batchItemError(this.cell, def, i, err));
      return promise as Promise<unknown[]>;
    } finally {
      sink.uncork?.();
    }
    if (timeoutMs !== undefined) {
      batch.timer = setTimeout(
        () => this.abandon(batch, timeoutError(this.cell, `'${def.name}' (many)`, timeoutMs)),
        timeoutMs,
      );
    }
    if (signal !== undefined) {
      batch.signal = signal;
      batch.onAbort = () => this.abandon(batch, aborted(this.cell, def.name));
      signal.addEventListener('abort', batch.onAbort, { once: true });
    }
    return promise as Promise<unknown[]>;
  }

  /** Gives up on a batch: its calls still pending are forgotten (and cancelled), the batch rejects. */
  private abandon(batch: BatchCall, err: CellError): void {
    if (batch.settled) return;
    for (const p of batch.items) {
      if (p === undefined || this.pending.get(p.id) !== p) continue;
      this.giveUp(p);
    }
    batch.fail(err);
  }

  /** Sends a prebuilt frame (control frames of a transport extension) after any queued requests. */
  sendFrame(frame: Uint8Array): void {
    this.sink.writeFrame(frame);
  }

  /** Calls a built-in method (genome, health, metrics); the reply is JSON. */
  callBuiltin(method: number, options?: CallOptions): Promise<unknown> {
    if (this.state !== OPEN) return Promise.reject(this.notOpen());
    // Built-in methods are answered at once and never shed, so they pass the in-flight window.
    const id = this.claimId();
    this.sink.writeFrame(encodeFrame(FrameType.REQUEST, method, id));
    return this.track(null, id, options);
  }

  /** A request past the in-flight limit, encoded into a buffer of its own to wait in the window. */
  private encodeHeld(def: MethodDef, input: unknown, size: number, id: number): Buffer {
    const frame = Buffer.allocUnsafe(HEADER_SIZE + size);
    def.input.encodeInto(input, frame, writeHeader(frame, 0, size, FrameType.REQUEST, def.id, id));
    return frame;
  }

  /** The next request id: free in the pending table and not still owed an answer for an abandoned call. */
  private claimId(): number {
    let id = this.pending.claim(this.nextId);
    while (this.window.inUse(id)) id = this.pending.claim(id === 0xffffffff ? 1 : id + 1);
    this.nextId = id === 0xffffffff ? 1 : id + 1;
    return id;
  }

  private track(
    def: MethodDef | null,
    id: number,
    options: CallOptions | undefined,
    held: Buffer | null = null,
  ): Promise<unknown> {
    if (this.pending.size === 0) this.ref();
    const timeoutMs = options?.timeoutMs;
    const signal = options?.signal;
    const promise = new Promise(capture);
    const p = new PendingCall(
      id,
      def,
      nextResolve,
      nextReject,
      timeoutMs === undefined ? UNSTAMPED : OWN_TIMER,
      null,
      0,
    );
    this.pending.set(p);
    if (held !== null) this.window.hold(p, held);
    if (timeoutMs !== undefined) {
      p.timer = setTimeout(() => this.expire(p, timeoutMs), timeoutMs);
    }
    if (signal !== undefined) {
      p.signal = signal;
      p.onAbort = () => {
        if (this.pending.get(id) !== p) return;
        this.giveUp(p);
        p.reject(aborted(this.cell, def === null ? 'built-in' : def.name));
      };
      signal.addEventListener('abort', p.onAbort, { once: true });
    }
    return promise;
  }

  /**
   * Called by the sweep timer: stamps the deadline of calls made since the last sweep (now + timeout)
   * and rejects calls whose deadline passed. A call so times out at most two sweeps late and never
   * early, however long the process went without reading the clock before it was made.
   */
  expireDue(now: number): void {
    for (const p of this.pending.list()) {
      if (p.deadline === UNSTAMPED) {
        p.deadline = now + this.options.timeoutMs;
        continue;
      }
      if (p.timer !== null || p.deadline > now) continue;
      this.expire(p, this.options.timeoutMs);
    }
  }

  private expire(p: PendingCall, timeoutMs: number): void {
    const id = p.id;
    if (this.pending.get(id) !== p) return;
    const name = p.def === null ? 'built-in method' : `'${p.def.name}'`;
    if (p.frame !== null) {
      this.giveUp(p);
      p.reject(
        new CellError('E_TIMEOUT', `call to ${name} was not sent within ${timeoutMs} ms: ${this.window.describe()}.`, {
          cell: this.cell,
          fix: 'lower the caller’s concurrency, raise maxInFlight on the Membrane, or raise timeoutMs; the call did not run.',
          details: { requestId: id, timeoutMs, sent: false },
        }),
      );
      return;
    }
    this.giveUp(p);
    p.reject(timeoutError(this.cell, name, timeoutMs, id));
  }

  /**
   * The caller stopped waiting for `p`: a request still waiting in the window is dropped unsent; one on
   * the wire is cancelled and keeps its place in the window until the cell answers it.
   */
  private giveUp(p: PendingCall): void {
    this.forget(p);
    if (p.frame !== null) {
      p.frame = null;
      return;
    }
    if (this.state !== OPEN && this.state !== DRAINING) return;
    this.sink.writeFrame(encodeFrame(FrameType.CANCEL, 0, p.id));
    if (p.def !== null) this.window.abandon(p.id);
  }

  /** Writes waiting requests while the window has room (an answer just made some). */
  private pump(): void {
    const sink = this.sink;
    for (let frame = this.window.take(); frame !== undefined; frame = this.window.take()) {
      const o = sink.reserve(frame.length);
      sink.buf.set(frame, o);
      if (sink.commitSoon !== undefined) sink.commitSoon(o + frame.length);
      else sink.commit(o + frame.length);
    }
  }

  private forget(p: PendingCall): void {
    this.pending.delete(p);
    if (p.timer !== null) clearTimeout(p.timer);
    if (p.signal !== null && p.onAbort !== null) p.signal.removeEventListener('abort', p.onAbort);
    if (this.pending.size === 0) this.idle();
  }

  onFrame(
    type: number,
    _flags: number,
    method: number,
    requestId: number,
    bytes: Buffer,
    start: number,
    end: number,
  ): void {
    if (type === FrameType.REPLY) {
      const p = this.pending.get(requestId);
      if (p === undefined || p.frame !== null) {
        this.unmatched(requestId);
        return;
      }
      this.pending.delete(p);
      if (p.def !== null && this.window.answered()) this.pump();
      if (p.timer !== null) clearTimeout(p.timer);
      if (p.onAbort !== null) p.signal!.removeEventListener('abort', p.onAbort);
      let value: unknown;
      try {
        value =
          p.def === null
            ? JSON.parse(bytes.toString('utf8', start, end))
            : p.def.output.decode(bytes, start, end - start);
      } catch (err) {
        p.reject(err);
        if (this.pending.size === 0) this.idle();
        return;
      }
      if (p.batch === null) p.resolve(value);
      else p.batch.deliver(p.index, value);
      if (this.pending.size === 0) this.idle();
      return;
    }
    this.slowFrame(type, method, requestId, bytes, start, end);
  }

  /**
   * An answer for no call waiting on the wire: a call the caller gave up on (its late answer frees its
   * place in the window; the answer itself is dropped), or an id never sent, which is ignored.
   */
  private unmatched(requestId: number): void {
    if (this.window.lateAnswer(requestId)) this.pump();
  }

  /** The cell wrote garbage into its ring: fail the connection with the reason. */
  ringCorrupt(err: CellError): void {
    this.fail(err);
    this.stream.destroy();
  }

  private slowFrame(type: number, method: number, requestId: number, bytes: Buffer, start: number, end: number): void {
    if (type === FrameControl.UPGRADE_CHALLENGE || type === FrameControl.UPGRADE_DECLINED) {
      onUpgradeAnswer(this, type, bytes, start, end);
      return;
    }
    if (type >= CONTROL_FRAME_FIRST && type <= CONTROL_FRAME_LAST && this.onControlFrame !== null) {
      this.onControlFrame(type, 0, method, requestId, bytes, start, end);
      return;
    }
    if (type === FrameType.ERROR) {
      const e = decodeErrorPayload(bytes, start, end);
      if (requestId === 0) {
        this.fail(remoteError(e, this.cell, undefined));
        this.stream.destroy();
        return;
      }
      const p = this.pending.get(requestId);
      if (p === undefined || p.frame !== null) {
        this.unmatched(requestId);
        return;
      }
      this.forget(p);
      if (p.def !== null && this.window.answered()) this.pump();
      const what = p.def === null ? `built-in 0x${method.toString(16)}` : p.def.name;
      if (p.batch === null) p.reject(remoteError(e, this.cell, what));
      else p.reject(remoteError(e, this.cell, what, { ...e.details, index: p.index }));
      return;
    }
    if (type === FrameType.WELCOME && this.state === HANDSHAKE) {
      this.welcome(bytes, start, end);
      return;
    }
    if (type === FrameType.GOAWAY) {
      if (this.state === OPEN) this.state = DRAINING;
      if (this.onGoaway !== null) this.onGoaway(this);
      if (this.pending.size === 0) this.leave();
      return;
    }
    this.fail(
      new CellError('E_PROTOCOL', `unexpected frame type 0x${type.toString(16)} from the cell.`, {
        cell: this.cell,
        fix: 'the cell speaks a newer protocol; use the same Cell release on both sides.',
      }),
    );
    this.stream.destroy();
  }

  private welcome(bytes: Buffer, start: number, end: number): void {
    let h: Handshake;
    try {
      h = decodeHandshake(bytes, start, end);
    } catch (err) {
      this.fail(err as CellError);
      this.stream.destroy();
      return;
    }
    this.server = h;
    this.window.setLimit(h.maxInFlight);
    const o = this.options;
    if (h.version !== PROTOCOL_VERSION) {
      this.fail(
        new CellError('E_PROTOCOL', `the cell speaks protocol ${h.version}, this caller ${PROTOCOL_VERSION}.`, {
          cell: this.cell,
          fix: 'use the same Cell release on both sides.',
        }),
      );
      this.stream.destroy();
      return;
    }
    // Who answered comes before what it claims to serve: an impostor's contract means nothing.
    if (this.challenge !== null && o.verifyIdentity !== undefined) {
      try {
        verifyAttestation(
          welcomeAttestation(h),
          o.verifyIdentity,
          this.cell,
          this.challenge,
          h.fingerprint,
          h.name,
          `${o.socketPath ?? 'its socket'} (pid ${h.pid} by its own account)`,
        );
      } catch (err) {
        this.fail(err as CellError);
        this.stream.destroy();
        return;
      }
      this.identityStatus = 'verified';
    }
    if (o.fingerprint !== 0n && (h.fingerprint !== o.fingerprint || h.name !== o.service.name)) {
      this.fail(
        new CellError(
          'E_SCHEMA_MISMATCH',
          `this caller was built against '${o.service.name}' ${fingerprintHex(o.fingerprint)} but the cell serves '${h.name}' ${fingerprintHex(h.fingerprint)}.`,
          {
            cell: this.cell,
            fix: `rebuild the caller against the cell's current contract (see \`cell genome ${this.cell}\`), or run the cell version the caller expects.`,
            details: { expected: fingerprintHex(o.fingerprint), actual: fingerprintHex(h.fingerprint) },
          },
        ),
      );
      this.stream.destroy();
      return;
    }
    this.serverMaxFrame = h.maxFrame > 0 ? h.maxFrame : DEFAULT_MAX_FRAME;
    this.state = OPEN;
    const r = this.handshakeResolve;
    this.handshakeResolve = null;
    this.handshakeReject = null;
    if (o.shm === false || this.carrier !== null) {
      if (this.carrier === null)
        this.transportStatus.shmDeclined = 'client: shared memory turned off in the Synapse options';
      this.idle();
      if (r !== null) r();
      return;
    }
    // The upgrade never throws and is bounded by its own timeouts; the connection is usable either way.
    // Replies are decoded (copied) on arrival, so this receiver takes no leases: ring slots free at once.
    void upgradeClient(this.stream, this.sink, this, o.socketPath).then((upgraded) => {
      if (typeof upgraded === 'string') this.transportStatus.shmDeclined = upgraded;
      else {
        this.sink = upgraded;
        this.transportStatus.transport = 'shm';
        this.transportStatus.shmDeclined = undefined;
      }
      if (this.pending.size === 0) this.idle();
      if (r !== null) r();
    });
  }

  /** Stops new calls; resolves when in-flight calls have settled and the stream closed. */
  close(): Promise<void> {
    if (this.state === CLOSED) return Promise.resolve();
    if (this.state !== DRAINING) this.state = DRAINING;
    return new Promise((resolve) => {
      this.stream.once('close', () => resolve());
      if (this.pending.size === 0) this.leave();
      this.ref();
    });
  }

  /** Fails the connection: every pending call is rejected with `err`. */
  private fail(err: CellError): void {
    if (this.closeError === null || this.state === HANDSHAKE) this.closeError = err;
    if (this.state === HANDSHAKE && this.handshakeReject !== null) {
      const r = this.handshakeReject;
      this.handshakeReject = null;
      this.handshakeResolve = null;
      r(err);
    }
  }

  private closed(): void {
    if (this.state === CLOSED) return;
    const wasHandshake = this.state === HANDSHAKE;
    this.state = CLOSED;
    swept.delete(this);
    if (swept.size === 0 && sweeper !== undefined) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
    this.decoder.stop();
    const reason =
      this.closeError ??
      new CellError('E_CONNECTION_LOST', 'the connection to the cell closed.', {
        cell: this.cell,
        fix: 'the cell stopped or crashed; calls in flight were not retried because they may have run.',
      });
    if (wasHandshake && this.handshakeReject !== null) {
      const r = this.handshakeReject;
      this.handshakeReject = null;
      r(reason);
    }
    if (this.pending.size > 0) {
      const n = this.pending.size;
      const err =
        reason.code === 'E_CONNECTION_LOST'
          ? new CellError('E_CONNECTION_LOST', `the connection closed with ${n} call(s) in flight.`, {
              cell: this.cell,
              fix: 'those calls were not retried because they may have run; retry them if they are idempotent.',
              cause: reason,
            })
          : reason;
      let unsent: CellError | null = null;
      for (const p of this.pending.list()) {
        this.pending.delete(p);
        if (p.timer !== null) clearTimeout(p.timer);
        if (p.onAbort !== null) p.signal!.removeEventListener('abort', p.onAbort);
        if (p.frame === null) {
          p.reject(err);
          continue;
        }
        p.frame = null;
        unsent ??= new CellError('E_CONNECTION_LOST', 'the connection closed before this call was sent.', {
          cell: this.cell,
          fix: 'the call did not run (it waited for room under the cell’s in-flight limit); it is safe to retry.',
          details: { sent: false },
          cause: reason,
        });
        p.reject(unsent);
      }
    }
    if (this.onClose !== null) this.onClose(this);
  }

  /**
   * Nothing is pending and nothing new will be sent: end our side, and once that is written close the
   * connection outright. Waiting for the cell to end its side would wait for calls this caller gave up
   * on (a handler may run long, or never settle); their replies would be dropped anyway.
   */
  private leave(): void {
    this.sink.flush();
    if (this.stream.writableEnded) return;
    this.stream.end(() => this.stream.destroy());
  }

  private idle(): void {
    if (this.state === DRAINING) {
      this.leave();
      return;
    }
    if (this.canRef) this.unrefDue = true;
  }

  /** Called by the sweep: still idle since the last call, so the connection stops holding the process. */
  unrefIfIdle(): void {
    this.unrefDue = false;
    if (!this.refed || this.pending.size > 0 || this.state === CLOSED) return;
    this.refed = false;
    (this.stream as unknown as { unref(): void }).unref();
  }

  private ref(): void {
    this.unrefDue = false;
    if (this.refed || !this.canRef) return;
    this.refed = true;
    (this.stream as unknown as { ref(): void }).ref();
  }

  private notOpen(): CellError {
    if (this.state === CLOSED && this.closeError !== null) return this.closeError;
    return new CellError('E_CLOSED', 'the connection is closed to new calls.', { cell: this.cell });
  }
}

/**
 * One sweep timer for every open connection of the process: a caller with many connections wakes up
 * 20 times a second, not 20 times per connection (unaligned timers, each its own wake-up when idle).
 */
const swept = new Set<ClientConnection>();
let sweeper: NodeJS.Timeout | undefined;

function sweepAll(): void {
  let now = 0;
  for (const conn of swept) {
    if (conn.inFlight > 0) {
      if (now === 0) now = Date.now();
      conn.expireDue(now);
    } else if (conn.unrefDue) conn.unrefIfIdle();
  }
}

function noop(): void {}

function timeoutError(cell: string, name: string, timeoutMs: number, requestId?: number): CellError {
  return new CellError('E_TIMEOUT', `call to ${name} got no reply within ${timeoutMs} ms.`, {
    cell,
    fix: 'the cell may be overloaded or stuck (`cell top`); raise timeoutMs if the call is legitimately slow.',
    details: requestId === undefined ? { timeoutMs } : { requestId, timeoutMs },
  });
}

/** An input of a `many` call that could not be encoded. */
function batchItemError(cell: string, def: MethodDef, index: number, err: unknown): CellError {
  const cause = err instanceof Error ? err.message : String(err);
  return new CellError(
    isCellError(err) ? err.code : 'E_ENCODE',
    `request ${index} to '${def.name}' could not be encoded: ${cause}`,
    {
      cell,
      fix: "pass inputs that match the method's input schema.",
      details: { index },
      cause: err,
    },
  );
}

function aborted(cell: string, method: string): CellError {
  return new CellError('E_ABORTED', `call to '${method}' was aborted by the caller.`, { cell });
}
