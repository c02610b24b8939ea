/**
 * One error class for the whole runtime. `code` is stable and documented in docs/ERRORS.md;
 * callers branch on it, never on the message. Messages name the cell, the cause and the fix.
 */
export type CellErrorCode =
  // codec / schema
  | 'E_DECODE'
  | 'E_ENCODE'
  | 'E_SCHEMA_INVALID'
  | 'E_SCHEMA_MISMATCH'
  // framing / transport
  | 'E_FRAME_TOO_LARGE'
  | 'E_FRAME_MALFORMED'
  | 'E_PROTOCOL'
  | 'E_UNKNOWN_METHOD'
  | 'E_TIMEOUT'
  | 'E_ABORTED'
  | 'E_CONNECTION_LOST'
  | 'E_OVERLOADED'
  | 'E_GOAWAY'
  | 'E_CLOSED'
  | 'E_REMOTE'
  // lifecycle
  | 'E_CELL_NOT_FOUND'
  | 'E_CELL_ALREADY_RUNNING'
  | 'E_CELL_CRASHED'
  | 'E_CELL_CRASH_LOOP'
  | 'E_NAME_INVALID'
  | 'E_DNA_UNKNOWN'
  | 'E_BUILD_FAILED'
  | 'E_SANDBOX_UNAVAILABLE'
  | 'E_CGROUP_UNAVAILABLE'
  | 'E_ROOT_UNAVAILABLE'
  | 'E_SPAWN_FAILED'
  | 'E_SWAP_FAILED'
  | 'E_SHM_UNAVAILABLE'
  | 'E_SHM_AUTH'
  // trust boundary
  | 'E_PERMISSION_DENIED'
  | 'E_IDENTITY_MISMATCH'
  // consensus
  | 'E_NOT_LEADER'
  | 'E_WAL_CORRUPT'
  | 'E_WAL_IO'
  // axon
  | 'E_TLS'
  | 'E_MESH_IDENTITY'
  | 'E_INVALID_ARGUMENT'
  | 'E_INTERNAL';

export interface CellErrorOptions {
  /** The cell the error concerns, when there is one. */
  cell?: string;
  /** What the user can do about it. Appended to the message. */
  fix?: string;
  cause?: unknown;
  /** Extra machine-readable detail (fingerprints, limits, sizes). */
  details?: Record<string, unknown>;
}

export class CellError extends Error {
  readonly code: CellErrorCode;
  readonly cell: string | undefined;
  readonly fix: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: CellErrorCode, message: string, options: CellErrorOptions = {}) {
    const where = options.cell ? `cell '${options.cell}': ` : '';
    const fix = options.fix ? ` Fix: ${options.fix}` : '';
    super(`${where}${message}${fix}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CellError';
    this.code = code;
    this.cell = options.cell;
    this.fix = options.fix;
    this.details = options.details;
  }

  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      cell: this.cell,
      fix: this.fix,
      details: this.details,
    };
  }
}

export function isCellError(err: unknown, code?: CellErrorCode): err is CellError {
  return err instanceof CellError && (code === undefined || err.code === code);
}
