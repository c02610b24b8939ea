import {
  chmodSync,
  chownSync,
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { SandboxUser } from '../capsid/index.js';
import { CellError } from '../errors/index.js';
import { cellSecretsDir, ensurePrivateDir, NATS_ENV } from '../paths/index.js';
import type { NatsEntry } from './manifest.js';

/** A credentials or certificate file larger than this is not one. */
const MAX_FILE = 1024 * 1024;

/**
 * What a cell whose manifest entry has `nats` gets: the CELL_NATS* variables (through the boot
 * contract, never argv) and its own copies of the named files in `secrets/<name>/` (mode 0400, owned
 * by the sandbox user), a directory only the Root writes and only this cell's sandbox sees, read-only.
 * So the secrets reach this cell alone, whatever the owner and mode of the operator's originals.
 * `dir` is set when there are files to bind into the sandbox.
 */
export function natsHandover(
  name: string,
  entry: NatsEntry,
  user?: SandboxUser,
): { env: Record<string, string>; dir?: string } {
  const env: Record<string, string> = { [NATS_ENV.servers]: entry.servers.join(',') };
  if (entry.user !== undefined) env[NATS_ENV.user] = entry.user;
  if (entry.inboxPrefix !== undefined) env[NATS_ENV.inboxPrefix] = entry.inboxPrefix;
  if (entry.version !== undefined) env[NATS_ENV.version] = entry.version;
  const files: Array<[keyof typeof NATS_ENV, string | undefined]> = [
    ['credsFile', entry.credsFile],
    ['nkeySeedFile', entry.nkeySeedFile],
    ['passwordFile', entry.passwordFile],
    ['tokenFile', entry.tokenFile],
    ['caFile', entry.tls?.caFile],
    ['certFile', entry.tls?.certFile],
    ['keyFile', entry.tls?.keyFile],
  ];
  const dir = cellSecretsDir(name);
  removeSecrets(dir);
  if (files.every(([, path]) => path === undefined)) return { env };
  ensurePrivateDir(dirname(dir));
  mkdirSync(dir, { mode: 0o700 });
  for (const [key, path] of files) {
    if (path === undefined) continue;
    const copy = join(dir, `${key}-${basename(path)}`);
    writeFileSync(copy, readSmallFile(name, path), { mode: 0o400, flag: 'wx' });
    if (user !== undefined) chownSync(copy, user.uid, user.gid);
    env[NATS_ENV[key]] = copy;
  }
  // Read-only for its owner, the sandbox user, who sees it through a read-only bind only.
  if (user !== undefined) chownSync(dir, user.uid, user.gid);
  chmodSync(dir, 0o500);
  return { env, dir };
}

/** Removes a cell's handed-over files (at every start, and when it is removed). */
export function removeSecrets(dir: string): void {
  try {
    chmodSync(dir, 0o700);
  } catch {
    return; // not there
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Reads a regular file of at most MAX_FILE bytes; errors name the file, never its content. */
function readSmallFile(name: string, path: string): Buffer {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > MAX_FILE) throw new Error(`not a regular file of at most ${MAX_FILE} bytes`);
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new CellError('E_INVALID_ARGUMENT', `cannot read the NATS file ${path}: ${why}.`, {
      cell: name,
      fix: 'point the manifest\'s "nats" field at a file the Root can read.',
    });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
