// Serves `cell tap` beside every bound Membrane, as a Membrane extension the composition root
// (src/runtime.ts) registers: the tap server is a CallObserver the Membrane holds only while someone watches.
import { dirname } from 'node:path';
import type { MembraneExtension } from '../membrane/index.js';
import { bootInfo, ensurePrivateDir, tapSocketPath } from '../paths/index.js';
import { TapServer } from './server.js';

declare module '../membrane/index.js' {
  interface MembraneOptions {
    /** Serve `cell tap` on the cell's private tap socket (default true when listening on a socket). */
    tap?: boolean;
  }
}

/** The tap socket: where the Root said (the cell's private dir), else the layout's default. */
function tapPathFor(cell: string): string {
  const boot = bootInfo();
  if (boot !== undefined && boot.name === cell) return boot.tapPath;
  const path = tapSocketPath(cell);
  ensurePrivateDir(dirname(path));
  return path;
}

export const tapExtension: MembraneExtension = {
  name: 'tap',
  async attach(membrane, options) {
    if (options.tap === false || membrane.socketPath === null) return null;
    const tap = new TapServer({
      cell: membrane.cellName,
      service: membrane.service,
      path: tapPathFor(membrane.cellName),
    });
    tap.onActiveChange = (active) => {
      membrane.observer = active ? tap : null;
    };
    try {
      await tap.listen();
    } catch {
      // The tap is a diagnostic aid: a cell serves without it (`cell tap` then says it found no socket).
      return null;
    }
    return { close: () => tap.close() };
  },
};
