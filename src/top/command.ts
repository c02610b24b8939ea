// `cell top [--plain] [--interval ms] [--count n]`: the dashboard over the Root when it runs, else
// over the cells found in the socket directory.

import type { TopDataSource } from '../observation/index.js';
import { SocketScanSource } from '../observation/index.js';
import { intOption, parseCommand, positiveOption } from '../terminal/args.js';
import { runTop } from './index.js';

export interface TopCommandDeps {
  /** The Root-backed source, when a Root answers; undefined falls back to scanning sockets. */
  rootSource?: () => Promise<TopDataSource | undefined>;
}

export const TOP_USAGE = `usage: cell top [--plain] [--json] [--interval <ms>] [--count <n>]

A live dashboard of the cells on this host: state, pid, uptime, restarts, transport, requests per
second with a sparkline, p50/p99 latency, CPU and memory. Keys: q quit, ↑/↓ or j/k select,
enter show log lines, w swap, R restart, sort by n name / t req/s / p p99 / c cpu / m rss / x restarts
(the same key again flips the order). When stdout is not a terminal (or with --plain) it prints one
line per cell every interval instead; --json prints those samples as one JSON object per line;
--count stops after that many samples.`;

const SPEC = {
  usage: TOP_USAGE,
  options: {
    plain: { type: 'boolean' },
    json: { type: 'boolean' },
    interval: { type: 'string' },
    count: { type: 'string' },
  },
  positionals: [0, 0],
} as const;

export async function runTopCommand(args: string[], deps: TopCommandDeps = {}): Promise<number> {
  const parsed = parseCommand(args, SPEC);
  if (parsed.help) {
    process.stdout.write(`${TOP_USAGE}\n`);
    return 0;
  }
  const { values } = parsed;
  const intervalMs = positiveOption(values.interval, '--interval', TOP_USAGE) ?? 1000;
  const iterations = intOption(values.count, '--count', TOP_USAGE, { min: 1 });
  const source = (await deps.rootSource?.()) ?? new SocketScanSource();
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await runTop({
      source,
      intervalMs,
      plain: values.plain === true || values.json === true,
      json: values.json === true,
      iterations,
      signal: controller.signal,
    });
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
  return 0;
}
