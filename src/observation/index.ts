// Observation from outside the cells, on the host: probing cells for their metrics (src/metrics keeps
// them inside each cell), sampling their processes in /proc, the Prometheus text and the HTTP server
// behind `cell metrics`. `cell top` (src/top) and the Root (src/root) read cells through it.

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
export type { KnownCell } from './scan.js';
export { CellProbe, collectCellSamples, SocketScanSource } from './scan.js';
export type { MetricsServer, ServeMetricsOptions } from './serve.js';
export { PROMETHEUS_CONTENT_TYPE, serveMetrics, toMetricsInput } from './serve.js';
export type { CellSample, TopDataSource } from './source.js';
