// What the Root needs from the Ribosome (build) and the Capsid (run), in one place.
export type { Encapsulated, Limits, StemOptions } from '../capsid/index.js';
export { diagnose, encapsulate, parseLimits, Stem } from '../capsid/index.js';
export type { Bundle } from '../ribosome/index.js';
export { synthesize } from '../ribosome/index.js';
