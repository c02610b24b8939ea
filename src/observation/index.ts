// Observation from outside the cells, on the host: probing cells for their metrics (src/metrics keeps
// them inside each cell), sampling their processes in /proc, the Prometheus text and the HTTP server
// behind `cell metrics`. `cell top` (src/top) and the Root (src/root) read cells through it.

export { ProcessSampler, readProcess } from './proc.js';
export { escapeLabelValue, formatCellMetrics, PrometheusText } from './prometheus.js';
export type { KnownCell } from './scan.js';
export { CellProbe, collectCellSamples, SocketScanSource } from './scan.js';
export type { MetricsServer, ServeMetricsOptions } from './serve.js';
export { serveMetrics } from './serve.js';
export type { CellSample, TopDataSource } from './source.js';
