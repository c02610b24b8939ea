import { Duplex } from 'node:stream';
import { type Msg, type NatsConnection, nuid, type Subscription } from '@nats-io/transport-node';
import { CellError, type CellErrorCode } from '../errors/index.js';
import {
  BUILTIN_METHOD_FIRST,
  decodeHandshake,
  type ErrorPayload,
  encodeErrorPayload,
  encodeHandshake,
  type FrameReceiver,
  FrameType,
  HEADER_SIZE,
  PROTOCOL_VERSION,
} from '../frame/index.js';
import type { Connector, FrameCarrier, ResolveContext } from '../synapse/index.js';
import { acquireNats, type NatsLease } from './connection.js';
import { type CellInstance, discoverCell } from './discovery.js';
import type { NatsSettings } from './settings.js';
import { FrameSlab } from './slab.js';
import { BUILTIN_TOKENS, CALLS_TOKEN, CANCEL_TOKEN, HEADER, SRV_PREFIX } from './subjects.js';

/** How often a carrier looks for calls that have waited long (and runs its clock). */
const SWEEP_MS = 250;
/** A call still unanswered after this long is asked about (see probe). */
const PROBE_AFTER_MS = 1000;
/** How long a probe waits for the instances' answers. */
const PROBE_WINDOW_MS = 500;
/** A call nobody listened for ("no responders") is sent again for up to this long. */
const NO_RESPONDERS_RETRY_MS = 2000;

let coarseNow = Date.now();

/** A request sent and not answered yet. */
class Outgoing {
  /** Times it was sent again after "no responders". */
  retries = 0;
  /** Waiting to be sent again: no instance has it, and none is asked about it. */
  waiting = false;
  /** When it last went out (the liveness probe asks about calls out for a while). */
  lastSentAt: number;
  constructor(
    readonly method: number,
    readonly subject: string,
    readonly payload: Uint8Array,
    readonly sentAt: number,
  ) {
    this.lastSentAt = sentAt;
  }
}

class ClientSink extends FrameSlab {
  constructor(private readonly carrier: NatsCarrier) {
    super();
  }
  protected frame(type: number, method: number, id: number, b: Buffer, start: number, end: number): void {
    this.carrier.frame(type, method, id, b, start, end);
  }
}

/**
 * A Synapse connection to a cell over NATS request/reply (docs/NATS.md § 4). It is a Connector's stream
 * that carries whole frames instead of bytes (synapse's FrameCarrier): the ClientConnection above it keeps
 * every call semantic — request ids, `many`, timeouts, AbortSignal and CANCEL, GOAWAY, CellError codes —
 * and this class turns its frames into NATS messages:
 *
 * - HELLO is answered here from the instances' `$SRV.INFO` metadata: WELCOME carries the fingerprint of
 *   an instance serving the caller's contract, or of another one, which makes the ClientConnection fail
 *   with E_SCHEMA_MISMATCH before any call;
 * - REQUEST is published to `cell.<name>.<fp>.<method>` (queue group: NATS picks the instance) with
 *   reply subject `<inbox>.<requestId>`; the reply comes back as REPLY, an error reply (Cell-Error-*
 *   headers) as ERROR;
 * - CANCEL is published to `…$cancel`, which every instance hears;
 * - "no responders" (nobody subscribed, so nothing ran) is retried for a while, then answered with
 *   E_CELL_NOT_FOUND and GOAWAY, so the next call finds the cell again;
 * - a call still unanswered after a second is asked about on `…$calls`: when every instance this
 *   carrier knows of has answered or is gone and none holds it, it was lost with the instance that
 *   took it (killed, crashed, cut off) and fails with E_CONNECTION_LOST instead of waiting for its
 *   timeout.
 */
