// Metrics: the per-method counters and latency histogram every Membrane keeps, the snapshot form
// shipped to the Root, and the Prometheus text exporter behind `cell metrics`.

export type { MethodMetricsSnapshot, MetricsTotals, ServiceMetricsSnapshot } from './counters.js';
export { MethodMetrics, parseServiceMetricsSnapshot, ServiceMetrics, totalsOf } from './counters.js';
export type { HistogramSnapshot } from './histogram.js';
export { HISTOGRAM_MAX_EXPONENT, Histogram } from './histogram.js';
export type { ProcessSample } from './proc.js';
export { cpuPercent, ProcessSampler, readProcess } from './proc.js';
export type { CellMetricsInput, Labels } from './prometheus.js';
export {
  escapeHelp,
  escapeLabelValue,
  formatCellMetrics,
  formatValue,
  LATENCY_BUCKETS_SECONDS,
  PrometheusText,
} from './prometheus.js';
export type { MetricsServer, ServeMetricsOptions } from './serve.js';
export { PROMETHEUS_CONTENT_TYPE, serveMetrics, toMetricsInput } from './serve.js';
