import { createPrivateKey, generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';
import { closeSync, fstatSync, linkSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { CellError, isCellError } from '../errors/index.js';
import { ensurePrivateDir, rootKeyPath } from '../paths/index.js';

/** The key last read, by path; reused while the file's inode and mtime stay the same. */
let cached: { path: string; ino: number; ctimeMs: number; key: KeyObject } | null = null;

function keyError(path: string, why: string, fix: string): CellError {
  return new CellError('E_PERMISSION_DENIED', `the Root's signing key ${path} is unusable: ${why}.`, { fix });
}

/**
 * The operator's Ed25519 signing key (`$CELL_HOME/root/identity.key`, PKCS#8 PEM, mode 0600), created
 * on first use. Its directory is made private; a key file that another user owns, that others may
 * read, or that is not a regular file is refused: whoever can read it can pose as any cell.
 * Creation is atomic (written to a private temporary file, then linked into place), so a process
 * racing this one reads either no key or the whole of one.
 */
export function loadOrCreateRootKey(): KeyObject {
  const path = rootKeyPath();
  // The usual case, once per connection: the file read last is still the same one (one stat).
  if (cached !== null && cached.path === path) {
    try {
      const st = statSync(path);
      if (cached.ino === st.ino && cached.ctimeMs === st.ctimeMs) return cached.key;
    } catch {}
  }
  try {
    ensurePrivateDir(dirname(path));
  } catch (err) {
    if (isCellError(err)) throw err;
    throw keyError(
      path,
      `its directory cannot be made (${(err as Error).message})`,
      'point CELL_HOME at a directory of your own.',
    );
  }
  try {
    statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw unreadable(path, err);
    create(path);
  }
  return read(path);
}

function unreadable(path: string, err: unknown): CellError {
  return keyError(path, (err as Error).message, `make ${path} readable by this user, or point CELL_HOME elsewhere.`);
}

function create(path: string): void {
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}`;
  let fd: number;
  try {
    fd = openSync(tmp, 'wx', 0o600);
  } catch (err) {
    throw keyError(
      path,
      `cannot create it (${(err as Error).message})`,
      `make ${dirname(path)} writable by this user.`,
    );
  }
  try {
    writeSync(fd, pem);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } catch (err) {
    // Another process created it first: use theirs.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw keyError(
        path,
        `cannot create it (${(err as Error).message})`,
        `make ${dirname(path)} writable by this user.`,
      );
    }
  } finally {
    try {
      unlinkSync(tmp);
    } catch {}
  }
}

function read(path: string): KeyObject {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw unreadable(path, err);
  }
  let pem: string;
  let ino: number;
  let ctimeMs: number;
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw keyError(path, 'not a regular file', `remove ${path}; it is recreated on first use.`);
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) {
      throw keyError(
        path,
        `owned by uid ${st.uid}, not by this user (${uid})`,
        `remove ${path} or point CELL_HOME at a directory of your own.`,
      );
    }
    if ((st.mode & 0o077) !== 0) {
      throw keyError(
        path,
        `mode ${(st.mode & 0o777).toString(8)} lets other users read it`,
        `chmod 600 ${path} (and consider it leaked: remove it so a new one is made, then restart the Root).`,
      );
    }
    pem = readFileSync(fd, 'utf8');
    ino = st.ino;
    ctimeMs = st.ctimeMs;
  } finally {
    closeSync(fd);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw keyError(
      path,
      `not a PEM private key (${(err as Error).message})`,
      `remove ${path}; it is recreated on first use.`,
    );
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw keyError(
      path,
      `a ${key.asymmetricKeyType} key, not Ed25519`,
      `remove ${path}; it is recreated on first use.`,
    );
  }
  cached = { path, ino, ctimeMs, key };
  return key;
}
