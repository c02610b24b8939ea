/** Pure formatting helpers for the dashboard: no terminal, no I/O, so tests pin them exactly. */

const SPARK = '▁▂▃▄▅▆▇█';

/** The last `width` values as block characters scaled to the largest of them; blanks pad the left. */
export function sparkline(values: readonly number[], width: number): string {
  const tail = values.slice(-width);
  const max = Math.max(0, ...tail);
  let out = ' '.repeat(Math.max(0, width - tail.length));
  for (const v of tail) {
    if (!(v > 0) || max === 0) out += v > 0 ? SPARK[0] : ' ';
    else out += SPARK[Math.min(SPARK.length - 1, Math.floor((v / max) * (SPARK.length - 1) + 0.5))];
  }
  return out;
}

export function formatLatency(ns: number | undefined): string {
  if (ns === undefined || !Number.isFinite(ns)) return '-';
  if (ns < 1_000) return `${Math.round(ns)}ns`;
  if (ns < 1_000_000) return `${(ns / 1_000).toFixed(ns < 10_000 ? 1 : 0)}µs`;
  if (ns < 1_000_000_000) return `${(ns / 1_000_000).toFixed(ns < 10_000_000 ? 1 : 0)}ms`;
  return `${(ns / 1_000_000_000).toFixed(1)}s`;
}

export function formatBytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  if (n < 1024) return `${n}B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)}K`;
  if (n < 1024 * 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(1)}M`;
  return `${(n / (1024 * 1024 * 1024)).toFixed(2)}G`;
}

export function formatUptime(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '-';
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}

export function formatRate(perSecond: number | undefined): string {
  if (perSecond === undefined || !Number.isFinite(perSecond)) return '-';
  if (perSecond < 1000) return perSecond < 10 && perSecond > 0 ? perSecond.toFixed(1) : String(Math.round(perSecond));
  if (perSecond < 1_000_000) return `${(perSecond / 1000).toFixed(perSecond < 10_000 ? 1 : 0)}k`;
  return `${(perSecond / 1_000_000).toFixed(2)}M`;
}

export function formatPercent(p: number | undefined): string {
  return p === undefined || !Number.isFinite(p) ? '-' : `${p.toFixed(1)}%`;
}

/** Pads or cuts `s` to exactly `width` columns (the dashboard's text is single-width). */
export function fit(s: string, width: number, align: 'left' | 'right' = 'left'): string {
  if (s.length > width) return width <= 1 ? s.slice(0, width) : `${s.slice(0, width - 1)}…`;
  return align === 'left' ? s.padEnd(width) : s.padStart(width);
}
