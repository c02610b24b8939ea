import { randomBytes } from 'node:crypto';
import { chmodSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';

/**
 * A cell's operator-facing socket in its private directory: the inspection socket of a cell the Root
 * started (`cells/<name>/inspect.sock`, the cell's own protocol, where its `metrics` built-in
 * answers) and its tap (`tap.sock`). Bound 0600 under a unique name and renamed into place, so a hot
 * swap's new generation takes the path over without the old one unlinking it when it stops.
 */
export class PrivateListener {
  private constructor(
    private readonly server: Server,
    readonly path: string,
    private readonly inode: number,
  ) {}

  static async listen(path: string, accept: (socket: Socket) => void, allowHalfOpen = true): Promise<PrivateListener> {
    const unique = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
    const server = createServer({ allowHalfOpen }, accept);
    await listenPrivately(server, unique);
    const inode = statSync(unique).ino;
    renameSync(unique, path);
    return new PrivateListener(server, path, inode);
  }

  /** Stops accepting; the path goes too unless a newer generation renamed its own socket over it. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    try {
      if (statSync(this.path).ino === this.inode) unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

/**
 * Listens on a Unix socket at `path` that is 0600 from the moment it exists (umask), then again by
 * chmod; after listening, accept errors (EMFILE) are transient and the server keeps listening.
 * Rejects with the listen error (EADDRINUSE, …) for the caller to name.
 */
export async function listenPrivately(server: Server, path: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const old = process.umask(0o177);
    try {
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      process.umask(old);
    }
  });
  server.on('error', () => {});
  chmodSync(path, 0o600);
}
