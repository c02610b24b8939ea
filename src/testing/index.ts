// `cell-runtime/testing`: what a project needs to test its cells with any test runner — a throwaway
// CELL_HOME (sockets, keys and logs in a temporary folder, so a test never touches ~/.cell or a
// running Root) and a cell served in-process with a client grown to it over its real socket.
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Handlers } from '../membrane/index.js';
import { Membrane, type MembraneOptions } from '../membrane/index.js';
import type { ServiceDef } from '../service/index.js';
import { type GrowOptions, Synapse, type SynapseClient } from '../synapse/index.js';

/** The variables a temporary home sets; the others are cleared so no Root, peer or NATS is reached. */
const SET = ['CELL_HOME', 'CELL_SOCKET_DIR'] as const;
const CLEARED = ['CELL_UMBILICAL', 'CELL_PEER', 'CELL_NATS', 'CELL_LAN'] as const;

export interface TempCellHome {
  /** The temporary CELL_HOME. */
  readonly home: string;
  /** Its rendezvous folder (CELL_SOCKET_DIR): `<home>/run`. */
  readonly socketDir: string;
  /** The variables to give a child process so it uses this home too. */
  readonly env: Readonly<Record<string, string>>;
  /** Puts the environment back as it was and deletes the folder. Idempotent. */
  cleanup(): void;
  [Symbol.dispose](): void;
}

/**
 * Points this process at a fresh temporary CELL_HOME (and CELL_SOCKET_DIR inside it) until
 * `cleanup()`. Cell reads these variables on every bind and grow, so the switch takes effect at once;
 * CELL_UMBILICAL, CELL_PEER, CELL_NATS and CELL_LAN are cleared meanwhile, so a test finds only the
 * cells it started. One at a time per process: the environment is process-wide.
 */
export function tempCellHome(prefix = 'cell-test-'): TempCellHome {
  // The real path: socket paths are compared and bound under it (/tmp may be a symlink).
  const home = realpathSync(mkdtempSync(join(tmpdir(), prefix)));
  const socketDir = join(home, 'run');
  const saved = new Map<string, string | undefined>();
  for (const key of [...SET, ...CLEARED]) saved.set(key, process.env[key]);
  process.env.CELL_HOME = home;
  process.env.CELL_SOCKET_DIR = socketDir;
  for (const key of CLEARED) delete process.env[key];
  let done = false;
  const cleanup = () => {
    if (done) return;
    done = true;
    for (const [key, value] of saved) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
    rmSync(home, { recursive: true, force: true });
  };
  return {
    home,
    socketDir,
    env: { CELL_HOME: home, CELL_SOCKET_DIR: socketDir },
    cleanup,
    [Symbol.dispose]: cleanup,
  };
}

export interface TestCellOptions {
  /** Options for `Membrane.bind` (signal handling is off unless asked for). */
  membrane?: MembraneOptions;
  /** Options for `Synapse.grow` (by default it waits up to 5 s for the socket). */
  grow?: GrowOptions;
  /** Serve in this home instead of a fresh temporary one (which `close()` then leaves alone). */
  home?: TempCellHome;
}

export interface TestCell<S extends ServiceDef> {
  /** A client grown to the cell over its socket: the same proxy a caller in another process gets. */
  readonly client: SynapseClient<S>;
  readonly membrane: Membrane<S>;
  readonly home: TempCellHome;
  /** Closes the client and the Membrane, then the temporary home if this call made it. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Serves `handlers` as the cell `service` in this process — a real Membrane on a real socket in a
 * temporary CELL_HOME — and grows a Synapse to it, so a test exercises the wire: encoding, the
 * handshake and fingerprint check, identity attestation, shared memory where available, and errors
 * as the caller sees them.
 *
 * ```ts
 * await using cell = await startTestCell(Greeter, { greet: (p) => `hello ${p.name}` });
 * assert.equal(await cell.client.greet({ name: 'you' }), 'hello you');
 * ```
 */
export async function startTestCell<S extends ServiceDef>(
  service: S,
  handlers: Handlers<S>,
  options: TestCellOptions = {},
): Promise<TestCell<S>> {
  const ownHome = options.home === undefined;
  const home = options.home ?? tempCellHome();
  let membrane: Membrane<S> | undefined;
  try {
    membrane = await Membrane.bind(service, handlers, { handleSignals: false, ...options.membrane });
    const client = await Synapse.grow(service, { waitMs: 5000, ...options.grow });
    const served = membrane;
    let closed: Promise<void> | undefined;
    const close = () => {
      closed ??= (async () => {
        try {
          await client.$close();
          await served.close();
        } finally {
          if (ownHome) home.cleanup();
        }
      })();
      return closed;
    };
    return { client, membrane: served, home, close, [Symbol.asyncDispose]: close };
  } catch (err) {
    await membrane?.close().catch(() => {});
    if (ownHome) home.cleanup();
    throw err;
  }
}
