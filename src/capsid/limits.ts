import { availableParallelism, totalmem } from 'node:os';
import { CellError } from '../errors/index.js';
import { nearest } from '../errors/suggest.js';

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

export const MIN_CPU = 0.01;
export const MIN_PIDS = 8;
/** The kernel's default pid_max is 32768 (4194304 at most); no cell needs more than this. */
export const MAX_PIDS = 65_536;

/**
 * The upper bounds on this host: memory up to its total RAM, CPU up to the cores this process may
 * use. A limit above them is a typo ("99999999T"), and the kernel would take it as no limit at all.
 */
export function limitBounds(): { memoryBytes: number; cpu: number; pids: number } {
  return { memoryBytes: totalmem(), cpu: availableParallelism(), pids: MAX_PIDS };
}

/** 17179869184 → "16G" (binary units, at most one decimal). */
function formatBytes(n: number): string {
  for (const [unit, size] of [
    ['T', 1024 ** 4],
    ['G', 1024 ** 3],
    ['M', 1024 ** 2],
    ['K', 1024],
  ] as const) {
    if (n >= size) return `${Number((n / size).toFixed(1))}${unit}`;
  }
  return `${n}`;
}

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
  if (Number.isNaN(bytes) || bytes < MIN_MEMORY_BYTES) {
    throw invalid(
      where,
      value,
      `at least ${MIN_MEMORY_BYTES / 1024 / 1024}M (a Node.js cell needs that much to start)`,
    );
  }
  const max = limitBounds().memoryBytes;
  if (bytes > max) {
    throw invalid(where, value, `at most ${formatBytes(max)} (${max} bytes, this host's total memory)`);
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
      const max = limitBounds().cpu;
      if (typeof value !== 'number' || !Number.isFinite(value) || value < MIN_CPU || value > max) {
        throw invalid(
          'limits.cpu',
          value,
          `a number of CPU cores between ${MIN_CPU} and ${max} (the cores this host offers), e.g. 0.5`,
        );
      }
      out.cpu = value;
    } else if (key === 'pids') {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < MIN_PIDS || value > MAX_PIDS) {
        throw invalid(
          'limits.pids',
          value,
          `an integer between ${MIN_PIDS} and ${MAX_PIDS} (Node.js itself runs about 10 threads)`,
        );
      }
      out.pids = value;
    } else {
      const near = nearest(key, ['memory', 'cpu', 'pids']);
      throw new CellError('E_INVALID_ARGUMENT', `unknown field limits.${key}.`, {
        fix:
          near === undefined
            ? 'limits takes only memory, cpu and pids, e.g. { "memory": "256M", "cpu": 0.5, "pids": 128 }.'
            : `did you mean "${near}"?`,
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
