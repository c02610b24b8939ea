import { createHash } from 'node:crypto';
import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  lstatSync,
  openSync,
  readFileSync,
  readlinkSync,
  readSync,
  realpathSync,
  type Stats,
  statSync,
} from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CellError } from '../errors/index.js';

/**
 * The folders (and files) a cell's build may read, each by its real path: whatever esbuild loads
 * must lie inside one of them after symlinks are resolved.
 */
export interface Roots {
  /** The DNA folder. */
  dna: string;
  /** The files and folders the manifest declares in `contracts`. */
  contracts: string[];
  /** The project's node_modules folders, nearest first. */
  nodeModules: string[];
  /** Cell's own package and the node_modules its dependencies live in. */
  cell: string[];
}

/** Why a path was refused; `path` is the real path when it could be resolved. */
export type RefusalReason = 'outside' | 'special' | 'not-file' | 'too-large';

export class RefusedPath extends Error {
  /** The file that asked for it and how, when known. */
  importer: string | undefined;
  specifier: string | undefined;

  constructor(
    readonly reason: RefusalReason,
    readonly path: string,
    readonly kind = '',
  ) {
    super(`${reason}: ${path}`);
  }
}

/** Larger inputs are refused: a bundle input is source, not data. */
export const MAX_INPUT_BYTES = 64 * 1024 * 1024;

const here = dirname(fileURLToPath(import.meta.url));

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** The folder holding this package's `src/` (or `dist/`): two levels up from src/ribosome. */
export function cellPackageDir(): string {
  let dir = resolve(here, '..', '..');
  if (basename(dir) === 'dist' && existsSync(join(dir, '..', 'package.json'))) dir = dirname(dir);
  return dir;
}

function cellRoots(): string[] {
  const pkg = cellPackageDir();
  const out = [realpathSync.native(pkg)];
  const own = join(pkg, 'node_modules');
  if (isDirectory(own)) out.push(realpathSync.native(own));
  // Installed as a dependency, its own dependencies are hoisted into the node_modules holding it.
  let parent = dirname(out[0] as string);
  if (basename(parent).startsWith('@')) parent = dirname(parent);
  if (basename(parent) === 'node_modules') out.push(parent);
  return out;
}

const depth = (p: string): number => (p === sep ? 0 : p.split(sep).length - 1);

/** The folder holding the nearest node_modules walking up from `dir`, if any. */
function nearestNodeModulesHolder(dir: string): string | undefined {
  for (let d = dir; ; d = dirname(d)) {
    if (isDirectory(join(d, 'node_modules'))) return d;
    if (dirname(d) === d) return undefined;
  }
}

/**
 * Every node_modules folder walking up from the DNA folder, no higher than the folder that holds
 * the manifest folder's nearest node_modules (or the manifest folder itself when it has none).
 */
function projectNodeModules(dnaDir: string, manifestDir: string): string[] {
  const limit = nearestNodeModulesHolder(manifestDir) ?? manifestDir;
  const out: string[] = [];
  for (let d = dnaDir; depth(d) >= depth(limit); d = dirname(d)) {
    const nm = join(d, 'node_modules');
    if (isDirectory(nm)) out.push(realpathSync.native(nm));
    if (d === limit || dirname(d) === d) break;
  }
  return [...new Set(out)];
}

/**
 * The roots of one build. `dnaDir` and `manifestDir` are real paths; `contracts` are absolute or
 * relative to `manifestDir`. A contract that does not exist, or is neither file nor folder, is
 * E_DNA_UNKNOWN.
 */
export function allowedRoots(cell: string, dnaDir: string, manifestDir: string, contracts: readonly string[]): Roots {
  const declared: string[] = [];
  for (const c of contracts) {
    const abs = isAbsolute(c) ? c : resolve(manifestDir, c);
    let real: string;
    let st: Stats;
    try {
      real = realpathSync.native(abs);
      st = statSync(real);
    } catch {
      throw new CellError('E_DNA_UNKNOWN', `its contract ${abs} does not exist.`, {
        cell,
        fix: 'correct `contracts` in cell.json: files or folders relative to the manifest.',
      });
    }
    if (!st.isFile() && !st.isDirectory()) {
      throw new CellError('E_DNA_UNKNOWN', `its contract ${abs} is neither a file nor a folder.`, {
        cell,
        fix: 'name regular files or folders in `contracts`.',
      });
    }
    declared.push(real);
  }
  return {
    dna: dnaDir,
    contracts: [...new Set(declared)],
    nodeModules: projectNodeModules(dnaDir, manifestDir),
    cell: cellRoots(),
  };
}

