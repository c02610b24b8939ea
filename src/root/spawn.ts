import { statSync } from 'node:fs';
import { rootSocketPath } from '../paths/index.js';
import type { Resolver } from '../synapse/index.js';

let root: Promise<typeof import('./resolver.js')> | undefined;
/**
 * The Mycelium Root spawns the cell on demand (building its DNA) and answers once it is ready; asked
 * only when the umbilical socket exists, and loaded only then. src/runtime.ts registers it.
 */
export const rootSpawnResolver: Resolver = {
  name: 'root spawn',
  order: 200,
  async resolve(cell, context) {
    try {
      if (!statSync(rootSocketPath()).isSocket()) return null;
    } catch {
      return null;
    }
    root ??= import('./resolver.js');
    return (await root).spawnThroughRoot(cell, context);
  },
};
