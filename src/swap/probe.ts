import { type FSWatcher, watch } from 'node:fs';
import { dirname } from 'node:path';
import { CellError } from '../errors/index.js';
import { Synapse, unixConnector } from '../synapse/index.js';

/**
 * Waits until the Membrane listening at exactly `path` answers its health built-in with status ok
 * (so a generation is checked at its own path, before anything points the public name at it).
 */
export async function waitHealthy(
  cell: string,
  path: string,
  timeoutMs: number,
  isAlive?: () => boolean,
): Promise<unknown> {
  const deadline = Date.now() + timeoutMs;
  // A change in the socket's folder (the cell bound it) ends the pause between attempts early.
  const pause = new Pause(25);
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(path), () => pause.wake());
    watcher.on('error', () => {});
  } catch {
    // no folder yet, or no inotify: the pause alone paces the attempts
  }
  let last: unknown;
  try {
    while (Date.now() < deadline) {
      if (isAlive !== undefined && !isAlive()) {
        throw new CellError('E_SPAWN_FAILED', 'the process exited before it became healthy.', { cell });
      }
      try {
        const health = await askHealth(cell, path, deadline);
        if (health?.status === 'ok') return health;
        last = new Error(`health status is ${JSON.stringify(health?.status)}`);
      } catch (err) {
        last = err;
      }
      await pause.next();
    }
  } finally {
    watcher?.close();
  }
  throw new CellError(
    'E_TIMEOUT',
    `not healthy at ${path} within ${timeoutMs} ms (${(last as Error)?.message ?? 'no answer'}).`,
    {
      cell,
      cause: last,
    },
  );
}

async function askHealth(cell: string, path: string, deadline: number): Promise<{ status?: string }> {
  const client = await Synapse.inspect(cell, {
    waitMs: 0,
    timeoutMs: Math.max(100, deadline - Date.now()),
    resolvers: [{ name: 'generation', order: 0, resolve: () => unixConnector(path) }],
  });
  try {
    return (await client.health()) as { status?: string };
  } finally {
    await client.close();
  }
}

/** A wait of `ms` that `wake()` ends early (and that is already over when woken while nobody waited). */
class Pause {
  private resolve: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private woken = false;

  constructor(private readonly ms: number) {}

  next(): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((r) => {
      this.resolve = r;
      this.timer = setTimeout(() => this.wake(), this.ms);
    });
  }

  wake(): void {
    const r = this.resolve;
    if (r === undefined) {
      this.woken = true;
      return;
    }
    clearTimeout(this.timer);
    this.resolve = undefined;
    this.woken = false;
    r();
  }
}