export class NatsCarrier extends Duplex implements FrameCarrier {
  readonly transportName = 'nats' as const;
  readonly frameSink: ClientSink;
  readonly cell: string;
  private readonly lease: NatsLease;
  private readonly nc: NatsConnection;
  private readonly instances: readonly CellInstance[];
  /** `<prefix>.<nuid>.`: a reply subject is this plus the request id (or `p<n>` for a probe). */
  private readonly inbox: string;
  private readonly inboxSub: Subscription;
  private handler: FrameReceiver | null = null;
  private base = '';
  private methodSubjects: string[] = [];
  private readonly builtinSubjects = new Map<number, string>();
  private readonly pending = new Map<number, Outgoing>();
  private readonly sweeper: NodeJS.Timeout;
  /** Instances that answered a probe or discovery, by id; false once known gone. */
  private readonly known = new Map<string, boolean>();
  private probing = false;
  private probeSeq = 0;
  private probeAnswers: Map<string, number[]> | null = null;
  private probeTag = '';
  private probeDone: (() => void) | null = null;
  private goneAway = false;
  private readonly publishOptions = { reply: '' };

  constructor(lease: NatsLease, cell: string, instances: readonly CellInstance[]) {
    super({ allowHalfOpen: true });
    this.lease = lease;
    this.nc = lease.nc;
    this.cell = cell;
    this.instances = instances;
    this.frameSink = new ClientSink(this);
    this.inbox = `${lease.settings.inboxPrefix}.${nuid.next()}.`;
    this.inboxSub = this.nc.subscribe(`${this.inbox}*`, {
      callback: (err, msg) => {
        if (err !== null) {
          this.destroy(
            new CellError(
              'E_PERMISSION_DENIED',
              `this process may not receive replies on ${this.inbox}*: ${err.message}`,
              {
                cell,
                fix: 'allow the host to subscribe to its inbox prefix (CELL_NATS_INBOX_PREFIX, docs/NATS.md § 3).',
              },
            ),
          );
          return;
        }
        this.reply(msg);
      },
    });
    coarseNow = Date.now();
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweeper.unref();
    lease.closed.then(() => {
      this.destroy(
        new CellError('E_CONNECTION_LOST', 'the NATS connection closed.', {
          cell,
          fix: 'calls in flight were not retried because they may have run; the next call connects again.',
        }),
      );
    });
  }

  bindFrames(handler: FrameReceiver): void {
    this.handler = handler;
  }

  /** A frame the ClientConnection sends. */
  frame(type: number, method: number, id: number, b: Buffer, start: number, end: number): void {
    // A plain view: Buffer's subarray goes through a slower species constructor.
    if (type === FrameType.REQUEST) this.send(method, id, new Uint8Array(b.buffer, b.byteOffset + start, end - start));
    else if (type === FrameType.CANCEL) this.cancel(id);
    else if (type === FrameType.HELLO) this.hello(b, start, end);
    // Control frames (the shared-memory upgrade) are never sent over a carrier of frames.
  }

  private hello(b: Buffer, start: number, end: number): void {
    const h = decodeHandshake(b, start, end);
    const match = this.instances.filter((i) => i.fingerprint === h.fingerprint);
    const chosen = match.length > 0 ? match : this.instances;
    const first = chosen[0] as CellInstance;
    for (const i of chosen) if (i.fingerprint === first.fingerprint) this.known.set(i.id, true);
    this.base = first.subject;
    this.methodSubjects = first.endpoints.map((e) => e.subject);
    // Endpoint order follows method ids; index them by id all the same, should a peer list them otherwise.
    const byName = new Map(first.endpoints.map((e) => [e.name, e.subject]));
    const genome = parseGenomeMethods(first.metadata);
    if (genome !== null) this.methodSubjects = genome.map((name) => byName.get(name) ?? `${this.base}.${name}`);
    for (const [id, token] of BUILTIN_TOKENS) this.builtinSubjects.set(id, `${this.base}.${token}`);
    const maxPayload = this.nc.info?.max_payload ?? 1024 * 1024;
    const welcome = encodeHandshake({
      version: first.protocol || PROTOCOL_VERSION,
      fingerprint: first.fingerprint,
      name: first.service,
      maxFrame: maxPayload + HEADER_SIZE,
      maxInFlight: 0,
      pid: first.pid,
    });
    process.nextTick(() => this.deliver(FrameType.WELCOME, 0, 0, welcome));
  }

