import { Histogram } from '../metrics/index.js';
import type { CellSample, TopDataSource } from '../observation/index.js';

export type SortKey = 'name' | 'rate' | 'p99' | 'cpu' | 'rss' | 'restarts';
/** One dashboard line: the sample plus what the dashboard derived from consecutive samples. */
export interface CellRow {
  readonly name: string;
  readonly state: string;
  readonly pid: number | undefined;
  readonly uptimeSeconds: number | undefined;
  readonly restarts: number;
  readonly transport: string;
  readonly generation: number | undefined;
  /** Requests per second over the last interval. */
  readonly rate: number | undefined;
  /** Recent rates, oldest first, for the sparkline. */
  readonly history: readonly number[];
  /** Latency percentiles (ns) over the last interval, or since start when the interval had no calls. */
  readonly p50: number | undefined;
  readonly p99: number | undefined;
  readonly errors: number;
  readonly cpuPercent: number | undefined;
  readonly rssBytes: number | undefined;
  readonly sandbox?: string | undefined;
  readonly lastExit?: string | undefined;
  readonly error?: string | undefined;
}

interface Previous {
  at: number;
  pid: number | undefined;
  requests: number;
  latency: Histogram;
}

const HISTORY = 60;

/**
 * The dashboard's state and behaviour, with no terminal in it: it turns samples into rows, keeps
 * sort order, selection and the log pane, and runs actions. The ink view and the plain-line printer
 * both render from it.
 */
export class TopModel {
  rows: CellRow[] = [];
  sortKey: SortKey = 'name';
  descending = false;
  selected: string | undefined;
  logsOpen = false;
  logLines: string[] = [];
  /** Where the samples come from (the source's label), shown in the header. */
  readonly sourceLabel: string | undefined;
  /** The last action's outcome or the last error, shown in the status line. */
  message = '';
  lastSampleAt = 0;

  private readonly previous = new Map<string, Previous>();
  private readonly histories = new Map<string, number[]>();
  private readonly listeners = new Set<() => void>();
  private busy = false;

  constructor(
    private readonly source: TopDataSource,
    private readonly logLineCount = 12,
  ) {
    this.sourceLabel = source.label;
  }

