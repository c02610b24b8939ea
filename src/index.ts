// The public API of Cell. Internal helpers stay inside their component folders.

// Axon: cells across hosts (docs/AXON.md).
export type { MeshIdentity } from './axon/identity/index.js';
export { loadMeshIdentity } from './axon/identity/index.js';
export type { GrowAcrossMeshOptions, MeshClient } from './axon/mesh.js';
export { exposeOnMesh, growAcrossMesh } from './axon/mesh.js';
// Capsid: the sandbox and resource limits a cell runs in (docs/SANDBOX.md).
export type { CapsidSpec, DoctorCheck, Encapsulated, Limits } from './capsid/index.js';
export { DEFAULT_LIMITS, diagnose, encapsulate, formatDoctor, parseLimits } from './capsid/index.js';
export type {
  CellTransportOptions,
  LeaderEvent,
  RaftNodeOptions,
  RaftTransport,
  StateMachine,
  WalFs,
} from './consensus/index.js';
export { CellTransport, InMemoryNetwork, RaftNode, SimDisk, Wal } from './consensus/index.js';
export type { CellErrorCode, CellErrorOptions } from './errors/index.js';
export { CellError, isCellError } from './errors/index.js';
export type {
  Handlers,
  MembraneAttachment,
  MembraneExtension,
  MembraneMetrics,
  MembraneOptions,
} from './membrane/index.js';
export { addMembraneExtension, CallContext, Membrane } from './membrane/index.js';
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

// NATS: cells as NATS micro services across hosts (docs/NATS.md). Registering only adds a resolver and
// a Membrane extension; the NATS client loads once CELL_NATS (or a Membrane's `nats` option) asks for it.
import { registerNats } from './nats/index.js';

registerNats();

export type { NatsOption, NatsSettings } from './nats/index.js';
export { closeNats, NATS_ENV, natsResolver, natsSettings, serveOnNats } from './nats/index.js';
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
export { canonicalJson, fingerprintOf, protein, t, wireCompatible } from './protein/index.js';
// Ribosome: compiles a cell's DNA into a cached bundle.
export type { Bundle, Dna } from './ribosome/index.js';
export { synthesize } from './ribosome/index.js';
// The Mycelium Root's control contract and client (the daemon itself runs as `cell up`).
export type { RootClient } from './root/client.js';
export { connectRoot, withRoot } from './root/client.js';
export type { CellState } from './root/contract.js';
export { RootService } from './root/contract.js';
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
export type { SwapResult, SwapSteps } from './swap/index.js';
export { generationSocketPath, swapGenerations } from './swap/index.js';
export type {
  CallOptions,
  CellInspector,
  Connector,
  FrameCarrier,
  GrowOptions,
  MethodCaller,
  ResolveContext,
  Resolver,
  SynapseClient,
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
export type { TapEvent, TapFilter, TapRecord } from './tap/index.js';
export { compileFilter, openTap } from './tap/index.js';
// The dashboard (ink, React) stays out of the library's import graph: cells never load it.
export type { KnownCell } from './top/scan.js';
export { CellProbe, collectCellSamples } from './top/scan.js';
export type { CellSample, TopDataSource } from './top/source.js';
export { Vesicle } from './vesicle/index.js';
