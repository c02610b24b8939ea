import { chmodSync, lstatSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { CellError } from '../errors/index.js';

export type { CellBoot, CellIdentity } from './boot.js';
export { BOOT_FD, bootInfo, NATS_ENV, readBootFrom, refusedEnvKey, setBootInfo } from './boot.js';

/**
 * Where Cell keeps its files: the one place that spells the layout, so the Root, the Capsid, the
 * Membrane, the swap code and the CLI agree (docs/SANDBOX.md § Layout).
 *
 *   $CELL_HOME (~/.cell)            0700, the operator's; never mounted into a sandbox as a whole
 *   ├── root/                       control plane, never visible to a cell
 *   │   ├── mitosis.sock            the Root's control socket (CELL_UMBILICAL overrides)
 *   │   ├── root.pid                the Root's pid (proved through the socket before it is signalled)
 *   │   ├── identity.key            Ed25519 key that signs cells' identities (0600)
 *   │   └── channels/<name>.sock    one narrow channel per cell, bound into that cell's sandbox only
 *   ├── run/                        rendezvous (CELL_SOCKET_DIR overrides): sandboxes see it read-only
 *   │   └── <name>/                 the only part a cell may write: its sockets and lock
 *   │       ├── <name>.sock         public name (a hard link to the serving generation)
 *   │       ├── <name>.<gen>.sock   one per generation (hot swap)
 *   │       └── <name>.lock         single-instance lock
 *   ├── cells/<name>/               the cell's operator-facing dir (tap socket); no other cell sees it
 *   ├── dna/ cache/ logs/           registry, build cache, logs: the Root's alone
 *
 * Unlike the original, there is no silent fallback to a shared /tmp directory another user could own.
 */
export function cellHome(): string {
  return process.env.CELL_HOME ?? join(homedir(), '.cell');
}

export function socketDir(): string {
  return process.env.CELL_SOCKET_DIR ?? join(cellHome(), 'run');
}

/** The Root's private directory: control socket, pid file, signing key, per-cell channels. */
export function controlDir(): string {
  return join(cellHome(), 'root');
}

export function rootSocketPath(): string {
  return process.env.CELL_UMBILICAL ?? join(controlDir(), 'mitosis.sock');
}

export function rootPidPath(): string {
  return join(controlDir(), 'root.pid');
}

/** The Ed25519 private key (PKCS#8 PEM) that signs cell identities; the operator's processes read it. */
export function rootKeyPath(): string {
  return join(controlDir(), 'identity.key');
}

/** The socket the Root serves cell `name` alone: its narrow channel (grow the peers it `calls`). */
export function channelSocketPath(name: string): string {
  return join(controlDir(), 'channels', `${validateCellName(name)}.sock`);
}

/** The part of the rendezvous directory cell `name` may write. */
export function cellRunDir(name: string): string {
  return join(socketDir(), validateCellName(name));
}

/** The public socket callers dial: `<socketDir>/<name>/<name>.sock`. */
export function cellSocketPath(name: string): string {
  return join(cellRunDir(name), `${name}.sock`);
}

/** The path a generation binds: `<dir>/<name>.<gen>.sock` next to the public `<dir>/<name>.sock`. */
export function generationSocketPath(publicPath: string, generation: number): string {
  const name = basename(publicPath).replace(/\.sock$/, '');
  return join(dirname(publicPath), `${name}.${generation}.sock`);
}

/** The instance lock beside a socket: `<path without .sock>.lock` (one per generation). */
export function socketLockPath(socketPath: string): string {
  return `${socketPath.replace(/\.sock$/, '')}.lock`;
}

/** The cell's operator-facing directory (tap and inspection sockets): writable by the cell, invisible to other cells. */
export function cellPrivateDir(name: string): string {
  return join(cellHome(), 'cells', validateCellName(name));
}

/**
 * Files the Root hands one cell (its NATS credentials): written by the Root, bound read-only into that
 * cell's sandbox alone, never in a directory the cell can write (it could swap in a symlink).
 */
export function cellSecretsDir(name: string): string {
  return join(cellHome(), 'secrets', validateCellName(name));
}

export function tapSocketPath(name: string): string {
  return join(cellPrivateDir(name), 'tap.sock');
}

/**
 * Where a cell started by the Root answers the operator's inspection (its metrics): the same protocol
 * as its public socket, in a directory no other cell can see.
 */
export function inspectSocketPath(name: string): string {
  return join(cellPrivateDir(name), 'inspect.sock');
}

export function cacheDir(): string {
  return join(cellHome(), 'cache');
}

export function logDir(): string {
  return join(cellHome(), 'logs');
}

export function dnaDir(): string {
  return join(cellHome(), 'dna');
}

const CELL_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** Cell names become file names and cgroup names: reject anything that could traverse a path. */
export function validateCellName(name: string): string {
  if (typeof name !== 'string' || !CELL_NAME.test(name)) {
    throw new CellError('E_NAME_INVALID', `invalid cell name ${JSON.stringify(name)}.`, {
      fix: 'use 1-63 characters of lowercase letters, digits, "-" or "_", starting with a letter or digit.',
    });
  }
  return name;
}

/**
 * Creates `dir` (and its parents) or makes sure an existing one is private: a directory owned by
 * this user, not a link, mode 0700. A looser mode is tightened; a directory owned by someone else is
 * refused (another user could replace what Cell puts there).
 */
export function ensurePrivateDir(dir: string, owner: number | undefined = process.getuid?.()): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory()) {
    throw new CellError('E_PERMISSION_DENIED', `${dir} is not a directory (a link or a file stands there).`, {
      fix: `remove ${dir}; Cell creates it as a private directory.`,
    });
  }
  if (owner !== undefined && st.uid !== owner && st.uid !== process.getuid?.()) {
    throw new CellError('E_PERMISSION_DENIED', `${dir} belongs to uid ${st.uid}, not to this user.`, {
      fix: `remove ${dir} or point CELL_HOME at a directory of your own.`,
    });
  }
  if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
  return dir;
}
