import { CellError } from '../errors/index.js';

/** A cell's resource limits, enforced by its cgroup. */
export interface Limits {
  memoryBytes: number;
  /** CPU cores (0.5 → cpu.max "50000 100000"). */
  cpu: number;
  pids: number;
}

export const DEFAULT_LIMITS: Limits = Object.freeze({ memoryBytes: 512 * 1024 * 1024, cpu: 1, pids: 256 });

/** Node itself needs a few tens of MiB; below this a cell cannot even start. */
export const MIN_MEMORY_BYTES = 16 * 1024 * 1024;

const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** "256M", "1.5G", "512MiB", "65536" or a number of bytes. Units are binary (M = MiB). */
export function parseMemory(value: unknown, where = 'limits.memory'): number {
  let bytes: number;
  if (typeof value === 'number') bytes = value;
  else if (typeof value === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(value);
    if (!m) throw invalid(where, value, 'a size such as "256M", "1G" or a number of bytes');
    bytes = Number(m[1]) * (UNITS[(m[2] ?? '').toLowerCase()] as number);
  } else throw invalid(where, value, 'a size such as "256M", "1G" or a number of bytes');
  bytes = Math.floor(bytes);
  if (!Number.isFinite(bytes) || bytes < MIN_MEMORY_BYTES) {
    throw invalid(
      where,
      value,
      `at least ${MIN_MEMORY_BYTES / 1024 / 1024}M (a Node.js cell needs that much to start)`,
    );
  }
  return bytes;
}

/**
 * Reads the `limits` object of a cell's manifest entry: `{ memory: "256M", cpu: 0.5, pids: 128 }`,
 * every field optional. Unknown fields are errors, so a typo does not silently leave a default.
 */
export function parseLimits(obj: unknown): Partial<Limits> {
  if (obj === undefined || obj === null) return {};
  if (typeof obj !== 'object' || Array.isArray(obj)) {
    throw invalid('limits', obj, 'an object such as { "memory": "256M", "cpu": 0.5, "pids": 128 }');
  }
  const out: Partial<Limits> = {};
  for (const [key, value] of Object.entries(obj as Record<string, unknown>)) {
    if (key === 'memory') out.memoryBytes = parseMemory(value);
    else if (key === 'cpu') {
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0.01 || value > 1024) {
        throw invalid('limits.cpu', value, 'a number of CPU cores between 0.01 and 1024, e.g. 0.5');
      }
      out.cpu = value;
    } else if (key === 'pids') {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 8 || value > 4_194_304) {
        throw invalid('limits.pids', value, 'an integer between 8 and 4194304 (Node.js itself runs about 10 threads)');
      }
      out.pids = value;
    } else {
      throw new CellError('E_INVALID_ARGUMENT', `unknown field limits.${key}.`, {
        fix: 'limits takes only memory, cpu and pids, e.g. { "memory": "256M", "cpu": 0.5, "pids": 128 }.',
      });
    }
  }
  return out;
}

export function resolveLimits(partial: Partial<Limits> | undefined): Limits {
  return { ...DEFAULT_LIMITS, ...partial };
}

function invalid(where: string, value: unknown, expected: string): CellError {
  return new CellError('E_INVALID_ARGUMENT', `${where} is ${JSON.stringify(value)}; expected ${expected}.`, {
    fix: `correct ${where} in cell.json.`,
  });
}
