import { createConnection } from 'node:net';
import { CellError } from '../errors/index.js';
import { tapSocketPath } from '../paths/index.js';
import { visible } from '../terminal/visible.js';
import { formatLatency } from '../top/format.js';

/** One line of a tap stream as the client sees it. */
export interface TapRecord {
  readonly t: number;
  readonly method: string;
  readonly id: number;
  readonly ok: boolean;
  readonly error?: string;
  readonly latency_ns: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly request?: unknown;
  readonly reply?: unknown;
}

export interface TapHello {
  readonly cell: string;
  readonly service: string;
  readonly pid: number;
}

export interface TapSession {
  readonly hello: TapHello;
  /** Yields records until the cell goes away or `close()` is called. */
  records(): AsyncIterableIterator<TapRecord | { dropped: number }>;
  close(): void;
}

/** Attaches to a cell's tap socket with a filter (see src/tap/filter.ts for the grammar). */
export async function openTap(cell: string, filter = '', path = tapSocketPath(cell)): Promise<TapSession> {
  const socket = createConnection(path);
  socket.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', (err) =>
      reject(
        new CellError('E_CELL_NOT_FOUND', `no tap socket at ${path} (${(err as NodeJS.ErrnoException).code}).`, {
          cell,
          fix: `start the cell first (cell spawn ${cell}) and check it serves with a Membrane.`,
          cause: err,
        }),
      ),
    );
  });
  socket.write(`${JSON.stringify({ filter })}\n`);

  const queue: string[] = [];
  let pending: string = '';
  let ended = false;
  let wake: (() => void) | undefined;
  socket.on('data', (chunk: string) => {
    pending += chunk;
    // The socket is the cell's: a line that never ends must not grow the operator's process without bound.
    if (pending.length > MAX_LINE && pending.indexOf('\n') < 0) {
      queue.push('');
      pending = '';
      socket.destroy();
    }
    let nl = pending.indexOf('\n');
    while (nl >= 0) {
      queue.push(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
      nl = pending.indexOf('\n');
    }
    wake?.();
  });
  const finish = () => {
    ended = true;
    wake?.();
  };
  socket.on('close', finish);
  socket.on('error', finish);

  const next = async (): Promise<string | undefined> => {
    while (queue.length === 0 && !ended) await new Promise<void>((r) => (wake = r));
    wake = undefined;
    return queue.shift();
  };

  const first = await next();
  let hello: TapHello;
  try {
    hello = tapHello(cell, first);
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return {
    hello,
    async *records() {
      for (;;) {
        const line = await next();
        if (line === undefined) return;
        try {
          yield tapRecord(cell, line);
        } catch (err) {
          socket.destroy();
          throw err;
        }
      }
    },
    close: () => socket.destroy(),
  };
}

/** A tap line is at most this long (requests and replies are already cut short by the server). */
const MAX_LINE = 1 << 20;

function unreadable(cell: string, what: string): CellError {
  return new CellError('E_PROTOCOL', `the tap socket of '${cell}' sent ${what}.`, {
    cell,
    fix: `the tap socket is the cell's own, so a cell that does not run Cell's Membrane can write anything there: restart it (cell restart ${cell}) and tap again.`,
  });
}

function parseObject(line: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(line);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The greeting, checked: the cell writes it, so nothing of it is taken on trust. */
function tapHello(cell: string, line: string | undefined): TapHello {
  if (line === undefined) {
    throw new CellError('E_CELL_NOT_FOUND', 'the tap socket closed before greeting.', {
      cell,
      fix: `check that the cell runs (cell status ${cell}).`,
    });
  }
  const v = parseObject(line);
  if (v !== undefined && typeof v.error === 'string') {
    throw new CellError('E_INVALID_ARGUMENT', visible(v.error), { cell, fix: 'check the filter (cell tap --help).' });
  }
  const h = v?.hello as Record<string, unknown> | undefined;
  if (h === null || typeof h !== 'object' || typeof h.cell !== 'string' || typeof h.service !== 'string') {
    throw unreadable(cell, 'an unreadable greeting');
  }
  if (!Number.isSafeInteger(h.pid)) throw unreadable(cell, 'an unreadable greeting');
  return { cell: visible(h.cell), service: visible(h.service), pid: h.pid as number };
}

const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x >= 0;

/** One record, checked field by field; its strings made safe to show (visible()). */
function tapRecord(cell: string, line: string): TapRecord | { dropped: number } {
  const v = parseObject(line);
  if (v === undefined) throw unreadable(cell, 'an unreadable record');
  if ('dropped' in v) {
    if (!isCount(v.dropped)) throw unreadable(cell, 'an unreadable record');
    return { dropped: v.dropped };
  }
  const timeOk = isCount(v.t) && v.t < 8.64e15;
  const fieldsOk =
    typeof v.method === 'string' &&
    isCount(v.id) &&
    typeof v.ok === 'boolean' &&
    (v.error === undefined || typeof v.error === 'string') &&
    isCount(v.latency_ns) &&
    isCount(v.bytesIn) &&
    isCount(v.bytesOut);
  if (!timeOk || !fieldsOk) throw unreadable(cell, 'an unreadable record');
  const r = v as unknown as TapRecord;
  return { ...r, method: visible(r.method), ...(r.error === undefined ? {} : { error: visible(r.error) }) };
}

function compact(value: unknown, max = 160): string {
  const s = JSON.stringify(value) ?? '';
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** `12:00:00.123 #7 place_order 42µs {"amount":150} → {"accepted":true}` */
export function formatTapRecord(r: TapRecord | { dropped: number }): string {
  if ('dropped' in r) return `… ${r.dropped} events dropped (the tap could not keep up)`;
  const time = new Date(r.t).toISOString().slice(11, 23);
  const outcome = r.ok ? compact(r.reply) : `ERROR ${r.error}`;
  return `${time} #${r.id} ${r.method} ${formatLatency(r.latency_ns)} ${compact(r.request)} → ${outcome}`;
}
