import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, realpathSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { CellError } from '../errors/index.js';
import { validateCellName } from '../paths/index.js';
import { nativeAddonPath } from '../ribosome/index.js';
import { CellCgroup, detectCgroups } from './cgroup.js';
import { DEFAULT_LIMITS, type Limits, parseLimits, parseMemory, resolveLimits } from './limits.js';

export type { CgroupLayout } from './cgroup.js';
export { detectCgroups } from './cgroup.js';
export type { DoctorCheck, DoctorOptions } from './doctor.js';
export { diagnose, formatDoctor } from './doctor.js';
export type { Limits } from './limits.js';
export { DEFAULT_LIMITS, parseLimits, parseMemory };

export interface CapsidSpec {
  name: string;
  bundlePath: string;
  /** Bound read-write at the same path, so the cell binds its socket (and hot-swap generation sockets) there. */
  socketDir: string;
  /** The cell's whole environment: nothing of the parent's leaks in. */
  env: Record<string, string>;
  args?: string[];
  limits?: Partial<Limits>;
  /** Default false: the cell gets its own empty network namespace (loopback only). */
  network?: boolean;
  /** false = `--no-sandbox` development mode: a raw process (cgroup limits still applied when available). */
  sandbox: boolean;
  stdout: 'pipe' | number;
  stderr: 'pipe' | number;
  /** Extra host paths bound read-only at the same path. */
  readOnlyPaths?: string[];
  /** The bubblewrap binary; default CELL_BWRAP, else `bwrap` on PATH. */
  bwrap?: string;
  /** Refuse (E_CGROUP_UNAVAILABLE) instead of running without limits; default: the value of `sandbox`. */
  requireCgroup?: boolean;
}

export interface Encapsulated {
  child: ChildProcess;
  sandbox: 'bwrap' | 'none';
  /** The cell's cgroup directory (the memory controller's under v1), null when running without one. */
  cgroup: string | null;
  limits: Limits;
  /** True when the cgroup recorded an OOM kill. */
  oomKilled(): boolean;
  /** Current memory usage from the cgroup, null without one. */
  memoryBytes(): number | null;
  /** Kills what is left in the cgroup (and the child) and removes the cgroup. Idempotent. */
  dispose(): Promise<void>;
}

export const SANDBOX_FIX =
  'install bubblewrap (`apt-get install bubblewrap`, which `node scripts/setup.mjs` does), or run with --no-sandbox for development';

