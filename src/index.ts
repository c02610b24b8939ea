// The everyday API of Cell: declare a contract (protein, t, service, rpc), serve it (Membrane), call
// it (Synapse), and the one error class. What a cell does not need lives behind subpaths, so a cell's
// bundle carries none of it: `cell-runtime/host` (the Root, the Capsid, the Ribosome, hot swap),
// `cell-runtime/observation` (metrics, the tap, probes), `cell-runtime/mesh` (cells across hosts) and
// `cell-runtime/consensus` (Raft). Internal helpers stay inside their component folders.

export type { CellErrorCode, CellErrorOptions } from './errors/index.js';
export { CellError, formatCellError, isCellError } from './errors/index.js';
export type {
  CallContext,
  Handlers,
  MembraneAttachment,
  MembraneExtension,
  MembraneMetrics,
  MembraneOptions,
} from './membrane/index.js';
export { addMembraneExtension, Membrane } from './membrane/index.js';

// The composition root: Synapse asks the Root and the mesh (Axon, NATS), and Membrane.bind serves the
// tap, the mesh and NATS, drains on signals and watches the Root. Each carrier loads only once used.
import './runtime.js';

// NATS: cells as NATS micro services across hosts (docs/NATS.md).

export type { Transport, TransportStatus } from './frame/index.js';
export type { NatsOption, NatsSettings } from './nats/index.js';
export { closeNats, NATS_ENV, natsResolver, natsSettings, serveOnNats } from './nats/index.js';
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
export type {
  CallOptions,
  CellInspector,
  Connector,
  FrameCarrier,
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
