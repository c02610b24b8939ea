import { constants, promises as fsp } from 'node:fs';
import { join } from 'node:path';

/**
 * The few file operations the WAL and the snapshot store need. Everything durable goes through this
 * interface so a simulated disk (SimDisk) can stand in for the real one and crash at any point.
 */
export interface WalFs {
  mkdirp(dir: string): Promise<void>;
  /** Names (not paths) in `dir`; [] when it does not exist. */
  list(dir: string): Promise<string[]>;
  readFile(path: string): Promise<Uint8Array>;
  /** Opens for appending; `create` makes a new file and fails if it exists. */
  openAppend(path: string, create: boolean): Promise<WalFile>;
  truncate(path: string, length: number): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** Makes creations, renames and unlinks in `dir` durable. */
  fsyncDir(dir: string): Promise<void>;
}

export interface WalFile {
  write(data: Uint8Array): Promise<void>;
  /** fdatasync(2): the written bytes (and the size) are durable when it resolves. */
  datasync(): Promise<void>;
  /** Optional: write() then datasync() as one operation (a file opened O_DSYNC: one system call, one
   * trip through the thread pool instead of two). */
  writeDurable?(data: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

class NodeFile implements WalFile {
  constructor(private readonly fh: fsp.FileHandle) {}

  async write(data: Uint8Array): Promise<void> {
    let off = 0;
    while (off < data.byteLength) {
      const { bytesWritten } = await this.fh.write(data, off, data.byteLength - off);
      off += bytesWritten;
    }
  }

  datasync(): Promise<void> {
    return this.fh.datasync();
  }

  /** The file is open with O_DSYNC: each write returns once its bytes (and the size) are durable. */
  writeDurable(data: Uint8Array): Promise<void> {
    return this.write(data);
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/** The real disk (node:fs/promises). */
export const nodeFs: WalFs = {
  async mkdirp(dir) {
    await fsp.mkdir(dir, { recursive: true });
  },
  async list(dir) {
    try {
      return await fsp.readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  },
  async readFile(path) {
    return new Uint8Array(await fsp.readFile(path));
  },
  async openAppend(path, create) {
    // O_DSYNC: a WAL batch is one durable write (see writeDurable); the explicit datasync() stays valid.
    const base = constants.O_WRONLY | constants.O_APPEND | constants.O_DSYNC;
    const flags = create ? base | constants.O_CREAT | constants.O_EXCL : base;
    return new NodeFile(await fsp.open(path, flags, 0o600));
  },
  async truncate(path, length) {
    await fsp.truncate(path, length);
  },
  async rename(from, to) {
    await fsp.rename(from, to);
  },
  async unlink(path) {
    await fsp.unlink(path);
  },
  async fsyncDir(dir) {
    // A directory opens read-only on Linux; fsync on that descriptor flushes its entries.
    const fh = await fsp.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
};

export function joinPath(dir: string, name: string): string {
  return join(dir, name);
}
