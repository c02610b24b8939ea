// The public API of Cell. Internal helpers stay inside their component folders.

export type { CellErrorCode, CellErrorOptions } from './errors/index.js';
export { CellError, isCellError } from './errors/index.js';
export type { HistogramSnapshot, MethodMetricsSnapshot, ServiceMetricsSnapshot } from './metrics/index.js';
export { formatCellMetrics, Histogram, MethodMetrics, PrometheusText, ServiceMetrics } from './metrics/index.js';
export { cellSocketPath, rootSocketPath, socketDir, validateCellName } from './paths/index.js';
export type {
  AnyCodec,
  Codec,
  EnumCodec,
  EnumValue,
  EnumView,
  Genome,
  Infer,
  InferView,
  SeqView,
  StructCodec,
  StructValue,
  StructView,
} from './protein/index.js';
export { canonicalJson, fingerprintOf, protein, t } from './protein/index.js';
export type {
  MethodDef,
  MethodInput,
  MethodInputView,
  MethodName,
  MethodOutput,
  MethodOutputView,
  RpcSpec,
  ServiceDef,
  ServiceMethods,
} from './service/index.js';
export { genomeJson, rpc, service } from './service/index.js';
