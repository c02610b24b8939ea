import type { Socket } from 'node:net';
import { isCellError } from '../errors/index.js';
import { type CallObserver, PrivateListener } from '../membrane/index.js';
import type { ServiceDef } from '../service/types.js';
import { compileFilter, type MethodShape, methodsFilterCanMatch, structFieldNames, type TapFilter } from './filter.js';

/**
 * The side socket behind `cell tap`: `<socketDir>/<name>.tap.sock`. A tap client sends one JSON line
 * `{"filter": "..."}`; the server answers `{"hello": {...}}` (or `{"error": "..."}`) and then streams
 * one JSON line per finished request that passes the filter. The Membrane only pays for this while
 * a client is attached: it holds `tap = null` otherwise and tests that single field per request.
 *
 * Like the Membrane's own socket, each instance binds a unique path and renames it over the public
 * one, so a hot swap moves new tap clients to the new instance without unlinking its socket.
 */

interface Subscriber {
  socket: Socket;
  filter: TapFilter;
  /** By method id: whether any call of that method could pass the filter. */
  methods: boolean[];
  dropped: number;
}

/** A slow tap client must never slow the cell: past this much unsent output, events are dropped. */
const MAX_BUFFERED = 1 << 20;

/** JSON with 64-bit integers as decimal strings and byte fields as short hex previews. */
export function tapJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => {
    if (typeof v === 'bigint') return v.toString();
    if (v instanceof Uint8Array) {
      const hex = Buffer.from(v.buffer, v.byteOffset, Math.min(v.byteLength, 32)).toString('hex');
      return `<${v.byteLength} bytes ${hex}${v.byteLength > 32 ? '…' : ''}>`;
    }
    return v;
  });
}

export class TapServer implements CallObserver {
  readonly cell: string;
  readonly path: string;
  private readonly service: ServiceDef;
  private listener: PrivateListener | undefined;
  private readonly subscribers = new Set<Subscriber>();
  /**
   * By method id, 1 while some attached client's filter could match a call of that method. The
   * Membrane decodes and reports only those calls: a tap filtered to one method costs the others
   * nothing.
   */
  readonly wanted: Uint8Array;
  private readonly shapes: MethodShape[];
  /** Called with true when the first client attaches and false when the last one leaves. */
  onActiveChange: ((active: boolean) => void) | undefined;

  constructor(opts: { cell: string; service: ServiceDef; path: string }) {
    this.cell = opts.cell;
    this.service = opts.service;
    this.path = opts.path;
    this.wanted = new Uint8Array(opts.service.byId.length);
    this.shapes = opts.service.byId.map((m) => ({
      name: m.name,
      requestFields: structFieldNames(m.input.genome),
      replyFields: structFieldNames(m.output.genome),
    }));
  }

  private recomputeWanted(): void {
    this.wanted.fill(0);
    for (const sub of this.subscribers) {
      for (let i = 0; i < this.wanted.length; i++) if (sub.methods[i]) this.wanted[i] = 1;
    }
  }

  get active(): boolean {
    return this.subscribers.size > 0;
  }

  async listen(): Promise<void> {
    // Half-open off: a tap client that ends its side is done.
    this.listener = await PrivateListener.listen(this.path, (socket) => this.accept(socket), false);
  }

  private accept(socket: Socket): void {
    socket.setEncoding('utf8');
    let buffered = '';
    const onData = (chunk: string) => {
      buffered += chunk;
      const nl = buffered.indexOf('\n');
      if (nl < 0) {
        if (buffered.length > 64 * 1024) socket.destroy();
        return;
      }
      socket.off('data', onData);
      let filter: TapFilter;
      let methods: boolean[];
      try {
        const req = JSON.parse(buffered.slice(0, nl)) as { filter?: unknown };
        const src = typeof req.filter === 'string' ? req.filter : '';
        filter = compileFilter(src);
        methods = methodsFilterCanMatch(src, this.shapes);
      } catch (err) {
        socket.end(`${JSON.stringify({ error: (err as Error).message })}\n`);
        return;
      }
      const sub: Subscriber = { socket, filter, methods, dropped: 0 };
      this.subscribers.add(sub);
      this.recomputeWanted();
      socket.write(`${JSON.stringify({ hello: { cell: this.cell, service: this.service.name, pid: process.pid } })}\n`);
      if (this.subscribers.size === 1) this.onActiveChange?.(true);
      // Anything else the client sends is ignored; it detaches by closing.
      socket.resume();
    };
    socket.on('data', onData);
    const drop = () => {
      for (const s of this.subscribers) {
        if (s.socket === socket) {
          this.subscribers.delete(s);
          this.recomputeWanted();
          if (this.subscribers.size === 0) this.onActiveChange?.(false);
        }
      }
    };
    socket.on('close', drop);
    socket.on('error', drop);
  }

  /** Decodes a request payload for the tap; called at arrival, while the bytes are still valid. */
  decodeRequest(methodId: number, bytes: Uint8Array, offset?: number, length?: number): unknown {
    try {
      return this.service.byId[methodId]?.input.decode(bytes, offset, length);
    } catch (err) {
      return { undecodable: (err as Error).message };
    }
  }

  /** CallObserver: a wanted call arrived; its decoded request comes back to `end`. */
  begin(methodId: number, bytes: Uint8Array, offset: number, length: number): unknown {
    return this.decodeRequest(methodId, bytes, offset, length);
  }

  /** CallObserver: a wanted call finished; a failure is published with its error code. */
  end(
    methodId: number,
    requestId: number,
    request: unknown,
    reply: unknown,
    error: unknown,
    latencyNs: number,
    bytesIn: number,
    bytesOut: number,
  ): void {
    const failed = bytesOut < 0;
    const why = failed
      ? isCellError(error)
        ? error.code
        : error instanceof Error
          ? error.message
          : 'E_ENCODE'
      : undefined;
    this.publish(methodId, requestId, request, reply, why, latencyNs, bytesIn, failed ? 0 : bytesOut);
  }

  /** Sends one finished request to every attached client whose filter it passes. */
  publish(
    methodId: number,
    id: number,
    request: unknown,
    reply: unknown,
    error: string | undefined,
    latencyNs: number,
    bytesIn: number,
    bytesOut: number,
  ): void {
    const method = this.service.byId[methodId]?.name ?? `#${methodId}`;
    const event = { method, id, ok: error === undefined, error, latencyNs, bytesIn, bytesOut, request, reply };
    let line: string | undefined;
    for (const sub of this.subscribers) {
      if (!sub.methods[methodId]) continue;
      let pass: boolean;
      try {
        pass = sub.filter(event);
      } catch {
        pass = false;
      }
      if (!pass) continue;
      if (sub.socket.writableLength > MAX_BUFFERED) {
        sub.dropped++;
        continue;
      }
      line ??= `${tapJson({ t: Date.now(), ...event, latencyNs: undefined, latency_ns: latencyNs })}\n`;
      if (sub.dropped > 0) {
        sub.socket.write(`${JSON.stringify({ dropped: sub.dropped })}\n`);
        sub.dropped = 0;
      }
      sub.socket.write(line);
    }
  }

  async close(): Promise<void> {
    const listener = this.listener;
    this.listener = undefined;
    for (const s of this.subscribers) s.socket.end();
    if (this.subscribers.size > 0) {
      this.subscribers.clear();
      this.recomputeWanted();
      this.onActiveChange?.(false);
    }
    await listener?.close();
  }
}
