import { hostname } from 'node:os';
import { Empty, headers, type Msg, type NatsConnection, nuid, type Subscription } from '@nats-io/transport-node';
import { CellError } from '../errors/index.js';
import {
  decodeErrorPayload,
  type ErrorPayload,
  encodeHandshake,
  FrameType,
  fingerprintHex,
  PROTOCOL_VERSION,
} from '../frame/index.js';
import type { FrameSink } from '../frame/writer.js';
import type { Membrane, MembraneAttachment, ServerSession, SessionTransport } from '../membrane/index.js';
import { genomeJson } from '../service/index.js';
import { acquireNats, type NatsLease, onNatsStatus } from './connection.js';
import type { NatsSettings } from './settings.js';
import { FrameSlab } from './slab.js';
import {
  BUILTIN_TOKENS,
  CALLS_TOKEN,
  CANCEL_TOKEN,
  HEADER,
  headerValue,
  META,
  QUEUE_GROUP,
  SRV_PREFIX,
  SRV_TYPES,
  serviceStatusOf,
  serviceSubject,
} from './subjects.js';

const EMPTY = Buffer.alloc(0);

/**
 * The calls taken from NATS and not answered yet, by local request id. This side picks the ids, so it
 * takes the next one whose slot (id & mask) is free and keeps the table at most half full: no probing,
 * no object per call. Columns: the reply subject, the method, the arrival time.
 */
class CallSlots {
  replies: Array<string | undefined> = new Array(256).fill(undefined);
  methods = new Int32Array(256);
  started = new Float64Array(256);
  ids = new Float64Array(256);
  mask = 255;
  size = 0;
  private next = 1;

  /** Stores a call under a fresh id and returns the id. */
  add(reply: string, method: number, startedAt: number): number {
    if (this.size * 2 >= this.replies.length) this.grow();
    let id = this.next;
    while (this.replies[id & this.mask] !== undefined) id = id === 0xffffffff ? 1 : id + 1;
    this.next = id === 0xffffffff ? 1 : id + 1;
    const i = id & this.mask;
    this.replies[i] = reply;
    this.methods[i] = method;
    this.started[i] = startedAt;
    this.ids[i] = id;
    this.size++;
    return id;
  }

  /** The slot of call `id`, or -1. */
  find(id: number): number {
    const i = id & this.mask;
    return this.replies[i] !== undefined && this.ids[i] === id ? i : -1;
  }

  remove(i: number): void {
    this.replies[i] = undefined;
    this.size--;
  }

  clear(): void {
    this.replies.fill(undefined);
    this.size = 0;
  }

  private grow(): void {
    const n = this.replies.length * 2;
    const replies = new Array<string | undefined>(n).fill(undefined);
    const methods = new Int32Array(n);
    const started = new Float64Array(n);
    const ids = new Float64Array(n);
    const mask = n - 1;
    for (let i = 0; i < this.replies.length; i++) {
      if (this.replies[i] === undefined) continue;
      const j = (this.ids[i] as number) & mask;
      replies[j] = this.replies[i];
      methods[j] = this.methods[i] as number;
      started[j] = this.started[i] as number;
      ids[j] = this.ids[i] as number;
    }
    this.replies = replies;
    this.methods = methods;
    this.started = started;
    this.ids = ids;
    this.mask = mask;
  }
}

/** Per-endpoint numbers for `$SRV.STATS` (micro services: times in nanoseconds). */
class EndpointStats {
  requests = 0;
  errors = 0;
  processingNs = 0;
  lastError = '';
}

/**
 * A Membrane's methods served as a NATS micro service (docs/NATS.md § 4): one endpoint per method in
 * queue group `q` (every instance of the cell shares the load), the built-in methods beside them, and
 * the `$SRV.PING/INFO/STATS` protocol answered with this instance's own numbers.
 *
 * Requests enter the Membrane through an ordinary ServerSession, so a call over NATS runs exactly as one
 * over the Unix socket (lazy input view, handler context and signal, in-flight limit, per-method
 * metrics, tap); this object is that session's carrier: each REQUEST gets a local request id mapped to
 * the NATS reply subject, and the session's REPLY and ERROR frames go out as replies on that subject.
 * It is a FrameSink over an append-only slab: NATS keeps references to published payloads until its
 * next write, so a byte once handed over is never rewritten.
 */