/** Looks `cmd` up on PATH (or the given search path); undefined when absent or not executable. */
export function which(cmd: string, searchPath = process.env.PATH ?? ''): string | undefined {
  if (cmd.includes('/')) return isExecutable(cmd) ? cmd : undefined;
  for (const dir of searchPath.split(delimiter)) {
    if (dir === '') continue;
    const p = join(dir, cmd);
    if (isExecutable(p)) return p;
  }
  return undefined;
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The bubblewrap binary to use, or a reason why there is none. */
export function findBwrap(explicit?: string, searchPath?: string): { path: string } | { reason: string } {
  const wanted = explicit ?? process.env.CELL_BWRAP;
  if (wanted !== undefined) {
    return which(wanted, searchPath) !== undefined
      ? { path: resolve(wanted) }
      : { reason: `bubblewrap not found at ${wanted}` };
  }
  const found = which('bwrap', searchPath);
  return found !== undefined ? { path: found } : { reason: 'bubblewrap (bwrap) is not on PATH' };
}

const probed = new Map<string, string | null>();

/**
 * Runs bubblewrap once with the namespaces a cell gets: a missing user-namespace or mount
 * permission shows here instead of as a cell that dies at start. null = works.
 */
export function probeBwrap(bwrap: string): string | null {
  const known = probed.get(bwrap);
  if (known !== undefined) return known;
  const r = spawnSync(
    bwrap,
    [
      '--unshare-all',
      '--die-with-parent',
      '--new-session',
      '--cap-drop',
      'ALL',
      ...systemBinds().flatMap(bindArgs('--ro-bind')),
      '--proc',
      '/proc',
      '--dev',
      '/dev',
      '--',
      process.execPath,
      '-e',
      '',
    ],
    { encoding: 'utf8', timeout: 15_000, env: {} },
  );
  const reason =
    r.status === 0
      ? null
      : `${bwrap} cannot create a sandbox: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}`;
  probed.set(bwrap, reason);
  return reason;
}

type Bind = [source: string, dest: string];
const bindArgs = (flag: string) => (b: Bind) => [flag, b[0], b[1]];

let systemBindCache: Bind[] | undefined;

/**
 * What Node.js needs to run: its binary, the shared libraries it links (from ldd) and the loader
 * cache. When ldd is unavailable (or the binary is static), /usr, /lib and /lib64 are bound
 * read-only instead (docs/SANDBOX.md).
 */
export function systemBinds(extraObjects: string[] = []): Bind[] {
  if (systemBindCache === undefined) systemBindCache = librariesOf(process.execPath);
  const binds = new Map<string, string>();
  for (const [s, d] of systemBindCache) binds.set(d, s);
  for (const o of extraObjects) for (const [s, d] of librariesOf(o)) binds.set(d, s);
  return [...binds].map(([d, s]) => [s, d]);
}

function librariesOf(object: string): Bind[] {
  const binds: Bind[] = [];
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return undefined;
    }
  };
  if (object === process.execPath) {
    const r = real(object);
    if (r) binds.push([r, object]);
  }
  const r = spawnSync('ldd', [object], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) {
    if (object !== process.execPath) return binds;
    return [...binds, ...['/usr', '/lib', '/lib64', '/bin'].filter((p) => existsSync(p)).map((p): Bind => [p, p])];
  }
  for (const line of r.stdout.split('\n')) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    const lib = m?.[1];
    if (lib === undefined) continue;
    const target = real(lib);
    if (target) binds.push([target, lib]);
  }
  if (existsSync('/etc/ld.so.cache')) binds.push(['/etc/ld.so.cache', '/etc/ld.so.cache']);
  return binds;
}

/**
 * Joins the cgroup before anything of the cell runs: /bin/sh writes its own pid into every
 * controller's cgroup.procs, then execs bubblewrap (or node). Everything after the exec, bwrap's
 * namespace init and the cell, inherits the cgroup; no window where user code runs unlimited.
 */
const JOIN_CGROUP_THEN_EXEC =
  'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"';
/** The shell exports PWD of its own accord; a raw cell gets only the environment it was given. */
const JOIN_CGROUP_THEN_EXEC_CLEAN = `unset PWD; ${JOIN_CGROUP_THEN_EXEC}`;

export function sandboxArgs(spec: CapsidSpec, env: Record<string, string>, readOnly: string[]): string[] {
  const name = spec.name;
  const args = ['--unshare-all'];
  if (spec.network === true) args.push('--share-net');
  args.push('--die-with-parent', '--new-session', '--cap-drop', 'ALL', '--hostname', `cell-${name}`);
  args.push(...systemBinds(readOnly.filter((p) => p.endsWith('.node'))).flatMap(bindArgs('--ro-bind')));
  if (spec.network === true) {
    for (const f of ['/etc/resolv.conf', '/etc/hosts', '/etc/nsswitch.conf', '/etc/ssl']) {
      if (existsSync(f)) args.push('--ro-bind', f, f);
    }
  }
  args.push('--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp');
  args.push('--ro-bind', spec.bundlePath, spec.bundlePath);
  for (const p of readOnly) args.push('--ro-bind', p, p);
  args.push('--bind', spec.socketDir, spec.socketDir);
  // The root bwrap builds is a tmpfs the cell could write (mount points such as /usr, /etc); only
  // /tmp and the socket dir, separate mounts, stay writable.
  args.push('--remount-ro', '/');
  args.push('--chdir', '/tmp', '--clearenv');
  for (const [k, v] of Object.entries(env)) args.push('--setenv', k, v);
  return args;
}

/**
 * Starts a cell: its cgroup first (limits written), then the process inside it, sandboxed with
 * bubblewrap unless `sandbox` is false. Refuses with E_SANDBOX_UNAVAILABLE / E_CGROUP_UNAVAILABLE
 * (naming the fix) rather than run a cell with less isolation than was asked for.
 */