  private send(method: number, id: number, payload: Uint8Array): void {
    const subject = method >= BUILTIN_METHOD_FIRST ? this.builtinSubjects.get(method) : this.methodSubjects[method];
    if (subject === undefined || this.destroyed) {
      const err = this.destroyed
        ? { code: 'E_CONNECTION_LOST' as const, message: 'the NATS carrier is closed.' }
        : { code: 'E_UNKNOWN_METHOD' as const, message: `method id ${method} is not served by this cell.` };
      process.nextTick(() => this.deliver(FrameType.ERROR, method, id, encodeErrorPayload(err)));
      return;
    }
    this.pending.set(id, new Outgoing(method, subject, payload, coarseNow));
    const options = this.publishOptions;
    options.reply = this.inbox + id;
    try {
      // publish reads the options at once and keeps nothing of them: one object serves every call.
      this.nc.publish(subject, payload, options);
    } catch (err) {
      this.pending.delete(id);
      throw natsFailure(this.cell, err);
    }
  }

  private cancel(id: number): void {
    if (!this.pending.delete(id)) return;
    try {
      this.nc.publish(`${this.base}.${CANCEL_TOKEN}`, this.inbox + id);
    } catch {
      // closed: the instance sees its caller gone through nothing; the call finishes unobserved
    }
  }

  private reply(msg: Msg): void {
    const subject = msg.subject;
    const from = this.inbox.length;
    if (subject.charCodeAt(from) === 112 /* p */) {
      this.probeAnswer(subject.substring(from), msg);
      return;
    }
    // The request id is the subject's last token, in decimal (no substring, no number parse).
    let id = 0;
    for (let i = from; i < subject.length; i++) id = id * 10 + subject.charCodeAt(i) - 48;
    const out = this.pending.get(id);
    if (out === undefined) return; // given up on (timeout, abort) or already failed
    const h = msg.headers;
    if (h !== undefined) {
      if (h.code === 503 && msg.data.length === 0) {
        this.noResponders(id, out);
        return;
      }
      const code = h.get(HEADER.code);
      if (code !== '' || h.hasError) {
        this.pending.delete(id);
        const e: ErrorPayload = {
          code: (code !== '' ? code : 'E_REMOTE') as CellErrorCode,
          message: h.get(HEADER.message) || h.get('Nats-Service-Error') || h.description || 'the cell failed the call.',
        };
        const fix = h.get(HEADER.fix);
        if (fix !== '') e.fix = fix;
        const details = h.get(HEADER.details);
        if (details !== '') {
          try {
            e.details = JSON.parse(details) as Record<string, unknown>;
          } catch {
            // unreadable details are left out
          }
        }
        this.deliver(FrameType.ERROR, out.method, id, encodeErrorPayload(e));
        return;
      }
    }
    this.pending.delete(id);
    const d = msg.data;
    this.handler?.onFrame(
      FrameType.REPLY,
      0,
      out.method,
      id,
      Buffer.from(d.buffer, d.byteOffset, d.byteLength),
      0,
      d.byteLength,
      true,
    );
  }