export class NatsCellService extends FrameSlab implements FrameSink, MembraneAttachment {
  /** This instance's micro service id. */
  readonly id = nuid.next();
  readonly subject: string;
  readonly membrane: Membrane;
  readonly nc: NatsConnection;
  private readonly lease: NatsLease;
  private readonly settings: NatsSettings;
  private readonly session: ServerSession;
  private readonly calls = new CallSlots();
  private readonly stats: EndpointStats[];
  private readonly workSubs: Subscription[] = [];
  private readonly discoverySubs: Subscription[] = [];
  private readonly controlSubs: Subscription[] = [];
  private started = new Date().toISOString();
  private readonly metadata: Record<string, string>;
  private readonly pingReply: Uint8Array;
  private readonly infoReply: Uint8Array;
  /** Subscriptions the server refused (permissions), collected while starting. */
  private readonly refused: Array<{ subject: string; required: boolean; message: string }> = [];
  private starting = true;
  private drained: Promise<void> | null = null;
  private idle: (() => void) | null = null;
  private finished = false;
  private readonly stopStatus: () => void;
  /**
   * performance.now() at the first request of this turn of the event loop, 0 between turns. NATS
   * delivers a socket read's messages in one go: they share one clock read for their arrival, and the
   * ones answered before the turn ends one more for their reply (as the session does for a socket
   * read), instead of two per call.
   */
  private batchAt = 0;
  private readonly batchAnswered: Int32Array;
  private readonly closeBatchFn = () => this.closeBatch();

  private constructor(membrane: Membrane, lease: NatsLease) {
    super();
    this.membrane = membrane;
    this.lease = lease;
    this.nc = lease.nc;
    this.settings = lease.settings;
    const service = membrane.service;
    this.subject = serviceSubject(membrane.cellName, service.fingerprint);
    this.stats = service.byId.map(() => new EndpointStats());
    this.batchAnswered = new Int32Array(service.byId.length);
    this.metadata = {
      [META.fingerprint]: fingerprintHex(service.fingerprint),
      [META.service]: service.name,
      [META.genome]: genomeJson(service),
      [META.protocol]: String(PROTOCOL_VERSION),
      [META.host]: hostname(),
      [META.pid]: String(process.pid),
      [META.subject]: this.subject,
    };
    const transport: SessionTransport = {
      carrier: this,
      end: () => {},
      destroy: () => this.destroy(),
    };
    this.session = membrane.openSession(this, transport);
    this.session.switchCarrier(this, 'nats');
    this.session.stayOnCarrier('server: NATS carries the frames');
    // The session expects a handshake first; NATS callers checked the contract against the metadata.
    const hello = encodeHandshake({
      version: PROTOCOL_VERSION,
      fingerprint: service.fingerprint,
      name: service.name,
      maxFrame: 0,
      maxInFlight: 0,
      pid: process.pid,
    });
    this.session.onFrame(FrameType.HELLO, 0, 0, 0, hello, 0, hello.length, true);
    this.session.peerName = `nats:${this.nc.getServer()}`;
    this.pingReply = Buffer.from(JSON.stringify(this.ping()));
    this.infoReply = Buffer.from(JSON.stringify(this.info()));
    this.stopStatus = onNatsStatus(lease, (type, detail) => {
      if (type === 'disconnect' || type === 'reconnect' || type === 'error' || type === 'ldm') {
        process.stderr.write(`[cell ${membrane.cellName}] nats ${type}${detail === '' ? '' : ` ${detail}`}\n`);
      }
    });
  }

  /**
   * Serves `membrane` on NATS: subscribes every endpoint and the `$SRV` subjects, waits for the server
   * to accept them, and fails with E_PERMISSION_DENIED when this process may not subscribe to the
   * cell's subjects (another host's cell name).
   */
  static async start(membrane: Membrane, settings: NatsSettings, connection?: NatsLease): Promise<NatsCellService> {
    // `connection`: a lease brought by the caller (benchmarks drive the service over a stand-in).
    const lease = connection ?? (await acquireNats(settings, membrane.cellName));
    let svc: NatsCellService | null = null;
    try {
      svc = new NatsCellService(membrane, lease);
      await svc.subscribeAll();
      return svc;
    } catch (err) {
      if (svc !== null) svc.destroy();
      else lease.release();
      throw err;
    }
  }

