import { fit, formatBytes, formatLatency, formatPercent, formatRate, formatUptime, sparkline } from './format.js';
import type { CellRow, SortKey, TopModel } from './model.js';

/** Column layout shared by the live view and its tests: [title, width, align, sort key it shows]. */
const COLUMNS: ReadonlyArray<[string, number, 'left' | 'right', SortKey | undefined]> = [
  ['CELL', 18, 'left', 'name'],
  ['STATE', 9, 'left', undefined],
  ['PID', 7, 'right', undefined],
  ['UPTIME', 7, 'right', undefined],
  ['RST', 4, 'right', 'restarts'],
  ['TRANSPORT', 10, 'left', undefined],
  ['REQ/S', 7, 'right', 'rate'],
  ['', 20, 'left', undefined],
  ['P50', 7, 'right', undefined],
  ['P99', 7, 'right', 'p99'],
  ['ERR', 5, 'right', undefined],
  ['CPU', 6, 'right', 'cpu'],
  ['RSS', 7, 'right', 'rss'],
];

export function headerLine(sortKey: SortKey, descending: boolean): string {
  return COLUMNS.map(([title, width, align, key]) => {
    const marked = key === sortKey ? `${title}${descending ? '↓' : '↑'}` : title;
    return fit(marked, width, align);
  }).join(' ');
}

export function rowCells(r: CellRow): string[] {
  const gen = r.generation !== undefined && r.generation > 0 ? `#${r.generation}` : '';
  return [
    r.name + gen,
    r.state,
    r.pid === undefined ? '-' : String(r.pid),
    formatUptime(r.uptimeSeconds),
    String(r.restarts),
    r.transport,
    formatRate(r.rate),
    sparkline(r.history, 20),
    formatLatency(r.p50),
    formatLatency(r.p99),
    String(r.errors),
    formatPercent(r.cpuPercent),
    formatBytes(r.rssBytes),
  ];
}

export function rowLine(r: CellRow): string {
  return rowCells(r)
    .map((cell, i) => fit(cell, COLUMNS[i][1], COLUMNS[i][2]))
    .join(' ');
}

export const HELP_LINE =
  'q quit  ↑/↓ j/k select  enter logs  w swap  R restart  sort: n name  t req/s  p p99  c cpu  m rss  x restarts (again flips)';

export function titleLine(model: TopModel, now: number): string {
  const n = model.rows.length;
  const via = model.sourceLabel === undefined ? '' : ` (${model.sourceLabel})`;
  return `cell top — ${n} cell${n === 1 ? '' : 's'}${via} — ${new Date(now).toISOString().slice(11, 19)} UTC`;
}

/** What the table has no room for, about the selected cell: how it runs and how it last ended. */
export function detailLine(r: CellRow | undefined): string {
  if (r === undefined) return '';
  const parts = [`${r.name}${r.generation !== undefined && r.generation > 0 ? ` generation ${r.generation}` : ''}`];
  if (r.sandbox !== undefined) parts.push(`sandbox ${r.sandbox}`);
  if (r.lastExit !== undefined) parts.push(`last exit ${r.lastExit === '' ? '-' : r.lastExit}`);
  if (r.error !== undefined && r.error !== '') parts.push(`error: ${r.error}`);
  return parts.join(' · ');
}

/** The whole screen as lines of text (the ink view styles these; plain terminals could print them). */
export function screenLines(model: TopModel, now = Date.now()): string[] {
  const lines = [
    titleLine(model, now),
    headerLine(model.sortKey, model.descending),
    ...model.rows.map((r) => `${r.name === model.selected ? '>' : ' '}${rowLine(r)}`),
  ];
  if (model.rows.length === 0) lines.push(' (no cells; start one with `cell spawn <name>`)');
  else lines.push(` ${detailLine(model.selectedRow)}`);
  if (model.logsOpen) {
    lines.push('', `── logs: ${model.selected ?? '-'} ──`);
    lines.push(...(model.logLines.length > 0 ? model.logLines : ['(no log lines yet)']));
  }
  lines.push('', model.message, HELP_LINE);
  return lines;
}

/** One line per cell for non-TTY output (pipes, CI logs): key=value pairs, stable and grep-able. */
export function plainLines(rows: readonly CellRow[], now = Date.now()): string[] {
  const t = new Date(now).toISOString();
  return rows.map(
    (r) =>
      `${t} cell=${r.name} state=${r.state} pid=${r.pid ?? '-'} uptime=${formatUptime(r.uptimeSeconds)} ` +
      `restarts=${r.restarts} transport=${r.transport} gen=${r.generation ?? '-'} req_s=${formatRate(r.rate)} ` +
      `p50=${formatLatency(r.p50)} p99=${formatLatency(r.p99)} errors=${r.errors} cpu=${formatPercent(r.cpuPercent)} ` +
      `rss=${formatBytes(r.rssBytes)}` +
      (r.sandbox === undefined ? '' : ` sandbox=${r.sandbox}`) +
      (r.lastExit === undefined ? '' : ` last_exit=${JSON.stringify(r.lastExit)}`),
  );
}
