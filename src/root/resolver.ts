import { CellError, isCellError } from '../errors/index.js';
import { cellSocketPath, rootSocketPath } from '../paths/index.js';
import { type Connector, type ResolveContext, unixConnector } from '../synapse/resolve.js';
import { connectRoot, isSocket } from './client.js';

/**
 * Synapse.grow's order-200 step: the cell's socket is absent, so ask the Root to spawn it (building
 * its DNA if needed) and wait until it is ready. Null when no Root runs or it has no such DNA (a
 * remote resolver may still find the cell); a build or start failure is thrown as the Root said it.
 */
export async function spawnThroughRoot(cell: string, context: ResolveContext): Promise<Connector | null> {
  if (!isSocket(rootSocketPath())) return null;
  let root: Awaited<ReturnType<typeof connectRoot>>;
  try {
    root = await connectRoot({ timeoutMs: Math.max(30_000, context.deadline - Date.now()) });
  } catch {
    return null;
  }
  try {
    // On-demand spawns respect the supervisor: a crash-looping cell stays down until someone restarts
    // it on purpose, and a cell waiting out its restart backoff is waited for, not restarted early.
    let current = await root.status({ name: cell });
    if (current.state === 'crash-loop') {
      throw new CellError('E_CELL_CRASH_LOOP', `the cell is crash-looping (last exit: ${current.lastExit}).`, {
        cell,
        fix: `see \`cell logs ${cell}\`, fix it, then \`cell restart ${cell}\`.`,
      });
    }
    while (current.state === 'crashed' && Date.now() < context.deadline) {
      await new Promise((r) => setTimeout(r, 50));
      current = await root.status({ name: cell });
    }
    if (current.state === 'crash-loop') return null;
    const row = await root.spawn({ name: cell, wait: true });
    return row.state === 'running' ? unixConnector(cellSocketPath(cell)) : null;
  } catch (err) {
    if (isCellError(err, 'E_DNA_UNKNOWN') || isCellError(err, 'E_ROOT_UNAVAILABLE')) return null;
    throw err;
  } finally {
    await root.$close().catch(() => {});
  }
}
