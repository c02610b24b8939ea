import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { BUILD_OPTIONS } from './build.js';
import { hashInside, type Roots, relativeLabel } from './roots.js';

/*
 * The cache is content-addressed: identical DNA under two cell names, or the same DNA reached
 * through two manifests, is one bundle. Layout under the cache folder:
 *
 *   _store/<bundle key>.mjs           the bundle
 *   _store/<bundle key>.inputs.json   what it was built from: [label, sha256] per input file
 *   _index/<source key>.json          bundle keys built from this source (newest first)
 *   _index/<source key>.lock          held while building it
 *   <cell>/<bundle key>.mjs           a hard link per cell (what the Root runs; pruned per cell)
 *
 * Cell names start with a letter or digit, so they never collide with `_store` or `_index`.
 *
 * The *bundle key* hashes esbuild's version, the build options, the entry and every input as
 * (label, SHA-256 of the bytes esbuild was given), where a label is the input's real path relative
 * to the DNA folder: neither the cell's name nor where the DNA lives on disk, only contents and the
 * relative layout (which esbuild writes into the bundle's module comments, so it is part of the
 * output anyway).
 *
 * The *source key* is what can be computed without building: esbuild's version, the options, the
 * entry, the declared contracts, the names of the DNA's files, the contents of its package.json and
 * tsconfig.json files, the names in contract folders, and npm's record of each allowed
 * node_modules. It finds the candidates; a candidate is a hit only when every one of its inputs,
 * read again (inside the roots of this request), hashes the same. So a changed input outside the
 * DNA folder (a contract, a package, Cell itself) rebuilds, and a new file that could change what
 * an import resolves to (a new file in the DNA, a package installed) changes the source key.
 */

export const CACHE_FORMAT = 'cell-ribosome-2';

/** Bundles of older DNA versions kept per cell (a running generation may still be using one). */
const KEEP_BUNDLES = 3;
/** Bundle keys remembered per source key (e.g. one per version of a shared contract). */
const KEEP_VARIANTS = 4;

/** Files and folders that never belong to a cell's source. */
const SKIPPED = new Set(['node_modules', 'dist', 'build']);
/** Files read into the source key: they steer resolution and compilation. */
const METADATA = new Set(['package.json', 'tsconfig.json']);

/** Sorted relative paths of the files (and symlinks) under `dir`: no dotfiles, no node_modules. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name.startsWith('.') || SKIPPED.has(e.name)) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() || e.isSymbolicLink()) out.push(relativeLabel(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

function optionsFingerprint(esbuildVersion: string): string {
  return `${CACHE_FORMAT}\0esbuild ${esbuildVersion}\0${JSON.stringify(BUILD_OPTIONS)}\0`;
}

export interface SourceKeyInput {
  esbuildVersion: string;
  dir: string;
  entryLabel: string;
  roots: Roots;
}

/** The pre-build key (see above) and the number of files in the DNA folder. */
export function sourceKey(s: SourceKeyInput): { key: string; files: number } {
  const h = createHash('sha256');
  const field = (name: string, value: string): void => {
    // Length-prefixed so that moving bytes between fields cannot collide.
    h.update(`${name}${value.length}:${value}\0`);
  };
  h.update(optionsFingerprint(s.esbuildVersion));
  field('entry', s.entryLabel);
  const files = listFiles(s.dir);
  for (const f of files) {
    field('file', f);
    const base = f.slice(f.lastIndexOf('/') + 1);
    if (METADATA.has(base) && (base === 'package.json' || f === base)) {
      field('meta', hashOrUndefined(s.roots, join(s.dir, f)) ?? 'unreadable');
    }
  }
  for (const c of s.roots.contracts) {
    field('contract', relativeLabel(s.dir, c));
    let names: string[] = [];
    try {
      if (statSync(c).isDirectory()) names = listFiles(c);
    } catch {}
    for (const n of names) field('contract-file', n);
  }
  for (const nm of s.roots.nodeModules) {
    // npm rewrites it on every install: a package added to a nearer node_modules is a new key.
    const lock = join(nm, '.package-lock.json');
    if (existsSync(lock)) field('npm', hashOrUndefined(s.roots, lock) ?? 'unreadable');
  }
  return { key: h.digest('hex'), files: files.length };
}

/** SHA-256 of a file inside the roots, or undefined when it cannot be read. */
function hashOrUndefined(roots: Roots, path: string): string | undefined {
  try {
    return hashInside(roots, path);
  } catch {
    return undefined;
  }
}

/** Inputs in the DNA folder first: they are the likeliest to have changed, and the cheapest. */
const localFirst = (a: [string, string], b: [string, string]): number =>
  Number(a[0].startsWith('../')) - Number(b[0].startsWith('../'));

export type InputList = [label: string, sha256: string][];

export function bundleKey(esbuildVersion: string, entryLabel: string, inputs: InputList): string {
  const h = createHash('sha256');
  h.update(optionsFingerprint(esbuildVersion));
  h.update(`entry${entryLabel.length}:${entryLabel}\0`);
  for (const [label, sha] of inputs) h.update(`${label.length}:${label}\0${sha}\n`);
  return h.digest('hex');
}

