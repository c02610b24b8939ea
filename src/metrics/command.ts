// `cell metrics [--serve <port>]`: Prometheus text for every cell, once or served on localhost.
import { createServer } from 'node:http';
import { CellError } from '../errors/index.js';
import { SocketScanSource } from '../top/scan.js';
import type { CellSample, TopDataSource } from '../top/source.js';
import { type CellMetricsInput, formatCellMetrics } from './prometheus.js';

export const METRICS_USAGE = `usage: cell metrics [--serve <port>]

Prints every cell's metrics in the Prometheus text format: state, restarts, uptime, CPU, memory and,
per method, requests, errors, in-flight, bytes and a latency histogram. With --serve, answers
GET /metrics on 127.0.0.1:<port> until stopped.`;

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

export async function runMetricsCommand(
  args: string[],
  deps: { rootSource?: () => Promise<TopDataSource | undefined> } = {},
): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${METRICS_USAGE}\n`);
    return 0;
  }
  const source = (await deps.rootSource?.()) ?? new SocketScanSource();
  const i = args.indexOf('--serve');
  if (i < 0) {
    try {
      process.stdout.write(formatCellMetrics(toMetricsInput(await source.sample())));
    } finally {
      await source.close?.();
    }
    return 0;
  }
  const port = Number(args[i + 1]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new CellError('E_INVALID_ARGUMENT', '--serve needs a port number.', { fix: METRICS_USAGE });
  }
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && req.url !== '/')) {
      res.writeHead(404).end('not found; try /metrics\n');
      return;
    }
    source.sample().then(
      (samples) => {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end(formatCellMetrics(toMetricsInput(samples)));
      },
      (err) => res.writeHead(500).end(`${(err as Error).message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  process.stderr.write(
    `serving Prometheus metrics on http://127.0.0.1:${typeof address === 'object' && address ? address.port : port}/metrics\n`,
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  server.close();
  await source.close?.();
  return 0;
}
