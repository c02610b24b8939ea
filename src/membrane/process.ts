// Process-wide behaviour a cell's Membrane opts into as extensions (src/runtime.ts registers both):
// draining every Membrane on SIGTERM/SIGINT, and stopping when the Root that started the cell is gone.
import type { Membrane, MembraneExtension } from './index.js';

/** Membranes that close on SIGTERM/SIGINT: all of them drain before the process exits. */
const signalled = new Set<Membrane>();
let signalHandlerInstalled = false;

function onTerminate(): void {
  process.off('SIGTERM', onTerminate);
  process.off('SIGINT', onTerminate);
  Promise.all([...signalled].map((m) => m.close())).then(
    () => process.exit(0),
    () => process.exit(1),
  );
}

/** Close gracefully and exit on SIGTERM/SIGINT, unless the options say `handleSignals: false`. */
export const signalDrain: MembraneExtension = {
  name: 'signal drain',
  attach(membrane, options) {
    if (options.handleSignals === false) return null;
    signalled.add(membrane);
    if (!signalHandlerInstalled) {
      signalHandlerInstalled = true;
      process.once('SIGTERM', onTerminate);
      process.once('SIGINT', onTerminate);
    }
    return { close: () => void signalled.delete(membrane) };
  },
};

let parentWatch: NodeJS.Timeout | null = null;

/**
 * A cell the Root started without a sandbox watches its parent (`CELL_PARENT_PID`): a sandboxed one
 * dies with the Root through bubblewrap, an unsandboxed one would live on, holding its name, after a
 * crashed Root. When this process has been re-parented it stops as on SIGTERM (draining, if the
 * Membrane handles signals). A check every 500 ms costs one getppid.
 */
export const parentWatchExtension: MembraneExtension = {
  name: 'parent watch',
  attach() {
    watchRootParent();
    return null;
  },
};

function watchRootParent(): void {
  const root = Number(process.env.CELL_PARENT_PID);
  // Only the Root's own child watches (a process this cell starts inherits the variable, not the Root).
  if (!(root > 0) || parentWatch !== null || process.ppid !== root) return;
  delete process.env.CELL_PARENT_PID;
  parentWatch = setInterval(() => {
    if (process.ppid === root) return;
    if (parentWatch !== null) clearInterval(parentWatch);
    // Our output went to the Root through pipes: writing to them now fails with EPIPE, which must not
    // crash the drain that follows.
    process.stdout.on('error', () => {});
    process.stderr.on('error', () => {});
    process.kill(process.pid, 'SIGTERM');
  }, 500);
  parentWatch.unref();
}
