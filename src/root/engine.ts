// What the Root needs from the Ribosome (build) and the Capsid (run), in one place.
export type { Adoption, CapsidSpec, DoctorCheck, Encapsulated, Limits, StemOptions } from '../capsid/index.js';
export { DEFAULT_LIMITS, diagnose, encapsulate, parseLimits, Stem } from '../capsid/index.js';
export type { Bundle, Dna } from '../ribosome/index.js';
export { synthesize } from '../ribosome/index.js';
