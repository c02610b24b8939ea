// What the Root needs from the Ribosome (build) and the Capsid (run). Until those components land,
// this file carries a minimal stand-in with their exact signatures: an esbuild bundle cached by a
// content hash, and a raw child process that refuses to pretend it is sandboxed.
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CellError } from '../errors/index.js';
import { cacheDir as defaultCacheDir } from '../paths/index.js';

export interface Dna {
  name: string;
  dir: string;
  entry?: string;
}
export interface Bundle {
  path: string;
  hash: string;
  cached: boolean;
  buildMs: number;
}
export interface Limits {
  memoryBytes: number;
  cpu: number;
  pids: number;
}
export const DEFAULT_LIMITS: Limits = { memoryBytes: 512 * 1024 * 1024, cpu: 1, pids: 256 };
export interface CapsidSpec {
  name: string;
  bundlePath: string;
  socketDir: string;
  env: Record<string, string>;
  args?: string[];
  limits?: Partial<Limits>;
  network?: boolean;
  sandbox: boolean;
  stdout: 'pipe' | number;
  stderr: 'pipe' | number;
  readOnlyPaths?: string[];
}
export interface Encapsulated {
  child: ChildProcess;
  sandbox: 'bwrap' | 'none';
  cgroup: string | null;
  limits: Limits;
  oomKilled(): boolean;
  memoryBytes(): number | null;
  dispose(): Promise<void>;
}
export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
  disables: string;
}

const ENTRIES = ['index.ts', 'main.ts', 'cell.ts', 'index.js'];
const runtimeEntry = fileURLToPath(new URL('../index.js', import.meta.url));

function sources(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) sources(p, out);
    else if (/\.(m?[jt]s|json)$/.test(e.name)) out.push(p);
  }
  return out;
}

export async function synthesize(
  dna: Dna,
  opts: { cacheDir?: string; onProgress?: (line: string) => void } = {},
): Promise<Bundle> {
  const started = performance.now();
  if (!existsSync(dna.dir) || !statSync(dna.dir).isDirectory()) {
    throw new CellError('E_DNA_UNKNOWN', `DNA folder ${dna.dir} does not exist.`, {
      cell: dna.name,
      fix: 'point the manifest entry (or `cell add`) at the folder holding the cell source.',
    });
  }
  const entry = dna.entry ?? ENTRIES.find((e) => existsSync(join(dna.dir, e)));
  if (entry === undefined || !existsSync(join(dna.dir, entry))) {
    throw new CellError(
      'E_DNA_UNKNOWN',
      `no entry file in ${dna.dir} (looked for ${dna.entry ?? ENTRIES.join(', ')}).`,
      {
        cell: dna.name,
        fix: 'add an index.ts or name the entry in the manifest.',
      },
    );
  }
  const hash = createHash('sha256');
  for (const p of sources(dna.dir).sort()) {
    hash.update(relative(dna.dir, p)).update('\0').update(readFileSync(p)).update('\0');
  }
  hash.update(entry).update(runtimeEntry);
  const digest = hash.digest('hex').slice(0, 32);
  const dir = opts.cacheDir ?? defaultCacheDir();
  const out = join(dir, `${dna.name}-${digest}.mjs`);
  if (existsSync(out))
    return { path: out, hash: digest, cached: true, buildMs: Math.round(performance.now() - started) };
  opts.onProgress?.(`building ${dna.name} from ${dna.dir}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const esbuild = await import('esbuild');
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    await esbuild.build({
      entryPoints: [join(dna.dir, entry)],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outfile: tmp,
      alias: { cell: runtimeEntry },
      external: ['*.node', 'ink', 'react'],
      banner: {
        js: "import { createRequire as __cellRequire } from 'node:module'; const require = __cellRequire(import.meta.url);",
      },
      logLevel: 'silent',
    });
  } catch (err) {
    const errors = (
      err as { errors?: Array<{ text: string; location?: { file: string; line: number; column: number } }> }
    ).errors;
    const text =
      errors
        ?.map((e) => (e.location ? `${e.location.file}:${e.location.line}:${e.location.column}: ${e.text}` : e.text))
        .join('\n') ?? (err as Error).message;
    throw new CellError('E_BUILD_FAILED', `build failed:\n${text}`, {
      cell: dna.name,
      fix: 'fix the error in the cell source and spawn again.',
    });
  }
  renameSync(tmp, out);
  return { path: out, hash: digest, cached: false, buildMs: Math.round(performance.now() - started) };
}

export async function encapsulate(spec: CapsidSpec): Promise<Encapsulated> {
  if (spec.sandbox) {
    throw new CellError('E_SANDBOX_UNAVAILABLE', 'this build of Cell has no sandbox (Capsid) yet.', {
      cell: spec.name,
      fix: 'run with --no-sandbox for development.',
    });
  }
  const child = spawn(process.execPath, [spec.bundlePath, ...(spec.args ?? [])], {
    env: spec.env,
    stdio: ['ignore', spec.stdout, spec.stderr],
    detached: false,
  });
  const limits = { ...DEFAULT_LIMITS, ...spec.limits };
  return {
    child,
    sandbox: 'none',
    cgroup: null,
    limits,
    oomKilled: () => false,
    memoryBytes: () => null,
    dispose: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

export async function diagnose(): Promise<DoctorCheck[]> {
  return [
    {
      name: 'capsid',
      ok: false,
      detail: 'the sandbox component is not part of this build',
      disables: 'sandboxed cells (use --no-sandbox)',
    },
  ];
}

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };
export function parseLimits(obj: unknown): Partial<Limits> {
  if (obj === undefined || obj === null) return {};
  if (typeof obj !== 'object') throw new CellError('E_INVALID_ARGUMENT', 'limits must be an object.');
  const o = obj as Record<string, unknown>;
  const out: Partial<Limits> = {};
  if (o.memory !== undefined) {
    const m = /^(\d+)([KMG]?)i?B?$/i.exec(String(o.memory));
    if (m === null)
      throw new CellError('E_INVALID_ARGUMENT', `limits.memory ${JSON.stringify(o.memory)} is not a size.`, {
        fix: 'write it like "256M".',
      });
    out.memoryBytes = Number(m[1]) * (UNITS[(m[2] ?? '').toUpperCase()] ?? 1);
  }
  if (o.cpu !== undefined) out.cpu = Number(o.cpu);
  if (o.pids !== undefined) out.pids = Number(o.pids);
  return out;
}