  /** The selected row. */
  get selectedRow(): CellRow | undefined {
    return this.rows.find((r) => r.name === this.selected);
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  /** Pulls one sample from the source (and the selected cell's log tail when the pane is open). */
  async refresh(now = Date.now()): Promise<void> {
    try {
      this.ingest(await this.source.sample(), now);
      if (this.logsOpen && this.selected !== undefined) {
        this.logLines = await this.source.logTail(this.selected, this.logLineCount);
      }
    } catch (err) {
      this.message = `sample failed: ${(err as Error).message}`;
    }
    this.changed();
  }

  /** Turns a sample into rows: rates and interval percentiles come from the previous sample. */
  ingest(samples: readonly CellSample[], now: number): void {
    const seen = new Set<string>();
    const rows: CellRow[] = [];
    for (const s of samples) {
      seen.add(s.name);
      const latency = new Histogram();
      let requests = 0;
      let errors = 0;
      for (const m of s.metrics?.methods ?? []) {
        requests += m.requests;
        errors += m.errors;
        latency.merge(m.latency);
      }
      const prev = this.previous.get(s.name);
      let rate: number | undefined;
      let interval = latency;
      if (s.metrics !== undefined && prev && prev.pid === s.pid && requests >= prev.requests && now > prev.at) {
        rate = ((requests - prev.requests) * 1000) / (now - prev.at);
        const delta = new Histogram();
        delta.merge(latency);
        if (delta.subtract(prev.latency) && delta.count > 0) interval = delta;
      }
      this.previous.set(s.name, { at: now, pid: s.pid, requests, latency });
      const history = this.histories.get(s.name) ?? [];
      if (rate !== undefined) {
        history.push(rate);
        if (history.length > HISTORY) history.shift();
      }
      this.histories.set(s.name, history);
      rows.push({
        name: s.name,
        state: s.state,
        pid: s.pid,
        uptimeSeconds: s.startedAt !== undefined && s.state === 'running' ? (now - s.startedAt) / 1000 : undefined,
        restarts: s.restarts,
        transport: s.transport,
        generation: s.generation,
        rate,
        history: [...history],
        p50: interval.count > 0 ? interval.percentile(0.5) : undefined,
        p99: interval.count > 0 ? interval.percentile(0.99) : undefined,
        errors,
        cpuPercent: s.cpuPercent,
        rssBytes: s.rssBytes,
        sandbox: s.sandbox,
        lastExit: s.lastExit,
        error: s.error,
      });
    }
    for (const name of [...this.previous.keys()]) {
      if (!seen.has(name)) {
        this.previous.delete(name);
        this.histories.delete(name);
      }
    }
    this.rows = sortRows(rows, this.sortKey, this.descending);
    if (this.selected === undefined || !seen.has(this.selected)) this.selected = this.rows[0]?.name;
    this.lastSampleAt = now;
  }

  /** Sorting by the same key again flips the direction. Numeric keys start largest-first. */
  setSort(key: SortKey): void {
    if (this.sortKey === key) this.descending = !this.descending;
    else {
      this.sortKey = key;
      this.descending = key !== 'name';
    }
    this.rows = sortRows(this.rows, this.sortKey, this.descending);
    this.changed();
  }

  moveSelection(delta: number): void {
    if (this.rows.length === 0) return;
    const i = Math.max(
      0,
      this.rows.findIndex((r) => r.name === this.selected),
    );
    const next = Math.min(this.rows.length - 1, Math.max(0, i + delta));
    if (this.rows[next].name !== this.selected) {
      this.selected = this.rows[next].name;
      this.logLines = [];
      if (this.logsOpen) void this.refreshLogs();
    }
    this.changed();
  }

  toggleLogs(): void {
    this.logsOpen = !this.logsOpen;
    this.logLines = [];
    if (this.logsOpen) void this.refreshLogs();
    this.changed();
  }

  private async refreshLogs(): Promise<void> {
    const name = this.selected;
    if (name === undefined) return;
    try {
      const lines = await this.source.logTail(name, this.logLineCount);
      if (this.selected === name) this.logLines = lines;
    } catch (err) {
      this.message = `logs of ${name}: ${(err as Error).message}`;
    }
    this.changed();
  }

  /** Runs swap or restart on the selected cell; one action at a time. */
  async act(action: 'swap' | 'restart'): Promise<void> {
    const name = this.selected;
    if (name === undefined || this.busy) return;
    this.busy = true;
    this.message = `${action} ${name}…`;
    this.changed();
    try {
      this.message = await (action === 'swap' ? this.source.swap(name) : this.source.restart(name));
    } catch (err) {
      this.message = `${action} ${name} failed: ${(err as Error).message}`;
    } finally {
      this.busy = false;
    }
    this.changed();
  }
}

function sortValue(r: CellRow, key: SortKey): number | string {
  switch (key) {
    case 'name':
      return r.name;
    case 'rate':
      return r.rate ?? -1;
    case 'p99':
      return r.p99 ?? -1;
    case 'cpu':
      return r.cpuPercent ?? -1;
    case 'rss':
      return r.rssBytes ?? -1;
    case 'restarts':
      return r.restarts;
  }
}

export function sortRows(rows: readonly CellRow[], key: SortKey, descending: boolean): CellRow[] {
  const dir = descending ? -1 : 1;
  return [...rows].sort((a, b) => {
    const x = sortValue(a, key);
    const y = sortValue(b, key);
    const c = x < y ? -1 : x > y ? 1 : 0;
    return c !== 0 ? c * dir : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
  });
}
