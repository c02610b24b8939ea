// The composition root: wires the components above Synapse and Membrane into them, so neither imports
// the Root, the mesh or the tap. Synapse alone finds only local sockets and a bare Membrane serves only
// its socket (and the shared-memory upgrade); importing the package entry, which imports this file,
// makes `Synapse.grow` ask the Root and the mesh, and `Membrane.bind` serve the tap, the mesh and NATS,
// drain on signals and watch the Root that started it. Registration order is attach order; close()
// releases the attachments in reverse.

import { statSync } from 'node:fs';
import { registerAxon } from './axon/register.js';
import { addMembraneExtension } from './membrane/index.js';
import { parentWatchExtension, signalDrain } from './membrane/process.js';
import { registerNats } from './nats/index.js';
import { rootSocketPath } from './paths/index.js';
import { addResolver, type Resolver } from './synapse/index.js';
import { tapExtension } from './tap/register.js';

let root: Promise<typeof import('./root/resolver.js')> | undefined;
/**
 * The Mycelium Root spawns the cell on demand (building its DNA) and answers once it is ready; asked
 * only when the umbilical socket exists, and the Root's client is loaded only then (a cell's start-up
 * loads nothing of the Root).
 */
const rootSpawnResolver: Resolver = {
  name: 'root spawn',
  order: 200,
  async resolve(cell, context) {
    try {
      if (!statSync(rootSocketPath()).isSocket()) return null;
    } catch {
      return null;
    }
    root ??= import('./root/resolver.js');
    return (await root).spawnThroughRoot(cell, context);
  },
};

let registered = false;

/** Registers the built-in resolvers and Membrane extensions (idempotent; the package entry calls it). */
export function registerRuntime(): void {
  if (registered) return;
  registered = true;
  addResolver(rootSpawnResolver);
  addMembraneExtension(tapExtension);
  registerAxon();
  registerNats();
  addMembraneExtension(signalDrain);
  addMembraneExtension(parentWatchExtension);
}

registerRuntime();