  private async subscribeAll(): Promise<void> {
    const { service, cellName } = this.membrane;
    for (const def of service.byId) {
      const method = def.id;
      this.workSubs.push(this.sub(`${this.subject}.${def.name}`, QUEUE_GROUP, true, (m) => this.request(method, m)));
    }
    for (const [method, token] of BUILTIN_TOKENS) {
      this.workSubs.push(this.sub(`${this.subject}.${token}`, QUEUE_GROUP, true, (m) => this.request(method, m)));
    }
    this.controlSubs.push(this.sub(`${this.subject}.${CANCEL_TOKEN}`, '', true, (m) => this.cancel(m)));
    this.controlSubs.push(this.sub(`${this.subject}.${CALLS_TOKEN}`, '', true, (m) => this.probe(m)));
    for (const verb of ['PING', 'INFO', 'STATS'] as const) {
      const answer = (m: Msg) => this.discovery(verb, m);
      // The bare subjects list every service; a host's permissions may leave them out (then this cell
      // is found by name only, and `cell status --mesh` does not see it).
      this.discoverySubs.push(this.sub(`${SRV_PREFIX}.${verb}`, '', false, answer));
      this.discoverySubs.push(this.sub(`${SRV_PREFIX}.${verb}.${cellName}`, '', true, answer));
      this.discoverySubs.push(this.sub(`${SRV_PREFIX}.${verb}.${cellName}.${this.id}`, '', true, answer));
    }
    await this.nc.flush();
    // A refused SUB is answered with -ERR before the PONG of the flush; its callback may still be queued.
    await new Promise((r) => setImmediate(r));
    this.starting = false;
    const fatal = this.refused.filter((r) => r.required);
    if (fatal.length > 0) {
      throw new CellError(
        'E_PERMISSION_DENIED',
        `this host's NATS credentials may not serve cell '${cellName}': the server refused ${fatal.map((r) => r.subject).join(', ')} (${fatal[0]?.message}).`,
        {
          cell: cellName,
          fix: `serve '${cellName}' from a host whose NATS user may subscribe to cell.${cellName}.> and $SRV.*.${cellName}.> (docs/NATS.md § 3), or give it another name.`,
        },
      );
    }
    for (const r of this.refused) {
      process.stderr.write(
        `[cell ${cellName}] nats: not subscribed to ${r.subject} (${r.message}); the cell is found by name only.\n`,
      );
    }
  }

  private sub(subject: string, queue: string, required: boolean, handle: (m: Msg) => void): Subscription {
    return this.nc.subscribe(subject, {
      ...(queue === '' ? {} : { queue }),
      callback: (err, msg) => {
        if (err !== null) {
          this.refusedSubscription(subject, required, err);
          return;
        }
        handle(msg);
      },
    });
  }

  private refusedSubscription(subject: string, required: boolean, err: Error): void {
    if (this.starting) {
      this.refused.push({ subject, required, message: err.message });
      return;
    }
    // Later (a reconnect to a server whose permissions changed): the cell keeps its Unix socket.
    process.stderr.write(`[cell ${this.membrane.cellName}] nats: lost ${subject}: ${err.message}\n`);
  }

  /** A request for `method` arrived: give it a local id and hand it to the session. */
  private request(method: number, msg: Msg): void {
    const reply = msg.reply;
    if (reply === undefined || reply === '' || this.finished) return; // a publish without reply: nobody waits
    if (this.batchAt === 0) this.openBatch();
    const id = this.calls.add(reply, method, this.batchAt);
    const st = this.stats[method];
    if (st !== undefined) st.requests++;
    const data = msg.data;
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    // The payload is this message's own memory (NATS does not reuse it): the handler may keep it.
    this.session.onFrame(FrameType.REQUEST, 0, method, id, bytes, 0, bytes.length, true);
  }

  private openBatch(): void {
    this.batchAt = performance.now();
    this.session.beginBatch(this.batchAt);
    queueMicrotask(this.closeBatchFn);
  }

  private closeBatch(): void {
    const ns = (performance.now() - this.batchAt) * 1e6;
    const answered = this.batchAnswered;
    for (let m = 0; m < answered.length; m++) {
      const n = answered[m] as number;
      if (n === 0) continue;
      (this.stats[m] as EndpointStats).processingNs += ns * n;
      answered[m] = 0;
    }
    this.batchAt = 0;
    this.session.endBatch();
  }

  // ---------------------------------------------------------------- the session's replies

  protected frame(type: number, _method: number, id: number, b: Buffer, start: number, end: number): void {
    // WELCOME and GOAWAY concern a stream's peer; NATS callers have none.
    if (type === FrameType.REPLY || type === FrameType.ERROR) this.answer(type, id, b, start, end);
  }

