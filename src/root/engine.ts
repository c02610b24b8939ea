// What the Root needs from the Ribosome (build) and the Capsid (run), in one place.
export type { CapsidSpec, DoctorCheck, Encapsulated, Limits } from '../capsid/index.js';
export { DEFAULT_LIMITS, diagnose, encapsulate, parseLimits } from '../capsid/index.js';
export type { Bundle, Dna } from '../ribosome/index.js';
export { synthesize } from '../ribosome/index.js';
