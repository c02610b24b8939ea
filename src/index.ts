// The public API of Cell. Internal helpers stay inside their component folders.

export type { CellErrorCode, CellErrorOptions } from './errors/index.js';
export { CellError, isCellError } from './errors/index.js';
export type { Handlers, MembraneMetrics, MembraneOptions } from './membrane/index.js';
export { CallContext, Membrane } from './membrane/index.js';
export { cellSocketPath, rootSocketPath, socketDir, validateCellName } from './paths/index.js';
export type { CallOptions, Connector, GrowOptions, ResolveContext, Resolver, SynapseClient } from './synapse/index.js';
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