  /** Nobody is subscribed to the method's subject right now (between two generations, or none left). */
  private noResponders(id: number, out: Outgoing): void {
    const waited = Date.now() - out.sentAt;
    if (waited < NO_RESPONDERS_RETRY_MS && !this.destroyed) {
      const delay = Math.min(25 * 2 ** out.retries++, 400);
      out.waiting = true;
      setTimeout(() => {
        if (this.pending.get(id) !== out || this.destroyed) return;
        out.waiting = false;
        out.lastSentAt = coarseNow = Date.now();
        try {
          this.nc.publish(out.subject, out.payload, { reply: this.inbox + id });
        } catch (err) {
          this.fail(id, out, 'E_CONNECTION_LOST', natsFailure(this.cell, err).message);
        }
      }, delay).unref();
      return;
    }
    this.pending.delete(id);
    this.deliver(
      FrameType.ERROR,
      out.method,
      id,
      encodeErrorPayload({
        code: 'E_CELL_NOT_FOUND',
        message: `no instance of '${this.cell}' serves ${out.subject} on NATS (no responders for ${waited} ms); the call did not run.`,
        fix: 'start the cell (with CELL_NATS set) on some host, or check that it serves the contract this caller was built against.',
      }),
    );
    // Resolve the cell again for the next call: it may be back under another contract, or local.
    if (!this.goneAway) {
      this.goneAway = true;
      this.deliver(FrameType.GOAWAY, 0, 0, Buffer.alloc(0));
    }
  }

  private fail(id: number, out: Outgoing, code: CellErrorCode, message: string, fix?: string): void {
    if (this.pending.get(id) !== out) return;
    this.pending.delete(id);
    this.deliver(
      FrameType.ERROR,
      out.method,
      id,
      encodeErrorPayload({ code, message, ...(fix === undefined ? {} : { fix }) }),
    );
  }

  private deliver(type: number, method: number, id: number, payload: Buffer): void {
    if (this.handler === null || this.destroyed) return;
    this.handler.onFrame(type, 0, method, id, payload, 0, payload.length, true);
  }

  // ---------------------------------------------------------------- liveness of calls in flight

  private sweep(): void {
    coarseNow = Date.now();
    if (this.probing || this.pending.size === 0 || this.base === '') return;
    const stale: number[] = [];
    for (const [id, out] of this.pending) {
      if (!out.waiting && coarseNow - out.lastSentAt >= PROBE_AFTER_MS) stale.push(id);
    }
    if (stale.length > 0) void this.probe(stale);
  }

  /**
   * Asks every instance which of `ids` it holds. Requests and the probe leave on one connection in
   * order, and NATS keeps one publisher's order towards each subscriber, so an instance that took a
   * call has it registered (or has already sent its reply, which arrives first) when it answers. A
   * call that no instance holds, once every instance known to this carrier has answered or is shown
   * gone by "no responders" on its `$SRV.PING.<name>.<id>`, was lost: it fails with E_CONNECTION_LOST.
   * If an instance is silent but still subscribed (busy, or cut off), nothing is decided this round.
   */
  private async probe(ids: number[]): Promise<void> {
    this.probing = true;
    const probedAt = Date.now();
    try {
      const tag = `p${++this.probeSeq}`;
      const answers = new Map<string, number[]>();
      this.probeAnswers = answers;
      this.probeTag = tag;
      const waited = new Promise<void>((resolve) => {
        this.probeDone = resolve;
        setTimeout(resolve, PROBE_WINDOW_MS).unref();
      });
      try {
        this.nc.publish(`${this.base}.${CALLS_TOKEN}`, JSON.stringify({ inbox: this.inbox, ids }), {
          reply: this.inbox + tag,
        });
      } catch {
        return;
      }
      await waited;
      this.probeAnswers = null;
      this.probeDone = null;
      if (this.destroyed) return;
      for (const id of answers.keys()) this.known.set(id, true);
      const silent = [...this.known].filter(([id, live]) => live && !answers.has(id)).map(([id]) => id);
      const verdicts = await Promise.all(silent.map((id) => this.gone(id)));
      if (verdicts.some((v) => v === 'unknown')) return;
      silent.forEach((id) => {
        this.known.set(id, false);
      });
      const held = new Set<number>();
      for (const list of answers.values()) for (const id of list) held.add(id);
      for (const id of ids) {
        const out = this.pending.get(id);
        // Sent again since the probe left (after "no responders"): this round says nothing about it.
        if (out === undefined || held.has(id) || out.waiting || out.lastSentAt > probedAt) continue;
        this.fail(
          id,
          out,
          'E_CONNECTION_LOST',
          `no instance of '${this.cell}' holds this call any more: the instance it went to stopped (killed, crashed or cut off from NATS) before replying.`,
          'the call was not retried because it may have run; retry it if it is idempotent.',
        );
      }
    } finally {
      this.probing = false;
    }
  }

