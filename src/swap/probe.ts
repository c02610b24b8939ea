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
  let last: unknown;
  while (Date.now() < deadline) {
    if (isAlive !== undefined && !isAlive()) {
      throw new CellError('E_SPAWN_FAILED', 'the process exited before it became healthy.', { cell });
    }
    try {
      const client = await Synapse.inspect(cell, {
        waitMs: 0,
        timeoutMs: Math.max(100, deadline - Date.now()),
        resolvers: [{ name: 'generation', order: 0, resolve: () => unixConnector(path) }],
      });
      try {
        const health = (await client.health()) as { status?: string };
        if (health?.status === 'ok') return health;
        last = new Error(`health status is ${JSON.stringify(health?.status)}`);
      } finally {
        await client.close();
      }
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 25));
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
