// `cell-runtime/host`: running cells on a host — the Mycelium Root's control contract and client, the
// Capsid (sandbox and limits), the Ribosome (DNA → cached bundle) and hot swap by generations. The
// daemon itself runs as `cell up`; programs that start and watch cells themselves import this.

// Capsid: the sandbox and resource limits a cell runs in (docs/SANDBOX.md).
export type { CapsidSpec, DoctorCheck, Encapsulated, Limits } from './capsid/index.js';
export { DEFAULT_LIMITS, diagnose, encapsulate, formatDoctor, parseLimits } from './capsid/index.js';
// Root-attested cell identity (docs/PROTOCOL.md § 2.3.1): for programs that start cells themselves.
export type { CellCert } from './identity/index.js';
export { exportRootPublicKey, issueIdentity, loadOrCreateRootKey } from './identity/index.js';
export type { CellBoot, CellIdentity } from './paths/index.js';
export { rootSocketPath } from './paths/index.js';
// Ribosome: compiles a cell's DNA into a cached bundle.
export type { Bundle, Dna } from './ribosome/index.js';
export { synthesize } from './ribosome/index.js';
// The Mycelium Root's control contract and client (docs/PROTOCOL.md § 4).
export type { CellState, RootClient } from './root/index.js';
export { connectRoot, RootService, withRoot } from './root/index.js';
export type { SwapResult, SwapSteps } from './swap/index.js';
export { generationSocketPath, swapGenerations } from './swap/index.js';
