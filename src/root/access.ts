import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { basename } from 'node:path';
import { CellError } from '../errors/index.js';
import { loadNative } from '../shm/native.js';

/**
 * Who is asking the Root. The operator (the Root's own user, outside every cell) drives everything;
 * a cell reaches the Root only through its own channel socket, and there may only grow the peers its
 * manifest entry lists in `calls`.
 */
export type Principal = { readonly kind: 'operator' } | { readonly kind: 'cell'; readonly name: string };

export const OPERATOR: Principal = Object.freeze({ kind: 'operator' });

/** Methods a cell's channel answers; every other method is the operator's. */
const CELL_METHODS = new Set(['spawn', 'status']);

export function denied(principal: Principal, method: string, why: string): CellError {
  const who = principal.kind === 'cell' ? `cell '${principal.name}'` : 'this caller';
  return new CellError('E_PERMISSION_DENIED', `${who} may not call the Root's '${method}': ${why}.`, {
    ...(principal.kind === 'cell' ? { cell: principal.name } : {}),
    fix:
      principal.kind === 'cell'
        ? `list the peer in the "calls" field of '${principal.name}' in cell.json (cells may only grow the peers they call).`
        : 'run the command as the user who runs the Root, outside any cell.',
  });
}

/**
 * Throws E_PERMISSION_DENIED unless `principal` may call `method` (about cell `target`, when the method
 * concerns one). `calls` is what the asking cell's manifest entry allows it to grow.
 */
export function authorize(principal: Principal, method: string, target: string | undefined, calls: readonly string[]) {
  if (principal.kind === 'operator') return;
  if (!CELL_METHODS.has(method)) throw denied(principal, method, 'a cell may only grow the peers it calls');
  if (target === undefined || !calls.includes(target)) {
    throw denied(principal, method, `'${target ?? '?'}' is not in its "calls" list`);
  }
}

/** The socket's peer (SO_PEERCRED), or undefined when the native addon is not available. */
export function peerOf(socket: Socket): { pid: number; uid: number } | undefined {
  const native = loadNative();
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (native.addon === undefined || typeof fd !== 'number' || fd < 0) return undefined;
  try {
    return native.addon.peerCred(fd);
  } catch {
    return undefined;
  }
}

/** The parent pid and cgroup lines of a process, from /proc (undefined when it is gone). */
function procInfo(pid: number): { ppid: number; cgroups: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return { ppid, cgroups: readFileSync(`/proc/${pid}/cgroup`, 'utf8') };
  } catch {
    return undefined;
  }
}

export interface CellProcesses {
  /** Host pids of the processes the Root started (the cells' outermost processes). */
  pids(): Iterable<number>;
  /** The cells' cgroup directories (relative paths as /proc/<pid>/cgroup shows them end with these). */
  cgroups(): Iterable<string>;
}

/**
 * The gate of the Root's control socket: only the Root's own user (or root) may connect, and never
 * from inside a cell — a process in a cell's cgroup or below a process the Root started is refused
 * (an unsandboxed cell shares the user, so the uid alone proves nothing). Without the native addon
 * the gate cannot read the peer and relies on the socket's private directory alone.
 */
export function operatorGate(cells: CellProcesses): (socket: Socket) => CellError | undefined {
  const me = process.getuid?.() ?? -1;
  return (socket) => {
    const peer = peerOf(socket);
    if (peer === undefined) return undefined;
    if (peer.uid !== me && peer.uid !== 0) {
      return denied(OPERATOR, 'connect', `uid ${peer.uid} is not the Root's user (${me})`);
    }
    const cellPids = new Set(cells.pids());
    // A cell's cgroup leaf (`<name>-<random>`) is unique; /proc/<pid>/cgroup lines end with it.
    const leaves = [...cells.cgroups()].map((g) => `/${basename(g)}\n`);
    let pid = peer.pid;
    for (let hops = 0; pid > 1 && hops < 64; hops++) {
      if (pid === process.pid) break;
      if (cellPids.has(pid)) return denied({ kind: 'cell', name: '?' }, 'connect', 'the caller runs inside a cell');
      const info = procInfo(pid);
      if (info === undefined) break;
      if (hops === 0 && leaves.some((leaf) => `${info.cgroups}\n`.includes(leaf))) {
        return denied({ kind: 'cell', name: '?' }, 'connect', 'the caller runs in a cell cgroup');
      }
      pid = info.ppid;
    }
    return undefined;
  };
}
