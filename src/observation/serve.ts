// The Prometheus endpoint behind `cell metrics --serve <port>` and the Root's metrics port: GET
// /metrics answers the text format for whatever `collect` returns at scrape time.
import { createServer, type Server } from 'node:http';
import { CellError } from '../errors/index.js';
import { type CellMetricsInput, formatCellMetrics } from './prometheus.js';
import type { CellSample } from './source.js';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Turns dashboard samples into exporter input (uptime only for running cells). */
export function toMetricsInput(samples: readonly CellSample[], now = Date.now()): CellMetricsInput[] {
  return samples.map((s) => ({
    cell: s.name,
    state: s.state,
    pid: s.pid,
    restarts: s.restarts,
    uptimeSeconds: s.startedAt !== undefined && s.state === 'running' ? (now - s.startedAt) / 1000 : 0,
    cpuSecondsTotal: s.cpuSeconds,
    cpuPercent: s.cpuPercent,
    rssBytes: s.rssBytes,
    methods: s.metrics?.methods ?? [],
  }));
}

export interface ServeMetricsOptions {
  /** TCP port; 0 picks a free one (see `port` on the result). */
  port: number;
  /** Default 127.0.0.1: metrics name every cell and method, so they stay on this host unless asked. */
  host?: string;
  /** Samples every cell at scrape time (e.g. `collectCellSamples` over the Root's registry). */
  collect: () => Promise<readonly CellSample[]>;
}

export interface MetricsServer {
  readonly host: string;
  readonly port: number;
  /** `http://host:port/metrics` */
  readonly url: string;
  /** Scrapes answered so far (200 responses). */
  readonly scrapes: number;
  /** Scrapes received and waiting for a collection to finish. */
  readonly waiting: number;
  close(): Promise<void>;
}

/**
 * Serves GET /metrics (and /) in the Prometheus text format. Scrapes that arrive while a collection
 * runs share it: CPU percentages are deltas between samples, and a burst of scrapers should not
 * probe every cell once each.
 */
export async function serveMetrics(opts: ServeMetricsOptions): Promise<MetricsServer> {
  const host = opts.host ?? '127.0.0.1';
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new CellError('E_INVALID_ARGUMENT', `metrics port ${opts.port} is not a TCP port number.`, {
      fix: 'give a port between 1 and 65535 (0 picks a free one).',
    });
  }
  let running: Promise<string> | null = null;
  const scrape = (): Promise<string> => {
    if (running === null) {
      running = opts
        .collect()
        .then((samples) => formatCellMetrics(toMetricsInput(samples)))
        .finally(() => {
          running = null;
        });
    }
    return running;
  };
  let scrapes = 0;
  let waiting = 0;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path !== '/metrics' && path !== '/') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; metrics are at /metrics\n');
      return;
    }
    waiting++;
    scrape().then(
      (text) => {
        waiting--;
        scrapes++;
        res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE, 'content-length': Buffer.byteLength(text) });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err) => {
        waiting--;
        res
          .writeHead(500, { 'content-type': 'text/plain' })
          .end(`collecting metrics failed: ${(err as Error).message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new CellError('E_INVALID_ARGUMENT', `cannot serve metrics on ${host}:${opts.port}: ${err.message}`, {
          cause: err,
          fix: err.code === 'EADDRINUSE' ? 'pick another port (or stop what listens there).' : undefined,
        }),
      ),
    );
    server.listen(opts.port, host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : opts.port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    host,
    port,
    url: `http://${urlHost}:${port}/metrics`,
    get scrapes() {
      return scrapes;
    },
    get waiting() {
      return waiting;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