export async function encapsulate(spec: CapsidSpec): Promise<Encapsulated> {
  const name = validateCellName(spec.name);
  const limits = resolveLimits(spec.limits);
  if (!existsSync(spec.bundlePath)) {
    throw new CellError('E_SPAWN_FAILED', `bundle ${spec.bundlePath} does not exist.`, {
      cell: name,
      fix: 'synthesize the DNA first (the Ribosome writes the bundle).',
    });
  }

  let bwrap: string | undefined;
  if (spec.sandbox) {
    const found = findBwrap(spec.bwrap);
    if ('reason' in found) {
      throw new CellError('E_SANDBOX_UNAVAILABLE', `cannot be sandboxed: ${found.reason}.`, {
        cell: name,
        fix: SANDBOX_FIX,
      });
    }
    const broken = probeBwrap(found.path);
    if (broken !== null) {
      throw new CellError('E_SANDBOX_UNAVAILABLE', `cannot be sandboxed: ${broken}.`, {
        cell: name,
        fix: 'enable user namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces), or run with --no-sandbox for development',
      });
    }
    bwrap = found.path;
  }

  let cgroup: CellCgroup | undefined;
  const detected = detectCgroups();
  let cgroupProblem: string | undefined = detected.reason;
  if (detected.layout !== undefined) {
    try {
      cgroup = CellCgroup.create(detected.layout, name, limits);
    } catch (err) {
      cgroupProblem = `cannot create its cgroup: ${(err as Error).message}`;
    }
  }
  if (cgroup === undefined && (spec.requireCgroup ?? spec.sandbox)) {
    throw new CellError('E_CGROUP_UNAVAILABLE', `cannot apply its resource limits: ${cgroupProblem}.`, {
      cell: name,
      fix: 'run the Root as root or with a delegated cgroup (systemd-run --user --scope -p Delegate=yes), or run with --no-sandbox for development',
    });
  }

  const env: Record<string, string> = { HOME: '/tmp', ...spec.env };
  const readOnly = [...(spec.readOnlyPaths ?? [])];
  // The shm addon cannot be bundled: the cell loads it from the path CELL_NATIVE_ADDON names.
  const addon = env.CELL_NATIVE_ADDON ?? nativeAddonPath();
  if (addon !== undefined && existsSync(addon)) {
    env.CELL_NATIVE_ADDON = addon;
    if (!readOnly.includes(addon)) readOnly.push(addon);
  }
  mkdirSync(spec.socketDir, { recursive: true, mode: 0o700 });

  const cell = [process.execPath, spec.bundlePath, ...(spec.args ?? [])];
  const command = bwrap !== undefined ? [bwrap, ...sandboxArgs(spec, env, readOnly), '--', ...cell] : cell;
  const procs = cgroup?.procsFiles() ?? [];
  let child: ChildProcess;
  try {
    child = spawn(
      '/bin/sh',
      [
        '-c',
        'PWD' in env ? JOIN_CGROUP_THEN_EXEC : JOIN_CGROUP_THEN_EXEC_CLEAN,
        `capsid-${name}`,
        String(procs.length),
        ...procs,
        ...command,
      ],
      {
        env,
        stdio: ['ignore', spec.stdout, spec.stderr],
      },
    );
  } catch (err) {
    await cgroup?.destroy().catch(() => {});
    throw new CellError('E_SPAWN_FAILED', `cannot start: ${(err as Error).message}.`, { cell: name, cause: err });
  }

  let disposed: Promise<void> | undefined;
  return {
    child,
    sandbox: bwrap !== undefined ? 'bwrap' : 'none',
    cgroup: cgroup?.path ?? null,
    limits,
    oomKilled: () => cgroup?.oomKilled() ?? false,
    memoryBytes: () => cgroup?.memoryBytes() ?? null,
    dispose() {
      disposed ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          const reaped = new Promise<void>((resolve) => {
            child.once('exit', () => resolve());
            setTimeout(resolve, 5000).unref();
          });
          try {
            child.kill('SIGKILL');
          } catch {}
          // Until Node reaps it, the killed child is a zombie that still answers kill(pid, 0).
          await reaped;
        }
        await cgroup?.destroy();
      })();
      return disposed;
    },
  };
}