export function rootList(roots: Roots): string[] {
  return [roots.dna, ...roots.contracts, ...roots.nodeModules, ...roots.cell];
}

/** The root holding real path `p`, or undefined. A root may be a single file. */
export function rootOf(roots: Roots, p: string): string | undefined {
  for (const r of rootList(roots)) {
    if (p === r || p.startsWith(r === sep ? r : r + sep)) return r;
  }
  return undefined;
}

/** `p` with symlinks resolved; for a path that does not exist, its nearest existing ancestor's. */
export function realpathLoose(p: string): string {
  try {
    return realpathSync.native(p);
  } catch {
    const parent = dirname(p);
    if (parent === p) return p;
    return join(realpathLoose(parent), basename(p));
  }
}

function fileKind(st: Stats): string {
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isDirectory()) return 'a folder';
  return 'not a regular file';
}

/**
 * Checks, before any byte is read, that `p` may be read: inside a root after realpath, and a
 * regular file (a missing path passes: the resolver reports it). Returns the real path.
 */
export function checkPath(roots: Roots, p: string, opts: { allowDirectory?: boolean } = {}): string {
  const real = realpathLoose(p);
  if (rootOf(roots, real) === undefined) throw new RefusedPath('outside', real);
  let st: Stats;
  try {
    st = lstatSync(real);
  } catch {
    return real;
  }
  if (!st.isFile() && !(opts.allowDirectory && st.isDirectory())) {
    throw new RefusedPath('special', real, fileKind(st));
  }
  return real;
}

const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

/**
 * Opens a file the build may read: checked as by checkPath, then opened without following a
 * final symlink and without blocking (a FIFO swapped in meanwhile cannot hang the Root), and
 * checked again on the open file: a regular file, still inside a root by the kernel's own
 * account of what was opened (/proc/self/fd), at most MAX_INPUT_BYTES. The caller closes `fd`.
 */
function openInside(roots: Roots, p: string): { fd: number; real: string } {
  const real = checkPath(roots, p);
  const fd = openSync(real, OPEN_FLAGS);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new RefusedPath('special', real, fileKind(st));
    let opened = real;
    try {
      opened = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      // No /proc: the checks on the path and on the open file's type stand.
    }
    if (rootOf(roots, opened) === undefined) throw new RefusedPath('outside', opened);
    if (st.size > MAX_INPUT_BYTES) throw new RefusedPath('too-large', real, `${st.size} bytes`);
    return { fd, real: opened };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/** Reads a file the build may read (see openInside). */
export function readInside(roots: Roots, p: string): { real: string; content: Buffer } {
  const { fd, real } = openInside(roots, p);
  try {
    return { real, content: readFileSync(fd) };
  } finally {
    closeSync(fd);
  }
}

const chunk = Buffer.allocUnsafe(256 * 1024);

/**
 * Hashes already computed, by real path, with the identity of the file they were computed from
 * (device, inode, size, mtime and ctime in ns): a cache hit re-checks every input of a bundle, and
 * most of them (the runtime, packages) never change. Any write changes ctime; a file written in the
 * last two seconds is hashed again each time (a write in the same clock tick as the hash could
 * otherwise go unseen, as with git's racy index entries).
 */
const hashed = new Map<string, { id: string; sha: string }>();
const HASH_MEMO_MAX = 50_000;
const RACY_NS = 2_000_000_000n;

/** SHA-256 of a file the build may read (see openInside), read through one reused buffer. */
export function hashInside(roots: Roots, p: string): string {
  const { fd, real } = openInside(roots, p);
  try {
    const st = fstatSync(fd, { bigint: true });
    const id = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    const known = hashed.get(real);
    if (known !== undefined && known.id === id) return known.sha;
    const h = createHash('sha256');
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      h.update(chunk.subarray(0, n));
    }
    const sha = h.digest('hex');
    const settled = BigInt(Date.now()) * 1_000_000n - st.ctimeNs > RACY_NS;
    if (settled) {
      if (hashed.size >= HASH_MEMO_MAX) hashed.clear();
      hashed.set(real, { id, sha });
    }
    return sha;
  } finally {
    closeSync(fd);
  }
}

/** `p` relative to `from`, with forward slashes. */
export function relativeLabel(from: string, p: string): string {
  return relative(from, p).split(sep).join('/');
}
