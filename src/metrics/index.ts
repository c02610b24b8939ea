// Metrics: the per-method counters and latency histograms every Membrane keeps, and the snapshot form
// shipped to the Root. Reading them from outside the cell (sampling, Prometheus text, serving) is
// src/observation's job.

export type { MethodMetricsSnapshot, ServiceMetricsSnapshot } from './counters.js';
export { MethodMetrics, parseServiceMetricsSnapshot, ServiceMetrics, totalsOf } from './counters.js';
export type { HistogramSnapshot } from './histogram.js';
export { Histogram } from './histogram.js';
