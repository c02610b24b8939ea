// `cell top`: a live dashboard over a TopDataSource. On a terminal it is an ink (React) app with
// keys; otherwise it prints one plain line per cell every interval, for pipes and logs.

import { createElement as h } from 'react';
import type { TopDataSource } from '../observation/index.js';
import { render } from './ink.js';
import { TopModel } from './model.js';
import { plainLines } from './render.js';
import { TopApp } from './view.js';

export type { CellSample, TopDataSource } from '../observation/index.js';
export { formatLatency, formatUptime, sparkline } from './format.js';
export { TopModel } from './model.js';
export { plainLines, screenLines } from './render.js';
export { TopScreen } from './view.js';

export interface TopOptions {
  source: TopDataSource;
  /** Refresh period; default 1000 ms. */
  intervalMs?: number;
  stdout?: NodeJS.WriteStream;
  stdin?: NodeJS.ReadStream;
  /** Force plain lines even on a terminal. */
  plain?: boolean;
  /** Plain mode only: stop after this many samples (default: run until aborted). */
  iterations?: number | undefined;
  /** Plain mode only: one JSON object per cell and sample instead of key=value lines. */
  json?: boolean;
  signal?: AbortSignal;
}

export async function runTop(opts: TopOptions): Promise<void> {
  const stdout = opts.stdout ?? process.stdout;
  const stdin = opts.stdin ?? process.stdin;
  const intervalMs = opts.intervalMs ?? 1000;
  const model = new TopModel(opts.source);
  try {
    if (opts.plain || !stdout.isTTY || !stdin.isTTY) {
      const iterations = opts.iterations ?? Number.POSITIVE_INFINITY;
      await runPlain(model, stdout, intervalMs, iterations, opts.signal, opts.json === true);
      return;
    }
    const app = render(h(TopApp, { model, intervalMs }), { stdout, stdin, exitOnCtrlC: true, patchConsole: true });
    opts.signal?.addEventListener('abort', () => app.unmount(), { once: true });
    await app.waitUntilExit();
  } finally {
    await opts.source.close?.();
  }
}

async function runPlain(
  model: TopModel,
  stdout: NodeJS.WritableStream,
  intervalMs: number,
  iterations: number,
  signal: AbortSignal | undefined,
  json: boolean,
): Promise<void> {
  for (let i = 0; i < iterations && !signal?.aborted; i++) {
    if (i > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, intervalMs);
        signal?.addEventListener(
          'abort',
          () => {
            clearTimeout(t);
            resolve();
          },
          { once: true },
        );
      });
      if (signal?.aborted) break;
    }
    await model.refresh();
    if (json) {
      const at = new Date().toISOString();
      const lines = model.rows.map((r) => JSON.stringify({ at, ...r, history: undefined }));
      if (model.message) lines.push(JSON.stringify({ at, note: model.message }));
      if (lines.length > 0) stdout.write(`${lines.join('\n')}\n`);
      continue;
    }
    const lines = plainLines(model.rows);
    if (model.message) lines.push(`${new Date().toISOString()} note=${JSON.stringify(model.message)}`);
    if (lines.length > 0) stdout.write(`${lines.join('\n')}\n`);
    else stdout.write(`${new Date().toISOString()} cells=0\n`);
  }
}
