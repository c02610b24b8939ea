// `cell-runtime/observation`: what the Membranes count and how to read it — per-method metrics and
// their Prometheus text, the live tap of decoded calls, and the probe behind `cell top` (the dashboard
// itself, with ink and React, loads only for `cell top`).
export type { HistogramSnapshot, MethodMetricsSnapshot, ServiceMetricsSnapshot } from './metrics/index.js';
export { Histogram, MethodMetrics, ServiceMetrics } from './metrics/index.js';
export type { CellSample, KnownCell, MetricsServer, ServeMetricsOptions, TopDataSource } from './observation/index.js';
export { CellProbe, collectCellSamples, formatCellMetrics, PrometheusText, serveMetrics } from './observation/index.js';
export type { TapEvent, TapFilter, TapHello, TapRecord, TapSession } from './tap/index.js';
export { compileFilter, formatTapRecord, openTap } from './tap/index.js';
