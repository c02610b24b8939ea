import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CellError } from '../errors/index.js';
import { cellHome } from '../paths/index.js';

/** A cell's source: a folder with an entry file. */
export interface Dna {
  name: string;
  dir: string;
  /** Relative to `dir`; default: the first of ENTRY_CANDIDATES that exists. */
  entry?: string;
}

/** One compiled cell: a single ESM file in the cache, named by the hash of everything that made it. */
export interface Bundle {
  path: string;
  hash: string;
  cached: boolean;
  buildMs: number;
}

export interface SynthesizeOptions {
  /** Default: `<cellHome()>/cache`. */
  cacheDir?: string;
  /** Build progress, one human-readable line at a time (the CLI prints them). */
  onProgress?: (line: string) => void;
  /** How long to wait for another process's build of the same hash before giving up. */
  lockTimeoutMs?: number;
}

export const ENTRY_CANDIDATES = ['index.ts', 'main.ts', 'cell.ts', 'index.js'] as const;

/** Files and folders that never belong to a cell's source. */
const SKIPPED = new Set(['node_modules', 'dist', 'build']);

const here = dirname(fileURLToPath(import.meta.url));

/**
 * The runtime the bundle's `import ... from 'cell'` resolves to: this checkout's, built
 * (dist/src/index.js) when running from dist, else the TypeScript source.
 */
export function runtimeEntry(): string {
  const js = join(here, '..', 'index.js');
  if (existsSync(js)) return js;
  return join(here, '..', 'index.ts');
}

/**
 * The shared-memory addon. It is a native binary, so it cannot live inside a bundle: the Capsid
 * binds it read-only and points CELL_NATIVE_ADDON at it. Undefined when it was not built.
 */
export function nativeAddonPath(): string | undefined {
  if (process.env.CELL_NATIVE_ADDON)
    return existsSync(process.env.CELL_NATIVE_ADDON) ? process.env.CELL_NATIVE_ADDON : undefined;
  const candidates = [
    join(here, '..', '..', '..', 'native', 'build', 'Release', 'cell_native.node'), // dist/src/ribosome
    join(here, '..', '..', 'native', 'build', 'Release', 'cell_native.node'), // src/ribosome
  ];
  return candidates.find((p) => existsSync(p));
}

/** Sorted relative paths of every source file under `dir` (no dotfiles, no node_modules). */
function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name.startsWith('.') || SKIPPED.has(e.name)) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push(relative(dir, p).split(sep).join('/'));
    }
  };
  walk(dir);
  return out.sort();
}

function hashTree(dir: string, h: ReturnType<typeof createHash>): number {
  const files = sourceFiles(dir);
  for (const f of files) {
    // Length-prefixed so that moving bytes between a name and a content cannot collide.
    const content = readFileSync(join(dir, f));
    h.update(`${f.length}:${f}\0${content.length}:`);
    h.update(content);
  }
  return files.length;
}

let runtimeIdentity: string | undefined;

/** A hash of the runtime's own files: a changed runtime rebuilds every cell. Computed once per process. */
function runtimeBuildIdentity(): string {
  if (runtimeIdentity === undefined) {
    const h = createHash('sha256');
    const runtimeDir = dirname(runtimeEntry());
    hashTree(runtimeDir, h);
    // The runtime's own dependencies are bundled too: their locked versions belong to its identity.
    for (const lock of [
      join(runtimeDir, '..', 'package-lock.json'),
      join(runtimeDir, '..', '..', 'package-lock.json'),
    ]) {
      if (existsSync(lock)) {
        h.update(readFileSync(lock));
        break;
      }
    }
    runtimeIdentity = h.digest('hex');
  }
  return runtimeIdentity;
}

function resolveEntry(dna: Dna): string {
  const dir = resolve(dna.dir);
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {}
  if (!isDir) {
    throw new CellError('E_DNA_UNKNOWN', `its DNA folder ${dir} does not exist.`, {
      cell: dna.name,
      fix: 'register the cell with the folder that holds its source (`cell add <name> <dir>` or cell.json).',
    });
  }
  if (dna.entry !== undefined) {
    const entry = resolve(dir, dna.entry);
    if (!entry.startsWith(dir + sep) || !existsSync(entry)) {
      throw new CellError('E_DNA_UNKNOWN', `entry file ${dna.entry} not found inside ${dir}.`, {
        cell: dna.name,
        fix: 'name an existing file inside the DNA folder as its entry.',
      });
    }
    return entry;
  }
  for (const c of ENTRY_CANDIDATES) {
    const entry = join(dir, c);
    if (existsSync(entry)) return entry;
  }
  throw new CellError('E_DNA_UNKNOWN', `no entry file in ${dir} (looked for ${ENTRY_CANDIDATES.join(', ')}).`, {
    cell: dna.name,
    fix: `add one of ${ENTRY_CANDIDATES.join(', ')} or name the entry explicitly.`,
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Takes `<path>` with O_EXCL (the file holds the owner's pid). A lock whose owner is dead is
 * stale and taken over; a live owner is waited for with bounded polling.
 */
async function acquireLock(path: string, timeoutMs: number, cell: string): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  const token = `${process.pid}:${Math.random().toString(36).slice(2)}`;
  for (;;) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, token);
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(path, 'utf8') === token) rmSync(path, { force: true });
        } catch {}
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner = Number.NaN;
    let stale = '';
    try {
      stale = readFileSync(path, 'utf8');
      owner = Number.parseInt(stale.split(':')[0] ?? '', 10);
    } catch {}
    if (Number.isInteger(owner) && owner > 0 && !pidAlive(owner)) {
      // Stale: its builder died. Takers serialize on a second O_EXCL file and remove the lock only
      // if it still holds the dead owner's token, so a fresh lock taken meanwhile is never removed.
      takeOver(path, stale);
      continue;
    }
    if (Date.now() > deadline) {
      throw new CellError('E_BUILD_FAILED', `timed out waiting for another build (lock ${path}, pid ${owner}).`, {
        cell,
        fix: `wait for process ${owner} to finish, or remove ${path} if it is gone.`,
      });
    }
    await sleep(25);
  }
}

