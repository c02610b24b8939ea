// `cell top [--plain] [--interval ms] [--count n]`: the dashboard over the Root when it runs, else
// over the cells found in the socket directory.
import { CellError } from '../errors/index.js';
import { runTop } from './index.js';
import { SocketScanSource } from './scan.js';
import type { TopDataSource } from './source.js';

export interface TopCommandDeps {
  /** The Root-backed source, when a Root answers; undefined falls back to scanning sockets. */
  rootSource?: () => Promise<TopDataSource | undefined>;
}

export const TOP_USAGE = `usage: cell top [--plain] [--interval <ms>] [--count <n>]

A live dashboard of the cells on this host: state, pid, uptime, restarts, transport, requests per
second with a sparkline, p50/p99 latency, CPU and memory. Keys: q quit, ↑/↓ or j/k select,
enter show log lines, w swap, R restart, sort by n name / t req/s / p p99 / c cpu / m rss / x restarts
(the same key again flips the order). When stdout is not a terminal (or with --plain) it prints one
line per cell every interval instead; --count stops after that many samples.`;

function numberFlag(args: string[], name: string): number | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = Number(args[i + 1]);
  if (!Number.isFinite(v) || v <= 0) {
    throw new CellError('E_INVALID_ARGUMENT', `${name} needs a positive number.`, { fix: TOP_USAGE });
  }
  return v;
}

export async function runTopCommand(args: string[], deps: TopCommandDeps = {}): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${TOP_USAGE}\n`);
    return 0;
  }
  const intervalMs = numberFlag(args, '--interval') ?? 1000;
  const iterations = numberFlag(args, '--count');
  const source = (await deps.rootSource?.()) ?? new SocketScanSource();
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await runTop({ source, intervalMs, plain: args.includes('--plain'), iterations, signal: controller.signal });
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
  return 0;
}