  private answer(type: number, id: number, b: Buffer, start: number, end: number): void {
    if (id === 0) {
      if (type === FrameType.ERROR) {
        const e = decodeErrorPayload(b, start, end);
        process.stderr.write(`[cell ${this.membrane.cellName}] nats session error ${e.code}: ${e.message}\n`);
      }
      return;
    }
    const calls = this.calls;
    const i = calls.find(id);
    if (i < 0) return;
    const reply = calls.replies[i] as string;
    const method = calls.methods[i] as number;
    const st = this.stats[method];
    if (st !== undefined) {
      // Answered within the turn it arrived in: timed with the whole batch when the turn ends.
      if (this.batchAt !== 0 && calls.started[i] === this.batchAt) this.batchAnswered[method]++;
      else st.processingNs += (performance.now() - (calls.started[i] as number)) * 1e6;
    }
    calls.remove(i);
    if (type === FrameType.REPLY && end - start <= this.maxPayload) {
      try {
        // A plain view: Buffer's subarray goes through a slower species constructor.
        this.nc.publish(reply, new Uint8Array(b.buffer, b.byteOffset + start, end - start));
      } catch {
        // The connection closed under us: the caller's liveness probe reports the call as lost.
      }
    } else {
      this.answerError(
        reply,
        method,
        st,
        type === FrameType.ERROR ? decodeErrorPayload(b, start, end) : null,
        end - start,
      );
    }
    if (calls.size === 0 && this.idle !== null) this.idle();
  }

  /** An error reply: the error frame's payload, or (null) a reply too large for NATS. */
  private answerError(
    reply: string,
    method: number,
    st: EndpointStats | undefined,
    payload: ErrorPayload | null,
    size: number,
  ): void {
    const e: ErrorPayload = payload ?? {
      code: 'E_FRAME_TOO_LARGE',
      message: `the reply of '${this.membrane.service.byId[method]?.name ?? method}' is ${size} bytes; NATS carries at most ${this.maxPayload} per message.`,
      fix: 'return less per call, or raise max_payload in the nats-server configuration.',
    };
    if (st !== undefined) {
      st.errors++;
      st.lastError = `${e.code}: ${e.message}`;
    }
    const h = headers();
    h.set(HEADER.serviceErrorCode, String(serviceStatusOf(e.code)));
    h.set(HEADER.serviceError, headerValue(e.message));
    h.set(HEADER.code, e.code);
    h.set(HEADER.message, headerValue(e.message));
    if (e.fix !== undefined) h.set(HEADER.fix, headerValue(e.fix));
    if (e.details !== undefined) h.set(HEADER.details, JSON.stringify(e.details));
    try {
      this.nc.publish(reply, Empty, { headers: h });
    } catch {
      // closed: as above
    }
  }

  private get maxPayload(): number {
    return this.nc.info?.max_payload ?? Number.POSITIVE_INFINITY;
  }

  // ---------------------------------------------------------------- control subjects

  /** `$cancel`: the payload is the reply subject of a call its caller gave up on. */
  private cancel(msg: Msg): void {
    const reply = Buffer.from(msg.data).toString('utf8');
    const calls = this.calls;
    for (let i = 0; i < calls.replies.length; i++) {
      if (calls.replies[i] === reply) {
        this.session.onFrame(FrameType.CANCEL, 0, 0, calls.ids[i] as number, EMPTY, 0, 0, true);
        return;
      }
    }
  }

  /**
   * `$calls`: a caller asks which of its calls (`{inbox, ids}`: reply subjects `inbox + id`) this
   * instance holds. Every instance answers, holding some or none; a call no live instance holds was
   * lost with the instance that took it (docs/NATS.md § 4.3).
   */
  private probe(msg: Msg): void {
    if (msg.reply === undefined || msg.reply === '') return;
    let held: number[] = [];
    try {
      const q = JSON.parse(Buffer.from(msg.data).toString('utf8')) as { inbox?: unknown; ids?: unknown };
      if (typeof q.inbox === 'string' && Array.isArray(q.ids)) {
        const replies = new Set<string>();
        for (const r of this.calls.replies) if (r !== undefined) replies.add(r);
        const inbox = q.inbox;
        held = (q.ids as unknown[]).filter((id): id is number => typeof id === 'number' && replies.has(inbox + id));
      }
    } catch {
      // unreadable probe: answer that we hold nothing of it
    }
    msg.respond(JSON.stringify({ id: this.id, held }));
  }

  // ---------------------------------------------------------------- micro services protocol

  private discovery(verb: 'PING' | 'INFO' | 'STATS', msg: Msg): void {
    if (verb === 'PING') msg.respond(this.pingReply);
    else if (verb === 'INFO') msg.respond(this.infoReply);
    else msg.respond(JSON.stringify(this.statsReply()));
  }

