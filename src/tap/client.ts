import { createConnection } from 'node:net';
import { CellError } from '../errors/index.js';
import { tapSocketPath } from '../paths/index.js';
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
  const parsed = first === undefined ? undefined : (JSON.parse(first) as { hello?: TapHello; error?: string });
  if (parsed?.hello === undefined) {
    socket.destroy();
    throw new CellError('E_INVALID_ARGUMENT', parsed?.error ?? 'the tap socket closed before greeting.', { cell });
  }
  return {
    hello: parsed.hello,
    async *records() {
      for (;;) {
        const line = await next();
        if (line === undefined) return;
        yield JSON.parse(line) as TapRecord | { dropped: number };
      }
    },
    close: () => socket.destroy(),
  };
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
