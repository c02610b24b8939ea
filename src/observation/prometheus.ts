import { CellError } from '../errors/index.js';
import type { MethodMetricsSnapshot } from '../metrics/index.js';
import { Histogram } from '../metrics/index.js';

/**
 * Prometheus text exposition format 0.0.4: one HELP and one TYPE line per metric family, then its
 * samples; histograms as cumulative `_bucket{le="…"}` series ending in `+Inf`, plus `_sum` and `_count`.
 */

export type Labels = Readonly<Record<string, string>>;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Label values escape backslash, double quote and newline. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text escapes backslash and newline (quotes stay as they are). */
export function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(v);
}

function formatLabels(labels: Labels | undefined, extra?: [string, string]): string {
  const parts: string[] = [];
  if (labels) {
    for (const k of Object.keys(labels)) {
      if (!LABEL_NAME.test(k) || k.startsWith('__')) {
        throw new CellError('E_INVALID_ARGUMENT', `invalid Prometheus label name ${JSON.stringify(k)}.`);
      }
      parts.push(`${k}="${escapeLabelValue(labels[k])}"`);
    }
  }
  if (extra) parts.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/** Default `le` bounds for request latency, in seconds: 1 µs … 10 s. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
  0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

export class PrometheusText {
  private readonly lines: string[] = [];
  private readonly seen = new Set<string>();

  private family(name: string, type: 'counter' | 'gauge' | 'histogram', help: string): void {
    if (!METRIC_NAME.test(name)) {
      throw new CellError('E_INVALID_ARGUMENT', `invalid Prometheus metric name ${JSON.stringify(name)}.`);
    }
    if (this.seen.has(name)) {
      throw new CellError('E_INVALID_ARGUMENT', `metric family ${name} written twice; group its samples.`);
    }
    this.seen.add(name);
    this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  }

  counter(name: string, help: string, samples: ReadonlyArray<{ labels?: Labels; value: number }>): this {
    this.family(name, 'counter', help);
    for (const s of samples) this.lines.push(`${name}${formatLabels(s.labels)} ${formatValue(s.value)}`);
    return this;
  }

  gauge(name: string, help: string, samples: ReadonlyArray<{ labels?: Labels; value: number }>): this {
    this.family(name, 'gauge', help);
    for (const s of samples) this.lines.push(`${name}${formatLabels(s.labels)} ${formatValue(s.value)}`);
    return this;
  }

  /**
   * A histogram family from nanosecond histograms, exported in seconds. A value counts under a bound
   * when its log-linear bucket lies wholly at or below it, so counts are exact to the histogram's
   * bucket precision (~3 %).
   */
  histogram(
    name: string,
    help: string,
    samples: ReadonlyArray<{ labels?: Labels; histogram: Histogram }>,
    boundsSeconds: readonly number[] = LATENCY_BUCKETS_SECONDS,
  ): this {
    this.family(name, 'histogram', help);
    for (const s of samples) {
      const h = s.histogram;
      for (const le of boundsSeconds) {
        const count = h.countAtOrBelow(Math.floor(le * 1e9));
        this.lines.push(`${name}_bucket${formatLabels(s.labels, ['le', formatValue(le)])} ${count}`);
      }
      this.lines.push(`${name}_bucket${formatLabels(s.labels, ['le', '+Inf'])} ${h.count}`);
      this.lines.push(`${name}_sum${formatLabels(s.labels)} ${formatValue(h.sum / 1e9)}`);
      this.lines.push(`${name}_count${formatLabels(s.labels)} ${h.count}`);
    }
    return this;
  }

  toString(): string {
    return this.lines.length === 0 ? '' : `${this.lines.join('\n')}\n`;
  }
}

/** One cell as the Root sees it: process facts plus its Membrane's per-method snapshot. */
export interface CellMetricsInput {
  readonly cell: string;
  readonly state: string;
  readonly pid?: number | undefined;
  readonly restarts: number;
  readonly uptimeSeconds: number;
  readonly cpuSecondsTotal?: number | undefined;
  readonly cpuPercent?: number | undefined;
  readonly rssBytes?: number | undefined;
  readonly methods: readonly MethodMetricsSnapshot[];
}

/** The Root's `cell metrics` output: every cell's process and per-method request metrics. */
export function formatCellMetrics(cells: readonly CellMetricsInput[]): string {
  const out = new PrometheusText();
  const perCell = (f: (c: CellMetricsInput) => number | undefined) =>
    cells.flatMap((c) => {
      const v = f(c);
      return v === undefined ? [] : [{ labels: { cell: c.cell }, value: v }];
    });
  const perMethod = (f: (m: MethodMetricsSnapshot) => number) =>
    cells.flatMap((c) => c.methods.map((m) => ({ labels: { cell: c.cell, method: m.method }, value: f(m) })));

  out.gauge(
    'cell_up',
    'Whether the cell is running (1) or not (0).',
    cells.map((c) => ({ labels: { cell: c.cell, state: c.state }, value: c.state === 'running' ? 1 : 0 })),
  );
  out.counter(
    'cell_restarts_total',
    'Times the Root restarted the cell.',
    perCell((c) => c.restarts),
  );
  out.gauge(
    'cell_uptime_seconds',
    'Seconds since the current process of the cell started.',
    perCell((c) => c.uptimeSeconds),
  );
  out.counter(
    'cell_cpu_seconds_total',
    'User plus system CPU time of the cell process.',
    perCell((c) => c.cpuSecondsTotal),
  );
  out.gauge(
    'cell_cpu_percent',
    'CPU use of the cell process over the last sample interval (100 = one core).',
    perCell((c) => c.cpuPercent),
  );
  out.gauge(
    'cell_resident_memory_bytes',
    'Resident set size of the cell process.',
    perCell((c) => c.rssBytes),
  );
  out.counter(
    'cell_requests_total',
    'Requests the cell received, per method.',
    perMethod((m) => m.requests),
  );
  out.counter(
    'cell_request_errors_total',
    'Requests that ended in an error reply, per method.',
    perMethod((m) => m.errors),
  );
  out.gauge(
    'cell_requests_in_flight',
    'Requests being handled right now, per method.',
    perMethod((m) => m.inFlight),
  );
  out.counter(
    'cell_received_bytes_total',
    'Request payload bytes received, per method.',
    perMethod((m) => m.bytesIn),
  );
  out.counter(
    'cell_sent_bytes_total',
    'Reply payload bytes sent, per method.',
    perMethod((m) => m.bytesOut),
  );
  out.histogram(
    'cell_request_duration_seconds',
    'Time from a request arriving to its reply being queued, per method.',
    cells.flatMap((c) =>
      c.methods.map((m) => ({
        labels: { cell: c.cell, method: m.method },
        histogram: Histogram.fromSnapshot(m.latency),
      })),
    ),
  );
  return out.toString();
}
