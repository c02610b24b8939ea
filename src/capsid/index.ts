import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { CellError } from '../errors/index.js';
import { validateCellName } from '../paths/index.js';
import { nativeAddonPath } from '../ribosome/index.js';
import { bindArgs, findBwrap, probeBwrap, systemBinds } from './bwrap.js';
import { CellCgroup, detectCgroups } from './cgroup.js';
import { DEFAULT_LIMITS, type Limits, parseLimits, parseMemory, resolveLimits } from './limits.js';

export type { Bind } from './bwrap.js';
export { findBwrap, probeBwrap, probeDisableUserns, probeSeccomp, systemBinds, which } from './bwrap.js';
export type { CgroupLayout } from './cgroup.js';
export { detectCgroups } from './cgroup.js';
export type { DoctorCheck, DoctorOptions } from './doctor.js';
export { diagnose, formatDoctor } from './doctor.js';
export type { Limits } from './limits.js';
export type { DenialGroup, DeniedSyscall, SeccompArch } from './seccomp.js';
export { DENIED_SYSCALLS, deniedSyscalls, openSeccompFd, seccompArch, seccompFilter } from './seccomp.js';
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
  /**
   * Delivers a signal to the cell itself. bubblewrap does not forward signals (a SIGTERM to it tears
   * the pid namespace down and the cell dies without draining), so a sandboxed cell's processes
   * other than bubblewrap's get it. False when nothing was left to signal.
   */
  signal(signal: NodeJS.Signals): boolean;
  /** Kills what is left in the cgroup (and the child) and removes the cgroup. Idempotent. */
  dispose(): Promise<void>;
}

export const SANDBOX_FIX =
  'install bubblewrap (`apt-get install bubblewrap`, which `node scripts/setup.mjs` does), or run with --no-sandbox for development';

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
  // Its own user namespace, where it is nobody (65534, mapped to the caller's uid outside so the
  // sockets it binds belong to the Root's user), with no capabilities.
  args.push('--unshare-user', '--uid', '65534', '--gid', '65534');
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
  // bwrap --die-with-parent ties a sandboxed cell to us; an unsandboxed one watches our pid instead.
  if (bwrap === undefined) env.CELL_PARENT_PID = String(process.pid);

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
    signal(sig) {
      if (child.exitCode !== null || child.signalCode !== null) return false;
      if (bwrap !== undefined && child.pid !== undefined) {
        const inside = (cgroup?.pids() ?? descendants(child.pid)).filter(
          (p) => p !== child.pid && commOf(p) !== 'bwrap',
        );
        let delivered = false;
        for (const p of inside) {
          try {
            process.kill(p, sig);
            delivered = true;
          } catch {}
        }
        if (delivered) return true;
      }
      return child.kill(sig);
    },
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

function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** Every process below `root` in the process tree (from /proc/<pid>/stat). */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid);
      if (list) list.push(pid);
      else children.set(ppid, [pid]);
    } catch {}
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    for (const c of children.get(stack.pop() as number) ?? []) {
      out.push(c);
      stack.push(c);
    }
  }
  return out;
}
