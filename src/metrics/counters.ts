import { CellError } from '../errors/index.js';
import { Histogram, type HistogramSnapshot } from './histogram.js';

/** Counters for one method of a served service. Plain fields so the hot path is field increments. */
export class MethodMetrics {
  readonly method: string;
  requests = 0;
  errors = 0;
  inFlight = 0;
  bytesIn = 0;
  bytesOut = 0;
  readonly latency: Histogram;

  constructor(method: string, precision?: number) {
    this.method = method;
    this.latency = new Histogram(precision);
  }

  snapshot(): MethodMetricsSnapshot {
    return {
      method: this.method,
      requests: this.requests,
      errors: this.errors,
      inFlight: this.inFlight,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      latency: this.latency.snapshot(),
    };
  }
}

export interface MethodMetricsSnapshot {
  readonly method: string;
  readonly requests: number;
  readonly errors: number;
  readonly inFlight: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly latency: HistogramSnapshot;
}

/** What a Membrane ships to the Root: JSON-able, histograms in their sparse form. */
export interface ServiceMetricsSnapshot {
  readonly service: string;
  /** Wall-clock time of the snapshot (ms since the epoch). */
  readonly at: number;
  /** Wall-clock time the counters started (ms since the epoch). */
  readonly since: number;
  readonly methods: MethodMetricsSnapshot[];
}

/**
 * Per-method metrics of one service, indexed by method id (ids are dense), so the Membrane's
 * dispatch path reaches its counters with one array load.
 */
export class ServiceMetrics {
  readonly service: string;
  readonly byId: MethodMetrics[];
  readonly since = Date.now();

  constructor(service: string, methodNames: readonly string[], precision?: number) {
    this.service = service;
    this.byId = methodNames.map((name) => new MethodMetrics(name, precision));
  }

  /** A request for method `id` arrived carrying `bytesIn` payload bytes. */
  begin(id: number, bytesIn: number): void {
    const m = this.byId[id];
    m.requests++;
    m.inFlight++;
    m.bytesIn += bytesIn;
  }

  /** The request finished after `ns` nanoseconds with `bytesOut` reply bytes; `failed` counts an error. */
  end(id: number, ns: number, bytesOut: number, failed: boolean): void {
    const m = this.byId[id];
    m.inFlight--;
    m.bytesOut += bytesOut;
    if (failed) m.errors++;
    m.latency.record(ns);
  }

  /** Like `end`, leaving the latency to be recorded by the caller (batched timing). */
  endCounts(id: number, bytesOut: number, failed: boolean): void {
    const m = this.byId[id];
    m.inFlight--;
    m.bytesOut += bytesOut;
    if (failed) m.errors++;
  }

  snapshot(): ServiceMetricsSnapshot {
    return { service: this.service, at: Date.now(), since: this.since, methods: this.byId.map((m) => m.snapshot()) };
  }
}

/** Totals across methods, for dashboards: counts summed, histograms merged. */
export interface MetricsTotals {
  requests: number;
  errors: number;
  inFlight: number;
  bytesIn: number;
  bytesOut: number;
  latency: Histogram;
}

export function totalsOf(snapshot: ServiceMetricsSnapshot, precision = 5): MetricsTotals {
  const totals: MetricsTotals = {
    requests: 0,
    errors: 0,
    inFlight: 0,
    bytesIn: 0,
    bytesOut: 0,
    latency: new Histogram(precision),
  };
  for (const m of snapshot.methods) {
    totals.requests += m.requests;
    totals.errors += m.errors;
    totals.inFlight += m.inFlight;
    totals.bytesIn += m.bytesIn;
    totals.bytesOut += m.bytesOut;
    totals.latency.merge(m.latency);
  }
  return totals;
}

/** Validates a snapshot that arrived over the wire before anything trusts its shape. */
export function parseServiceMetricsSnapshot(value: unknown): ServiceMetricsSnapshot {
  const bad = (why: string): never => {
    throw new CellError('E_DECODE', `metrics snapshot is malformed: ${why}.`);
  };
  if (typeof value !== 'object' || value === null) return bad('not an object');
  const v = value as Record<string, unknown>;
  if (typeof v.service !== 'string') bad('service is not a string');
  if (!Array.isArray(v.methods)) bad('methods is not an array');
  for (const m of v.methods as unknown[]) {
    const mm = m as Record<string, unknown>;
    if (typeof mm?.method !== 'string') bad('a method has no name');
    for (const k of ['requests', 'errors', 'inFlight', 'bytesIn', 'bytesOut'] as const) {
      if (typeof mm[k] !== 'number') bad(`${k} of ${String(mm.method)} is not a number`);
    }
    const h = mm.latency as Record<string, unknown> | undefined;
    if (typeof h !== 'object' || h === null || !Array.isArray(h.buckets) || typeof h.precision !== 'number') {
      bad(`latency of ${String(mm.method)} is not a histogram snapshot`);
    }
  }
  return {
    service: v.service as string,
    at: typeof v.at === 'number' ? v.at : Date.now(),
    since: typeof v.since === 'number' ? v.since : 0,
    methods: v.methods as MethodMetricsSnapshot[],
  };
}
