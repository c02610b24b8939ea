// `cell-runtime/observation`: what the Membranes count and how to read it — per-method metrics and
// their Prometheus text, the live tap of decoded calls, and the probe behind `cell top` (the dashboard
// itself, with ink and React, loads only for `cell top`).
export type {
  HistogramSnapshot,
  MethodMetricsSnapshot,
  MetricsServer,
  ServeMetricsOptions,
  ServiceMetricsSnapshot,
} from './metrics/index.js';
export {
  formatCellMetrics,
  Histogram,
  MethodMetrics,
  PrometheusText,
  ServiceMetrics,
  serveMetrics,
} from './metrics/index.js';
export type { TapEvent, TapFilter, TapHello, TapRecord, TapSession } from './tap/index.js';
export { compileFilter, formatTapRecord, openTap } from './tap/index.js';
export type { KnownCell } from './top/scan.js';
export { CellProbe, collectCellSamples } from './top/scan.js';
export type { CellSample, TopDataSource } from './top/source.js';
