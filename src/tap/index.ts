// `cell tap`: a live, filtered view of the requests a cell serves, decoded through its genome.

export type { TapHello, TapRecord, TapSession } from './client.js';
export { formatTapRecord, openTap } from './client.js';
export type { TapEvent, TapFilter } from './filter.js';
export { compileFilter } from './filter.js';
export { TapServer } from './server.js';
