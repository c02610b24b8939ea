import { createHash } from 'node:crypto';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CellError } from '../errors/index.js';
import { cellHome, validateCellName } from '../paths/index.js';
import { compile, esbuildVersion, refusalError } from './build.js';
import { BundleCache, bundleKey, type InputList, packageJsonOf, sourceKey } from './cache.js';
import { JsonPositionError } from './json.js';
import { acquireLock } from './lock.js';
import {
  allowedRoots,
  checkPath,
  hashInside,
  RefusedPath,
  type Roots,
  realpathLoose,
  relativeLabel,
  rootOf,
} from './roots.js';
import { dnaTsconfig, type Tsconfig, TsconfigError } from './tsconfig.js';

/** A cell's source: a folder with an entry file, and what else it may import. */
export interface Dna {
  name: string;
  dir: string;
  /** Relative to `dir`; default: the first of ENTRY_CANDIDATES that exists. */
  entry?: string;
  /**
   * Files or folders outside `dir` the DNA may import (shared contracts): absolute, or relative to
   * `manifestDir`. Nothing else outside `dir` is read, but the project's node_modules and Cell's own
   * package.
   */
  contracts?: readonly string[];
  /**
   * The folder of the manifest that declares the cell: `contracts` are relative to it, and
   * node_modules folders are looked for no higher than its nearest one. Default: `dir`.
   */
  manifestDir?: string;
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
  /** How long to wait for another process's build of the same source before giving up. */
  lockTimeoutMs?: number;
}

export const ENTRY_CANDIDATES = ['index.ts', 'main.ts', 'cell.ts', 'index.js'] as const;

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

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

function tsconfigOf(cell: string, dir: string, roots: Roots): Tsconfig {
  try {
    return dnaTsconfig(dir, roots);
  } catch (err) {
    if (err instanceof RefusedPath) {
      throw refusalError(cell, dir, {
        reason: err.reason,
        path: err.path,
        kind: err.kind,
        importer: err.importer ?? join(dir, 'tsconfig.json'),
        ...(err.specifier === undefined ? {} : { specifier: err.specifier }),
      });
    }
    if (err instanceof TsconfigError || err instanceof JsonPositionError) {
      throw new CellError('E_BUILD_FAILED', `its tsconfig.json cannot be used: ${err.message}.`, {
        cell,
        fix: 'correct tsconfig.json in the DNA folder; `extends` may name files in the DNA folder, the contracts or node_modules.',
      });
    }
    throw err;
  }
}

/**
 * Every file the build read, as [path relative to the DNA folder, SHA-256]: the modules esbuild
 * loaded, the tsconfig chain, and the package.json nearest each module (it steers resolution).
 */
function inputList(dir: string, roots: Roots, modules: Map<string, string>, tsconfig: Tsconfig): InputList {
  const all = new Map(modules);
  for (const f of tsconfig.files) all.set(f.real, sha256(f.content));
  const seen = new Set<string>();
  for (const real of modules.keys()) {
    const root = rootOf(roots, real);
    const pkg = root === undefined ? undefined : packageJsonOf(real, root);
    if (pkg === undefined || seen.has(pkg)) continue;
    seen.add(pkg);
    try {
      all.set(checkPath(roots, pkg), hashInside(roots, pkg));
    } catch {
      // not readable as a plain file inside the roots: esbuild's resolver saw what it saw
    }
  }
  return [...all]
    .map(([real, sha]): [string, string] => [relativeLabel(dir, real), sha])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/**
 * Compiles a cell's DNA into one ESM file under the cache, or returns the cached one when nothing
 * that went into it changed. Only files inside the allowed roots are read (the DNA folder, its
 * declared contracts, the project's node_modules, Cell's own package); a refused import is
 * E_BUILD_FAILED. The cache is keyed by content (see cache.ts): every input esbuild read, the
 * options and esbuild's version. Concurrent callers (in this process or others) build once: the
 * builder holds the source key's lock; the rest wait, then hit the cache.
 */
export async function synthesize(dna: Dna, opts: SynthesizeOptions = {}): Promise<Bundle> {
  const started = performance.now();
  const progress = opts.onProgress ?? (() => {});
  validateCellName(dna.name); // it names a folder of the cache
  const lexicalEntry = resolveEntry(dna);
  const dir = realpathSync(resolve(dna.dir));
  const entryLabel = relative(resolve(dna.dir), lexicalEntry).split(sep).join('/');
  const entry = join(dir, entryLabel);
  const manifestDir = realpathLoose(resolve(dna.manifestDir ?? dna.dir));
  const roots = allowedRoots(dna.name, dir, manifestDir, dna.contracts ?? []);
  const version = await esbuildVersion(dna.name);
  const source = sourceKey({ esbuildVersion: version, dir, entryLabel, roots });
  const cache = new BundleCache(opts.cacheDir ?? join(cellHome(), 'cache'));

  const hit = (): Bundle | undefined => {
    const key = cache.lookup(source.key, dir, roots);
    const path = key === undefined ? undefined : cache.link(dna.name, key);
    if (key === undefined || path === undefined) return undefined;
    return { path, hash: key, cached: true, buildMs: performance.now() - started };
  };
  const cached = hit();
  if (cached !== undefined) return cached;

  const release = await acquireLock(cache.lockPath(source.key), opts.lockTimeoutMs ?? 120_000, dna.name);
  try {
    const waited = hit();
    if (waited !== undefined) return waited;
    progress(`ribosome: synthesizing ${dna.name} (${source.files} files)`);
    try {
      const tsconfig = tsconfigOf(dna.name, dir, roots);
      const { code, inputs } = await compile({
        cell: dna.name,
        dir,
        entry,
        roots,
        runtime: runtimeEntry(),
        tsconfig: tsconfig.raw,
      });
      const list = inputList(dir, roots, inputs, tsconfig);
      const key = bundleKey(version, entryLabel, list);
      cache.put(key, entryLabel, list, code);
      cache.remember(source.key, key);
      const path = cache.link(dna.name, key);
      if (path === undefined) {
        throw new CellError(
          'E_BUILD_FAILED',
          `its bundle vanished from the cache ${cache.dir} right after the build.`,
          {
            cell: dna.name,
            fix: 'spawn again; if it persists, check what else writes to the cache folder.',
          },
        );
      }
      cache.prune(dna.name);
      const buildMs = performance.now() - started;
      progress(`ribosome: ${dna.name} built in ${buildMs.toFixed(0)} ms (${list.length} inputs, ${key.slice(0, 12)})`);
      return { path, hash: key, cached: false, buildMs };
    } catch (err) {
      progress(`ribosome: ${dna.name} failed to build`);
      throw err;
    }
  } finally {
    release();
  }
}
