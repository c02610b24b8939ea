// Wires NATS into Synapse and Membrane without either of them naming it: a resolver after the Root
// and a Membrane extension, both of which load the NATS client only once NATS is configured
// (CELL_NATS, or the Membrane's `nats` option). The package entry imports this file.
import { CellError } from '../errors/index.js';
import { addMembraneExtension, type Membrane, type MembraneAttachment } from '../membrane/index.js';
import type { Resolver } from '../synapse/index.js';
import { addResolver } from '../synapse/index.js';
import { type NatsOption, type NatsSettings, natsSettings } from './settings.js';

declare module '../membrane/index.js' {
  interface MembraneOptions {
    /**
     * Also serve the cell's methods as a NATS micro service: server URLs, or settings with credentials
     * and TLS (docs/NATS.md). `CELL_NATS` overrides it (`0` turns it off); the other CELL_NATS_*
     * variables override single fields.
     */
    nats?: NatsOption;
  }
}

/**
 * Synapse's NATS resolver (order 300, beside Axon's, after the local socket and the Root): finds the
 * cell among the `$SRV.INFO` answers of the NATS cluster. Answers "nothing" without touching the
 * network, or loading the client, when no settings are given and CELL_NATS is unset.
 */
export function natsResolver(settings: () => NatsSettings | null = () => natsSettings()): Resolver {
  return {
    name: 'nats',
    order: 300,
    async resolve(cell, context) {
      const s = settings();
      if (s === null) return null;
      clientLoaded = true;
      const { resolveOverNats } = await import('./carrier.js');
      return resolveOverNats(cell, context, s);
    },
  };
}

/** Serves a Membrane on NATS as well (what `Membrane.bind` does when NATS is configured). */
export async function serveOnNats(
  membrane: Membrane,
  option?: NatsOption,
): Promise<MembraneAttachment & { readonly id: string }> {
  const s = natsSettings(option);
  if (s === null) {
    throw new CellError('E_INVALID_ARGUMENT', 'no NATS servers to serve on.', {
      cell: membrane.cellName,
      fix: 'pass the server URLs (serveOnNats(membrane, "nats://host:4222")) or set CELL_NATS.',
    });
  }
  clientLoaded = true;
  const { NatsCellService } = await import('./service.js');
  return NatsCellService.start(membrane, s);
}

let registered = false;
/** Whether this process loaded the NATS client (closeNats has nothing to do otherwise). */
let clientLoaded = false;

/** Closes this process's NATS connections at once (tests; a program that wants to exit now). */
export async function closeNats(): Promise<void> {
  if (!clientLoaded) return;
  const { closeAllNats } = await import('./connection.js');
  await closeAllNats();
}

/** Registers the resolver and the Membrane extension (idempotent; the package entry calls it). */
export function registerNats(): void {
  if (registered) return;
  registered = true;
  addResolver(natsResolver());
  addMembraneExtension({
    name: 'nats',
    async attach(membrane, options) {
      const s = natsSettings(options.nats);
      if (s === null) return null;
      clientLoaded = true;
      const { NatsCellService } = await import('./service.js');
      return NatsCellService.start(membrane, s);
    },
  });
}
