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
  /** The method the error concerns: the handler that failed, or the call that did. */
  method?: string;
  /** What the user can do about it. */
  fix?: string;
  cause?: unknown;
  /** Extra machine-readable detail (fingerprints, limits, sizes). */
  details?: Record<string, unknown>;
}

/**
 * `message` is the cause alone; the cell, the method and the fix are fields, so they travel over the
 * wire and into JSON as themselves and `formatCellError` renders them once for humans.
 */
export class CellError extends Error {
  readonly code: CellErrorCode;
  readonly cell: string | undefined;
  readonly method: string | undefined;
  readonly fix: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: CellErrorCode, message: string, options: CellErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CellError';
    this.code = code;
    this.cell = options.cell;
    this.method = options.method;
    this.fix = options.fix;
    this.details = options.details;
  }

  /** `CellError E_…: cell 'x': the cause (fix: …)` on one line, for logs. */
  override toString(): string {
    return `${this.name} ${this.code}: ${where(this)}${this.message}${this.fix === undefined ? '' : ` (fix: ${this.fix})`}`;
  }

  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      cell: this.cell,
      method: this.method,
      fix: this.fix,
      details: this.details,
    };
  }
}

function where(err: CellError): string {
  if (err.cell === undefined) return err.method === undefined ? '' : `method '${err.method}': `;
  return err.method === undefined ? `cell '${err.cell}': ` : `cell '${err.cell}', method '${err.method}': `;
}

/**
 * The one rendering of an error for people: what it concerns, the cause, and the fix on its own line.
 *
 *   cell 'counter', method 'add': the amount must be positive.
 *     fix: pass an amount above 0.
 */
export function formatCellError(err: CellError): string {
  return `${where(err)}${err.message}${err.fix === undefined ? '' : `\n  fix: ${err.fix}`}`;
}

export function isCellError(err: unknown, code?: CellErrorCode): err is CellError {
  return err instanceof CellError && (code === undefined || err.code === code);
}
