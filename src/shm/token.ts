import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { CellError } from '../errors/index.js';
import { cellHome } from '../paths/index.js';

/**
 * The per-user secret behind the upgrade's challenge-response: CELL_SHM_TOKEN, or ~/.cell/shm.token
 * (created on first use with 32 random bytes, mode 0600). It proves the peer can read this user's
 * Cell home: a process that shares the uid but runs in a sandbox without that file can't upgrade.
 */
export function shmTokenPath(): string {
  return join(cellHome(), 'shm.token');
}

export function loadShmToken(): Buffer {
  const fromEnv = process.env.CELL_SHM_TOKEN;
  if (fromEnv !== undefined && fromEnv !== '') {
    if (fromEnv.length < 16) {
      throw new CellError('E_SHM_AUTH', 'CELL_SHM_TOKEN is shorter than 16 characters.', {
        fix: 'set CELL_SHM_TOKEN to a long random string, or unset it to use ~/.cell/shm.token.',
      });
    }
    return Buffer.from(fromEnv, 'utf8');
  }
  const path = shmTokenPath();
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw tokenError(path, (err as Error).message);
    mkdirSync(cellHome(), { recursive: true, mode: 0o700 });
    try {
      const w = openSync(path, 'wx', 0o600);
      writeSync(w, randomBytes(32).toString('hex'));
      closeSync(w);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw tokenError(path, (e as Error).message);
    }
    fd = openSync(path, 'r');
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw tokenError(path, 'not a regular file');
    if (typeof process.getuid === 'function' && st.uid !== process.getuid())
      throw tokenError(path, 'owned by another user');
    if ((st.mode & 0o077) !== 0) throw tokenError(path, `mode ${(st.mode & 0o777).toString(8)} lets others read it`);
    const token = readFileSync(fd);
    if (token.length < 16) throw tokenError(path, 'shorter than 16 bytes');
    return token;
  } finally {
    closeSync(fd);
  }
}

function tokenError(path: string, why: string): CellError {
  return new CellError('E_SHM_AUTH', `shared-memory token ${path} is unusable: ${why}.`, {
    fix: `delete ${path} (it is recreated with mode 0600) or set CELL_SHM_TOKEN.`,
  });
}

const LABEL = Buffer.from('cell-shm-v1', 'utf8');

/** HMAC-SHA256(token, "cell-shm-v1" ‖ challenge ‖ ticket): binds the answer to this offer. */
export function shmProof(token: Buffer, challenge: Uint8Array, ticket: Uint8Array): Buffer {
  return createHmac('sha256', token).update(LABEL).update(challenge).update(ticket).digest();
}

export function proofMatches(expected: Buffer, got: Uint8Array): boolean {
  return got.length === expected.length && timingSafeEqual(expected, got);
}
