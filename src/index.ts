// The public API of Cell. Internal helpers stay inside their component folders.

export type { CellErrorCode, CellErrorOptions } from './errors/index.js';
export { CellError, isCellError } from './errors/index.js';
export type { HistogramSnapshot, MethodMetricsSnapshot, ServiceMetricsSnapshot } from './metrics/index.js';
export { formatCellMetrics, Histogram, MethodMetrics, PrometheusText, ServiceMetrics } from './metrics/index.js';
export { cellSocketPath, rootSocketPath, socketDir, validateCellName } from './paths/index.js';