function takeOver(path: string, staleToken: string): void {
  const guard = `${path}.takeover`;
  try {
    closeSync(openSync(guard, 'wx', 0o600));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    // A taker that died inside this short section leaves the guard behind.
    try {
      if (Date.now() - statSync(guard).mtimeMs > 10_000) rmSync(guard, { force: true });
    } catch {}
    return;
  }
  try {
    if (readFileSync(path, 'utf8') === staleToken) rmSync(path, { force: true });
  } catch {
  } finally {
    rmSync(guard, { force: true });
  }
}

/** Bundles of older DNA versions kept per cell (a running generation may still be using one). */
const KEEP_BUNDLES = 3;

function pruneOldBundles(dir: string): void {
  try {
    const bundles = readdirSync(dir)
      .filter((f) => f.endsWith('.mjs'))
      .map((f) => ({ path: join(dir, f), mtime: statSync(join(dir, f)).mtimeMs }))
      .sort((a, b) => b.mtime - a.mtime);
    for (const b of bundles.slice(KEEP_BUNDLES)) rmSync(b.path, { force: true });
  } catch {
    // Pruning is housekeeping: a concurrent prune or a vanished file is not a build failure.
  }
}

type Esbuild = typeof import('esbuild');
let esbuildModule: Promise<Esbuild> | undefined;

function loadEsbuild(cell: string): Promise<Esbuild> {
  esbuildModule ??= import('esbuild').catch((err) => {
    esbuildModule = undefined;
    throw new CellError('E_BUILD_FAILED', 'esbuild cannot be loaded.', {
      cell,
      cause: err,
      fix: 'run `npm ci` (or `node scripts/setup.mjs`) in the Cell checkout.',
    });
  });
  return esbuildModule;
}

// CommonJS dependencies bundled into ESM still call require() for Node built-ins.
const BANNER =
  "import { createRequire as __cellCreateRequire } from 'node:module';\nconst require = __cellCreateRequire(import.meta.url);";

/**
 * Compiles a cell's DNA into one ESM file under the cache, or returns the cached one when nothing
 * that went into it changed. The key hashes the sorted relative paths and contents of the DNA's
 * files, the entry, esbuild's version and the runtime's own files. Concurrent callers (in this
 * process or others) build once: the builder holds `<hash>.lock`; the rest wait, then hit the cache.
 */
export async function synthesize(dna: Dna, opts: SynthesizeOptions = {}): Promise<Bundle> {
  const started = performance.now();
  const progress = opts.onProgress ?? (() => {});
  const entry = resolveEntry(dna);
  const dir = resolve(dna.dir);
  const esbuild = await loadEsbuild(dna.name);

  const h = createHash('sha256');
  h.update(
    `cell-ribosome-1\0esbuild ${esbuild.version}\0runtime ${runtimeBuildIdentity()}\0entry ${relative(dir, entry)}\0`,
  );
  const fileCount = hashTree(dir, h);
  const hash = h.digest('hex');

  const outDir = join(opts.cacheDir ?? join(cellHome(), 'cache'), dna.name);
  mkdirSync(outDir, { recursive: true, mode: 0o700 });
  const path = join(outDir, `${hash}.mjs`);
  if (existsSync(path)) return { path, hash, cached: true, buildMs: performance.now() - started };

  const release = await acquireLock(join(outDir, `${hash}.lock`), opts.lockTimeoutMs ?? 120_000, dna.name);
  try {
    if (existsSync(path)) return { path, hash, cached: true, buildMs: performance.now() - started };
    progress(`ribosome: synthesizing ${dna.name} (${fileCount} files, ${hash.slice(0, 12)})`);
    const tmp = `${path}.${process.pid}.tmp`;
    const runtime = runtimeEntry();
    try {
      await esbuild.build({
        entryPoints: [entry],
        absWorkingDir: dir,
        bundle: true,
        format: 'esm',
        platform: 'node',
        target: 'node20',
        outfile: tmp,
        write: true,
        logLevel: 'silent',
        banner: { js: BANNER },
        // Native addons cannot be inlined; the runtime loads the shm addon from CELL_NATIVE_ADDON.
        external: ['*.node', 'esbuild'],
        plugins: [
          {
            name: 'cell-runtime',
            setup(build) {
              build.onResolve({ filter: /^cell$/ }, () => ({ path: runtime }));
            },
          },
        ],
      });
    } catch (err) {
      rmSync(tmp, { force: true });
      const failure = err as { errors?: import('esbuild').Message[] };
      const text = failure.errors?.length
        ? (await esbuild.formatMessages(failure.errors, { kind: 'error', color: false })).join('').trimEnd()
        : String(err);
      progress(`ribosome: ${dna.name} failed to build`);
      throw new CellError('E_BUILD_FAILED', `its DNA failed to compile:\n${text}\n`, {
        cell: dna.name,
        cause: err,
        fix: `correct the source in ${dir} and spawn again.`,
        details: { dir, entry },
      });
    }
    renameSync(tmp, path);
    pruneOldBundles(outDir);
    const buildMs = performance.now() - started;
    progress(`ribosome: ${dna.name} built in ${buildMs.toFixed(0)} ms`);
    return { path, hash, cached: false, buildMs };
  } finally {
    release();
  }
}