  private ping(): Record<string, unknown> {
    return {
      type: SRV_TYPES.PING,
      name: this.membrane.cellName,
      id: this.id,
      version: this.settings.version,
      metadata: this.metadata,
    };
  }

  /** The `$SRV.INFO` answer (a micro services info_response). */
  info(): Record<string, unknown> {
    const service = this.membrane.service;
    return {
      type: SRV_TYPES.INFO,
      name: this.membrane.cellName,
      id: this.id,
      version: this.settings.version,
      description: `Cell '${this.membrane.cellName}' (service '${service.name}')`,
      metadata: this.metadata,
      endpoints: service.byId.map((def) => ({
        name: def.name,
        subject: `${this.subject}.${def.name}`,
        queue_group: QUEUE_GROUP,
        metadata: {
          'cell.method.id': String(def.id),
          'cell.input': fingerprintHex(def.input.fingerprint),
          'cell.output': fingerprintHex(def.output.fingerprint),
        },
      })),
    };
  }

  /** This instance's numbers: requests taken from NATS, errors, time from arrival to reply (async work included). */
  statsReply(): Record<string, unknown> {
    const service = this.membrane.service;
    const all = this.membrane.calls.byId;
    return {
      type: SRV_TYPES.STATS,
      name: this.membrane.cellName,
      id: this.id,
      version: this.settings.version,
      started: this.started,
      metadata: this.metadata,
      endpoints: service.byId.map((def) => {
        const st = this.stats[def.id] as EndpointStats;
        const latency = all[def.id]?.latency;
        return {
          name: def.name,
          subject: `${this.subject}.${def.name}`,
          queue_group: QUEUE_GROUP,
          num_requests: st.requests,
          num_errors: st.errors,
          last_error: st.lastError,
          processing_time: Math.round(st.processingNs),
          average_processing_time:
            st.requests - this.pendingOf(def.id) > 0
              ? Math.round(st.processingNs / (st.requests - this.pendingOf(def.id)))
              : 0,
          data: {
            in_flight: this.pendingOf(def.id),
            // The Membrane's histogram covers every carrier (socket, shared memory, NATS).
            all_carriers:
              latency === undefined || latency.count === 0
                ? null
                : {
                    requests: all[def.id]?.requests ?? 0,
                    p50_ns: latency.percentile(0.5),
                    p99_ns: latency.percentile(0.99),
                  },
          },
        };
      }),
    };
  }

  private pendingOf(method: number): number {
    let n = 0;
    const calls = this.calls;
    for (let i = 0; i < calls.replies.length; i++)
      if (calls.replies[i] !== undefined && calls.methods[i] === method) n++;
    return n;
  }

  /** Calls taken from NATS and not answered yet. */
  get inFlight(): number {
    return this.calls.size;
  }

  // ---------------------------------------------------------------- drain and shutdown

  /**
   * Graceful stop, first step of the Membrane's close(): unsubscribe from the endpoints and the `$SRV`
   * subjects (NATS then routes new calls to the other instances of the queue group; messages already
   * on their way here are still served), answer every call taken, push the replies out, and only then
   * leave `$cancel` and `$calls`, so callers' probes see the calls this instance still holds.
   */
  drain(): Promise<void> {
    if (this.drained === null) this.drained = this.doDrain();
    return this.drained;
  }

  private async doDrain(): Promise<void> {
    await Promise.allSettled([...this.workSubs, ...this.discoverySubs].map((s) => s.drain()));
    if (this.calls.size > 0 && !this.finished) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.idle = resolve;
        timer = setTimeout(resolve, this.membrane.drainTimeoutMs);
      });
      clearTimeout(timer);
      this.idle = null;
    }
    if (!this.finished) {
      try {
        await this.nc.flush();
      } catch {
        // closed: nothing more to push
      }
      await Promise.allSettled(this.controlSubs.map((s) => s.drain()));
    }
    this.finish();
  }

  /** At once: drop every subscription and leave the session (the Membrane's drain timed out). */
  destroy(): void {
    if (this.finished) return;
    for (const s of [...this.workSubs, ...this.discoverySubs, ...this.controlSubs]) {
      try {
        s.unsubscribe();
      } catch {
        // connection already closed
      }
    }
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.calls.clear();
    this.stopStatus();
    this.session.closed();
    this.lease.release();
    if (this.idle !== null) this.idle();
  }
}
