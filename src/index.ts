// The public API of Cell. Internal helpers stay inside their component folders.
export { CellError, isCellError } from './errors/index.js';
export type { CellErrorCode, CellErrorOptions } from './errors/index.js';
export { socketDir, rootSocketPath, cellSocketPath, validateCellName } from './paths/index.js';
