// `cell metrics [--serve <port>]`: Prometheus text for every cell, once or served on localhost.
import { intOption, parseCommand, UsageError } from '../terminal/args.js';
import { formatCellMetrics } from './prometheus.js';
import { SocketScanSource } from './scan.js';
import { serveMetrics, toMetricsInput } from './serve.js';
import type { TopDataSource } from './source.js';

export const METRICS_USAGE = `usage: cell metrics [--serve <port>] [--json]

Prints every cell's metrics in the Prometheus text format: state, restarts, uptime, CPU, memory and,
per method, requests, errors, in-flight, bytes and a latency histogram. With --serve, answers
GET /metrics on 127.0.0.1:<port> until stopped (port 0 picks a free one). --json prints the same
samples as one JSON document instead.`;

const SPEC = {
  usage: METRICS_USAGE,
  options: { serve: { type: 'string' }, json: { type: 'boolean' } },
  positionals: [0, 0],
} as const;

export async function runMetricsCommand(
  args: string[],
  deps: { rootSource?: () => Promise<TopDataSource | undefined> } = {},
): Promise<number> {
  const parsed = parseCommand(args, SPEC);
  if (parsed.help) {
    process.stdout.write(`${METRICS_USAGE}\n`);
    return 0;
  }
  const port = intOption(parsed.values.serve, '--serve', METRICS_USAGE, { min: 0, max: 65535 });
  if (port !== undefined && parsed.values.json === true) {
    throw new UsageError('--serve and --json do not go together', METRICS_USAGE);
  }
  const source = (await deps.rootSource?.()) ?? new SocketScanSource();
  if (port === undefined) {
    try {
      const samples = await source.sample();
      if (parsed.values.json === true) process.stdout.write(`${JSON.stringify({ cells: samples }, jsonSafe)}\n`);
      else process.stdout.write(formatCellMetrics(toMetricsInput(samples)));
    } finally {
      await source.close?.();
    }
    return 0;
  }
  let server: Awaited<ReturnType<typeof serveMetrics>>;
  try {
    server = await serveMetrics({ port, collect: () => source.sample() });
  } catch (err) {
    await source.close?.();
    throw err;
  }
  process.stderr.write(`serving Prometheus metrics on ${server.url}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.close();
  await source.close?.();
  return 0;
}

/** bigints (byte and request counters) as decimal strings. */
function jsonSafe(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