  private probeAnswer(tail: string, msg: Msg): void {
    const answers = this.probeAnswers;
    if (answers === null || tail !== this.probeTag) return;
    try {
      const a = msg.json<{ id?: unknown; held?: unknown }>();
      if (typeof a.id !== 'string' || !Array.isArray(a.held)) return;
      answers.set(
        a.id,
        a.held.filter((x): x is number => typeof x === 'number'),
      );
    } catch {
      return;
    }
    let all = true;
    for (const [id, live] of this.known) if (live && !answers.has(id)) all = false;
    if (all && this.probeDone !== null) this.probeDone();
  }

  /** Whether instance `id` is gone: "no responders" on its own PING subject says so for sure. */
  private async gone(id: string): Promise<'gone' | 'alive' | 'unknown'> {
    try {
      await this.nc.request(`${SRV_PREFIX}.PING.${this.cell}.${id}`, '', { timeout: PROBE_WINDOW_MS });
      return 'alive';
    } catch (err) {
      return (err as { isNoResponders?: () => boolean }).isNoResponders?.() === true ? 'gone' : 'unknown';
    }
  }

  // ---------------------------------------------------------------- Duplex: the connection's lifetime

  override _read(): void {}

  override _write(_chunk: unknown, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    callback();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    clearInterval(this.sweeper);
    this.pending.clear();
    if (this.probeDone !== null) this.probeDone();
    try {
      this.inboxSub.unsubscribe();
    } catch {
      // the connection is closed already
    }
    this.lease.release();
    callback(err);
  }
}

/** The method names in id order, from the genome in the metadata (ids are dense in declaration order). */
function parseGenomeMethods(meta: Readonly<Record<string, string>>): string[] | null {
  try {
    const g = JSON.parse(meta['cell.genome'] ?? '') as { methods?: Array<{ name?: unknown }> };
    if (!Array.isArray(g.methods)) return null;
    const names = g.methods.map((m) => m.name);
    return names.every((n): n is string => typeof n === 'string') ? names : null;
  } catch {
    return null;
  }
}

function natsFailure(cell: string, err: unknown): CellError {
  const message = err instanceof Error ? err.message : String(err);
  return new CellError('E_CONNECTION_LOST', `cannot send over NATS: ${message}`, {
    cell,
    fix: 'the NATS connection is closed or draining; the next call connects again.',
    cause: err,
  });
}

/**
 * Synapse's NATS resolver step: finds the instances of `cell` through `$SRV.INFO.<cell>` and returns a
 * connector whose stream is a NatsCarrier. Null when no instance answers (grow keeps polling until its
 * waitMs runs out). Fails when no NATS server can be reached, rather than reporting "not found".
 */
export async function resolveOverNats(
  cell: string,
  context: ResolveContext,
  settings: NatsSettings,
): Promise<Connector | null> {
  const lease = await acquireNats(settings, `client-${process.pid}`);
  try {
    const budget = Math.max(100, Math.min(1000, context.deadline - Date.now()));
    const instances = await discoverCell(lease.nc, cell, { maxWaitMs: budget, stallMs: 40 }, settings.inboxPrefix);
    if (instances.length === 0) return null;
    const server = lease.nc.getServer();
    return {
      describe: `nats:${cell}@${server} (${instances.length} instance${instances.length === 1 ? '' : 's'})`,
      connect: async () => new NatsCarrier(await acquireNats(settings, `client-${process.pid}`), cell, instances),
    };
  } finally {
    lease.release();
  }
}