/** The nearest package.json above `file`, staying inside `root` (it steers how imports resolve). */
export function packageJsonOf(file: string, root: string): string | undefined {
  for (let d = dirname(file); d === root || d.startsWith(root + sep); d = dirname(d)) {
    const p = join(d, 'package.json');
    if (existsSync(p)) return p;
    if (d === root) break;
  }
  return undefined;
}

interface StoredInputs {
  format: string;
  entry: string;
  inputs: InputList;
}

const isPair = (x: unknown): x is [string, string] =>
  Array.isArray(x) && x.length === 2 && typeof x[0] === 'string' && typeof x[1] === 'string';

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return undefined; // our own file: missing or torn means "not cached"
  }
}

function writeAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    writeFileSync(tmp, data, { mode: 0o644 });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

export class BundleCache {
  readonly store: string;
  readonly index: string;

  constructor(readonly dir: string) {
    this.store = join(dir, '_store');
    this.index = join(dir, '_index');
    for (const d of [dir, this.store, this.index]) mkdirSync(d, { recursive: true, mode: 0o700 });
  }

  lockPath(source: string): string {
    return join(this.index, `${source}.lock`);
  }

  bundlePath(key: string): string {
    return join(this.store, `${key}.mjs`);
  }

  /**
   * The bundle key of a build of this source whose inputs, mapped onto `dir` and read again inside
   * `roots`, all hash as they did; undefined when there is none.
   */
  lookup(source: string, dir: string, roots: Roots): string | undefined {
    const variants = this.variants(source);
    for (const key of variants) {
      const stored = readJson(join(this.store, `${key}.inputs.json`)) as StoredInputs | undefined;
      if (stored?.format !== CACHE_FORMAT || !Array.isArray(stored.inputs) || !stored.inputs.every(isPair)) continue;
      if (!existsSync(this.bundlePath(key))) continue;
      const inputs = [...stored.inputs].sort(localFirst);
      if (inputs.every(([label, sha]) => hashOrUndefined(roots, resolve(dir, label)) === sha)) return key;
    }
    return undefined;
  }

  private variants(source: string): string[] {
    const v = (readJson(join(this.index, `${source}.json`)) as { variants?: unknown } | undefined)?.variants;
    return Array.isArray(v) ? v.filter((k): k is string => typeof k === 'string' && /^[0-9a-f]{64}$/.test(k)) : [];
  }

  /** Stores a bundle and its input list (the list first: a bundle without one is never a hit). */
  put(key: string, entryLabel: string, inputs: InputList, code: Uint8Array): void {
    // Same key, same content: an existing copy stays (rewriting it would cut it off from the
    // cells' hard links to it).
    if (existsSync(this.bundlePath(key)) && existsSync(join(this.store, `${key}.inputs.json`))) return;
    const stored: StoredInputs = { format: CACHE_FORMAT, entry: entryLabel, inputs };
    writeAtomic(join(this.store, `${key}.inputs.json`), JSON.stringify(stored));
    writeAtomic(this.bundlePath(key), code);
  }

  /** Records `key` as the newest build of `source` (the caller holds the source's lock). */
  remember(source: string, key: string): void {
    const variants = [key, ...this.variants(source).filter((k) => k !== key)].slice(0, KEEP_VARIANTS);
    writeAtomic(join(this.index, `${source}.json`), JSON.stringify({ variants }));
  }

  /**
   * The cell's own name for the bundle (a hard link, a copy where links are refused), touched so
   * that pruning counts it as the cell's newest. Undefined when the bundle vanished meanwhile.
   */
  link(cell: string, key: string): string | undefined {
    const dir = join(this.dir, cell);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, `${key}.mjs`);
    try {
      linkSync(this.bundlePath(key), path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined;
      if (code !== 'EEXIST') {
        try {
          copyFileSync(this.bundlePath(key), path);
        } catch {
          return undefined;
        }
      }
    }
    try {
      const now = new Date();
      utimesSync(path, now, now);
    } catch {
      return undefined;
    }
    return path;
  }

  /**
   * Keeps the cell's KEEP_BUNDLES most recently used bundles; a stored bundle no cell links any
   * more is removed with its input list.
   */
  prune(cell: string): void {
    const dir = join(this.dir, cell);
    try {
      const bundles = readdirSync(dir)
        .filter((f) => f.endsWith('.mjs'))
        .map((f) => ({ name: f, path: join(dir, f), mtime: statSync(join(dir, f)).mtimeMs }))
        .sort((a, b) => b.mtime - a.mtime);
      for (const b of bundles.slice(KEEP_BUNDLES)) {
        rmSync(b.path, { force: true });
        const key = b.name.slice(0, -'.mjs'.length);
        const stored = this.bundlePath(key);
        if (existsSync(stored) && statSync(stored).nlink === 1) {
          rmSync(stored, { force: true });
          rmSync(join(this.store, `${key}.inputs.json`), { force: true });
        }
      }
    } catch {
      // Pruning is housekeeping: a concurrent prune or a vanished file is not a build failure.
    }
  }
}
