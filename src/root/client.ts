import { readFileSync, statSync } from 'node:fs';
import { CellError, isCellError } from '../errors/index.js';
import { rootPidPath, rootSocketPath } from '../paths/index.js';
import { Synapse, type SynapseClient, unixConnector } from '../synapse/index.js';
import { RootService } from './contract.js';

export type RootClient = SynapseClient<typeof RootService>;

export { rootPidPath };

export function rootPid(): number | null {
  try {
    const pid = Number(readFileSync(rootPidPath(), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function rootNotRunning(): CellError {
  return new CellError('E_ROOT_UNAVAILABLE', `no Root is running (nothing answers on ${rootSocketPath()}).`, {
    fix: 'start it with `cell up` (in the folder of your cell.json).',
  });
}

/** Connects to the Root; E_ROOT_UNAVAILABLE when none answers. */
export async function connectRoot(opts: { timeoutMs?: number } = {}): Promise<RootClient> {
  const path = rootSocketPath();
  if (!isSocket(path)) throw rootNotRunning();
  try {
    return await Synapse.grow(RootService, {
      name: 'mitosis',
      waitMs: 0,
      shm: false,
      timeoutMs: opts.timeoutMs ?? 120_000,
      resolvers: [{ name: 'umbilical', order: 0, resolve: () => unixConnector(path) }],
    });
  } catch (err) {
    if (isCellError(err, 'E_CELL_NOT_FOUND')) throw rootNotRunning();
    throw err;
  }
}

/** Runs one request against the Root and closes the connection. */
export async function withRoot<T>(fn: (root: RootClient) => Promise<T>, opts: { timeoutMs?: number } = {}): Promise<T> {
  const root = await connectRoot(opts);
  try {
    return await fn(root);
  } catch (err) {
    // The Root's own denials (a bad manifest, a bad argument) concern no cell: say so rather than
    // blame its service name. Denials about a cell carry that cell and pass as they are.
    if (isCellError(err) && err.cell === RootService.name) {
      throw new CellError(err.code, err.message, { fix: err.fix, details: err.details, cause: err });
    }
    throw err;
  } finally {
    await root.$close().catch(() => {});
  }
}

export function isSocket(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}
