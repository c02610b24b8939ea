// The everyday API of Cell: declare a contract (protein, t, service, rpc), serve it (Membrane), call
// it (Synapse), and the one error class. What a cell does not need lives behind subpaths, so a cell's
// bundle carries none of it: `cell-runtime/host` (the Root, the Capsid, the Ribosome, hot swap),
// `cell-runtime/observation` (metrics, the tap, probes), `cell-runtime/mesh` (cells across hosts) and
// `cell-runtime/consensus` (Raft). Internal helpers stay inside their component folders.

export type { CellErrorCode, CellErrorOptions } from './errors/index.js';
export { CellError, formatCellError, isCellError } from './errors/index.js';
export type { Handlers, MembraneMetrics, MembraneOptions } from './membrane/index.js';
export { CallContext, Membrane } from './membrane/index.js';
export { cellSocketPath, socketDir, validateCellName } from './paths/index.js';
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
export { canonicalJson, fingerprintOf, protein, t, wireCompatible } from './protein/index.js';
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
export { genomeJson, rpc, service, serviceCompatible } from './service/index.js';
export type { Transport, TransportStatus } from './shm/wire.js';
export type {
  CallOptions,
  CellInspector,
  Connector,
  GrowOptions,
  IdentityStatus,
  MethodCaller,
  ResolveContext,
  Resolver,
  SynapseClient,
  SynapseTransport,
} from './synapse/index.js';
export {
  addResolver,
  isRemoteError,
  localSocketResolver,
  RemoteError,
  removeResolver,
  Synapse,
  unixConnector,
} from './synapse/index.js';
export { Vesicle } from './vesicle/index.js';
