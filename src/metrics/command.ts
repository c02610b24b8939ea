// `cell metrics [--serve <port>]`: Prometheus text for every cell, once or served on localhost.
import { CellError } from '../errors/index.js';
import { SocketScanSource } from '../top/scan.js';
import type { TopDataSource } from '../top/source.js';
import { formatCellMetrics } from './prometheus.js';
import { serveMetrics, toMetricsInput } from './serve.js';

export { toMetricsInput } from './serve.js';

export const METRICS_USAGE = `usage: cell metrics [--serve <port>]

Prints every cell's metrics in the Prometheus text format: state, restarts, uptime, CPU, memory and,
per method, requests, errors, in-flight, bytes and a latency histogram. With --serve, answers
GET /metrics on 127.0.0.1:<port> until stopped.`;

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
