// Wires Axon into Synapse and Membrane without either of them naming it: a remote resolver after the
// Root and a Membrane extension that serves the LAN. Both load the mesh code (TLS, pheromones) only
// once the process opted in with CELL_LAN=1, CELL_PEER or a manifest's `lan`. src/runtime.ts calls it.
import type { MembraneAttachment } from '../membrane/index.js';
import { addMembraneExtension } from '../membrane/index.js';
import type { Resolver } from '../synapse/index.js';
import { addResolver } from '../synapse/index.js';
import { lanEnabled } from './server.js';

declare module '../membrane/index.js' {
  interface MembraneOptions {
    /** Also serve other mesh hosts over mutual TLS (Axon); CELL_LAN=1/0 overrides. See docs/AXON.md. */
    lan?: boolean;
  }
}

/** What the mesh extension attaches: the TLS listener other hosts reach this cell at. */
export interface MeshAttachment extends MembraneAttachment {
  readonly address: string;
  readonly port: number;
}

let axon: Promise<Resolver> | undefined;
/**
 * Axon's remote lookup (discovered instance, then CELL_PEER), loaded only when the process opted in
 * with CELL_LAN=1 or names a peer with CELL_PEER; see docs/AXON.md.
 */
const axonRemoteResolver: Resolver = {
  name: 'axon',
  order: 300,
  async resolve(cell, context) {
    if (process.env.CELL_LAN !== '1' && !process.env.CELL_PEER) return null;
    axon ??= import('./mesh.js').then((m) => m.axonResolver());
    return (await axon).resolve(cell, context);
  },
};

let registered = false;
/** Registers the resolver and the Membrane extension (idempotent). */
export function registerAxon(): void {
  if (registered) return;
  registered = true;
  addResolver(axonRemoteResolver);
  addMembraneExtension({
    name: 'mesh',
    async attach(membrane, options): Promise<MeshAttachment | null> {
      if (!lanEnabled(options.lan)) return null;
      // Loaded only by cells that serve the LAN.
      const { exposeOnMesh } = await import('./mesh.js');
      const server = await exposeOnMesh(membrane);
      // Withdraw first, so remote clients stop choosing this instance while it drains.
      return { address: server.address, port: server.port, drain: () => server.stopAccepting() };
    },
  });
}
