// The Capsid's core: how one cell process is sandboxed (bubblewrap, seccomp, cgroup) and started.
import { type ChildProcess, spawn } from 'node:child_process';
import { chownSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { CellError } from '../errors/index.js';
import { type CellBoot, validateCellName } from '../paths/index.js';
import { nativeAddonPath } from '../ribosome/index.js';
import { findBwrap, probeBwrap, probeDisableUserns, probeSeccomp, systemBinds, which } from './bwrap.js';
import { CellCgroup, detectCgroups } from './cgroup.js';
import { type Limits, resolveLimits } from './limits.js';
import { seccompFilter } from './seccomp.js';

export interface CapsidSpec {
  name: string;
  bundlePath: string;
  /** The cell environment contract, written to the cell's fd 3 (never argv, never a host-side env). */
  boot: CellBoot;
  /** Host paths the cell may write (its own run dir and private dir), bound read-write at the same path. */
  writable: string[];
  /** Host paths bound read-only at the same path (the rendezvous dir, the Root channel socket). */
  readOnly: string[];
  args?: string[];
  limits?: Partial<Limits>;
  /** Default false: the cell gets its own empty network namespace (loopback only). */
  network?: boolean;
  /** false = `--no-sandbox` development mode: a raw process (cgroup limits still applied when available). */
  sandbox: boolean;
  stdout: 'pipe' | number;
  stderr: 'pipe' | number;
  /** The bubblewrap binary; default CELL_BWRAP, else `bwrap` on PATH. */
  bwrap?: string;
  /** Refuse (E_CGROUP_UNAVAILABLE) instead of running without limits; default: the value of `sandbox`. */
  requireCgroup?: boolean;
  /** The host user a sandboxed cell runs as when the Root runs as root (default: sandboxUser()). */
  user?: SandboxUser;
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

/** The unprivileged host user a sandboxed cell runs as when the Root itself runs as root. */
export interface SandboxUser {
  uid: number;
  gid: number;
}

/**
 * Who sandboxed cells are on the host: when the Root runs as root, CELL_SANDBOX_UID/GID (default
 * 65534, nobody/nogroup) — never uid 0; otherwise undefined: the cell runs in its own user namespace
 * as the Root's (unprivileged) user.
 */
export function sandboxUser(): SandboxUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(process.env.CELL_SANDBOX_UID ?? 65534);
  const gid = Number(process.env.CELL_SANDBOX_GID ?? uid);
  if (
    !Number.isInteger(uid) ||
    uid <= 0 ||
    uid > 0xfffffffe ||
    !Number.isInteger(gid) ||
    gid <= 0 ||
    gid > 0xfffffffe
  ) {
    throw new CellError(
      'E_SANDBOX_UNAVAILABLE',
      `CELL_SANDBOX_UID/GID must name an unprivileged user (got ${uid}:${gid}).`,
      {
        fix: 'unset them (cells then run as 65534) or set a uid and gid above 0.',
      },
    );
  }
  return { uid, gid };
}

/** Where the cell's files appear inside the sandbox. */
export const INSIDE = {
  boot: '/cell/boot.mjs',
  bundle: '/cell/bundle.mjs',
  addon: '/cell/cell_native.node',
  /** A stem cell's read-only slot: the Root links the bundle and the channel socket into it at adoption. */
  dna: '/cell/dna',
} as const;

/** Where the Root looks for setpriv; host-side helpers themselves run with an empty environment. */
const HOST_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

/** Fds the child gets: 0 stdin, 1/2 logs, 3 the boot contract, 4 the seccomp program (sandboxed only). */
const SECCOMP_FD = 4;

/**
 * Joins the cgroup before anything of the cell runs: /bin/sh writes its own pid into every
 * controller's cgroup.procs, then execs bubblewrap (or node). Everything after the exec, bwrap's
 * namespace init and the cell, inherits the cgroup; no window where user code runs unlimited.
 */
const JOIN_CGROUP_THEN_EXEC =
  'unset PWD; n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"';

export interface SandboxPlan {
  bundlePath: string;
  bootEntry: string;
  addon: string | undefined;
  writable: string[];
  readOnly: string[];
  network: boolean;
  /** Set when the Root runs as root: bubblewrap runs privileged and drops to this user with setpriv. */
  user: SandboxUser | undefined;
  setpriv: string | undefined;
  seccomp: boolean;
  /**
   * A stem cell: `bundlePath` is its (still empty) slot directory, bound read-only at INSIDE.dna, and
   * the boot entry waits for its contract (and the bundle it names) before loading anything.
   */
  stem?: boolean;
}

/**
 * bubblewrap's arguments for one cell (none of them secret). Two modes:
 * - the Root is an ordinary user: the cell gets its own user namespace where it is 65534 (mapped to
 *   the Root's uid), with no capabilities and no further user namespaces (--disable-userns);
 * - the Root is root: bubblewrap runs privileged (so it can bind the Root's private files), and
 *   setpriv drops the cell to an unprivileged host uid with an empty capability bounding set before
 *   node starts; the seccomp filter forbids new user namespaces there.
 * Both: every namespace unshared (the network unless asked for), read-only root, nosuid binds, only
 * the cell's own dirs writable, a private /tmp, die with the Root, no controlling terminal.
 */
export function sandboxArgs(name: string, plan: SandboxPlan): { args: string[]; command: string[] } {
  const args: string[] = [];
  if (plan.user === undefined) {
    args.push('--unshare-all', '--unshare-user', '--uid', '65534', '--gid', '65534', '--disable-userns');
    args.push('--cap-drop', 'ALL');
  } else {
    args.push('--unshare-pid', '--unshare-ipc', '--unshare-net', '--unshare-uts', '--unshare-cgroup-try');
  }
  if (plan.network) args.push('--share-net');
  args.push('--die-with-parent', '--new-session', '--hostname', `cell-${name}`);
  const objects = [plan.addon, plan.setpriv].filter((p): p is string => p !== undefined);
  const binds: Array<[flag: string, source: string, dest: string]> = systemBinds(objects).map(([s, d]) => [
    '--ro-bind',
    s,
    d,
  ]);
  if (plan.network) {
    for (const f of ['/etc/resolv.conf', '/etc/hosts', '/etc/nsswitch.conf', '/etc/ssl']) {
      if (existsSync(f)) binds.push(['--ro-bind', f, f]);
    }
  }
  binds.push(['--ro-bind', plan.bootEntry, INSIDE.boot]);
  binds.push(['--ro-bind', plan.bundlePath, plan.stem === true ? INSIDE.dna : INSIDE.bundle]);
  if (plan.addon !== undefined) binds.push(['--ro-bind', plan.addon, INSIDE.addon]);
  if (plan.setpriv !== undefined) binds.push(['--ro-bind', plan.setpriv, plan.setpriv]);
  for (const p of plan.readOnly) binds.push(['--ro-bind', p, p]);
  // After the read-only rendezvous dir, so the cell's own part of it is writable again.
  for (const p of plan.writable) binds.push(['--bind', p, p]);
  // Privileged bubblewrap creates mount points 0700: the dirs leading to them are made 0755 first,
  // so a cell running as another uid can reach what it was given (and nothing more).
  args.push('--proc', '/proc', '--dev', '/dev', '--perms', '1777', '--tmpfs', '/tmp');
  for (const dir of parentDirs(binds.map((b) => b[2]))) {
    if (dir !== '/tmp') args.push('--perms', '0755', '--dir', dir);
  }
  for (const b of binds) args.push(...b);
  // The root bwrap builds is a tmpfs the cell could write (mount points such as /usr, /etc); only
  // /tmp and the cell's own dirs, separate mounts, stay writable.
  args.push('--remount-ro', '/', '--chdir', '/tmp', '--clearenv');
  if (plan.seccomp) args.push('--seccomp', String(SECCOMP_FD));
  const node = [
    process.execPath,
    '--enable-source-maps',
    INSIDE.boot,
    ...(plan.stem === true ? ['--stem'] : [INSIDE.bundle]),
  ];
  const drop =
    plan.user === undefined || plan.setpriv === undefined
      ? []
      : [
          plan.setpriv,
          `--reuid=${plan.user.uid}`,
          `--regid=${plan.user.gid}`,
          '--clear-groups',
          '--inh-caps=-all',
          '--bounding-set=-all',
          '--no-new-privs',
          '--',
        ];
  return { args, command: [...drop, ...node] };
}

/** Every proper ancestor directory of the given paths (not '/'), parents before children. */
function parentDirs(paths: string[]): string[] {
  const dirs = new Set<string>();
  for (const p of paths) {
    for (let d = dirname(p); d !== '/' && d !== '.'; d = dirname(d)) dirs.add(d);
  }
  return [...dirs].sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b));
}

/**
 * The seccomp program every sandboxed cell runs under, after checking that this bubblewrap and kernel
 * apply it (and, in a user namespace, --disable-userns). A sandbox without them is refused, not
 * weakened: without the filter a cell could create namespaces and mount.
 */
function syscallFilterOrThrow(name: string, bwrap: string, user: SandboxUser | undefined): Buffer {
  const filter = seccompFilter();
  const broken =
    'reason' in filter
      ? filter.reason
      : (probeSeccomp(bwrap) ?? (user === undefined ? probeDisableUserns(bwrap) : null));
  if (broken !== null || !('program' in filter)) {
    throw new CellError('E_SANDBOX_UNAVAILABLE', `cannot be sandboxed: ${broken}.`, {
      cell: name,
      fix: 'use bubblewrap ≥ 0.8 on a kernel with CONFIG_SECCOMP_FILTER (`cell doctor` says which is missing), or run with --no-sandbox for development',
    });
  }
  return filter.program;
}

function findBwrapOrThrow(name: string, explicit: string | undefined): string {
  const found = findBwrap(explicit);
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
  return found.path;
}

export function createCgroup(name: string, limits: Limits, required: boolean): CellCgroup | undefined {
  const detected = detectCgroups();
  let problem: string | undefined = detected.reason;
  if (detected.layout !== undefined) {
    try {
      return CellCgroup.create(detected.layout, name, limits);
    } catch (err) {
      problem = `cannot create its cgroup: ${(err as Error).message}`;
    }
  }
  if (required) {
    throw new CellError('E_CGROUP_UNAVAILABLE', `cannot apply its resource limits: ${problem}.`, {
      cell: name,
      fix: 'run the Root as root or with a delegated cgroup (systemd-run --user --scope -p Delegate=yes), or run with --no-sandbox for development',
    });
  }
  return undefined;
}

/** What a sandbox needs from the host, checked before anything starts (E_SANDBOX_UNAVAILABLE otherwise). */
export interface Host {
  bwrap: string | undefined;
  user: SandboxUser | undefined;
  setpriv: string | undefined;
  program: Buffer | undefined;
  addon: string | undefined;
}

/** bubblewrap, the sandbox user, setpriv and the seccomp program for a (sandboxed or raw) start. */
export function hostFor(name: string, sandbox: boolean, explicitBwrap?: string, explicitUser?: SandboxUser): Host {
  const bwrap = sandbox ? findBwrapOrThrow(name, explicitBwrap) : undefined;
  const user = bwrap === undefined ? undefined : (explicitUser ?? sandboxUser());
  const setpriv = user === undefined ? undefined : which('setpriv', HOST_PATH);
  if (user !== undefined && setpriv === undefined) {
    throw new CellError('E_SANDBOX_UNAVAILABLE', 'cannot drop the cell to an unprivileged user: setpriv is missing.', {
      cell: name,
      fix: 'install util-linux (`apt-get install util-linux`), which provides setpriv.',
    });
  }
  const program = bwrap === undefined ? undefined : syscallFilterOrThrow(name, bwrap, user);
  // The shm addon cannot be bundled: the cell loads it from where CELL_NATIVE_ADDON says.
  const hostAddon = nativeAddonPath();
  const addon = hostAddon !== undefined && existsSync(hostAddon) ? hostAddon : undefined;
  return { bwrap, user, setpriv, program, addon };
}

/** The boot contract as the process reads it: the addon's path where it sees it, the Root's pid when raw. */
export function bootFor(host: Host, boot: CellBoot): CellBoot {
  const out: CellBoot = { ...boot, env: { ...boot.env } };
  if (host.addon !== undefined) out.env.CELL_NATIVE_ADDON = host.bwrap === undefined ? host.addon : INSIDE.addon;
  // bwrap --die-with-parent ties a sandboxed cell to us; an unsandboxed one watches our pid instead.
  if (host.bwrap === undefined) out.parentPid = process.pid;
  return out;
}

/** Fds of a started process: 0 stdin, 1/2 logs, 3 the boot contract, 4 the seccomp program, 5 readiness. */
export interface StartPlan {
  name: string;
  host: Host;
  cgroup: CellCgroup | undefined;
  /** The process's argv after the shell's cgroup join (bwrap … node … or node …). */
  command: string[];
  stdout: 'pipe' | number;
  stderr: 'pipe' | number;
  /** Open fd 5 as a pipe the process may report on (a stem cell says it is waiting). */
  readyFd?: boolean;
}

/**
 * Spawns `/bin/sh` that joins the cgroup and execs the command, with an empty environment and the
 * seccomp program on fd 4. The boot contract's pipe (fd 3) is left open for the caller to write.
 */
export async function startIn(plan: StartPlan): Promise<ChildProcess> {
  const procs = plan.cgroup?.procsFiles() ?? [];
  const program = plan.host.program;
  let child: ChildProcess;
  try {
    child = spawn(
      '/bin/sh',
      ['-c', JOIN_CGROUP_THEN_EXEC, `capsid-${plan.name}`, String(procs.length), ...procs, ...plan.command],
      {
        // Nothing of the Root's or the manifest's environment reaches the shell, bwrap or setpriv;
        // the cell's own environment arrives on fd 3.
        env: {},
        cwd: '/',
        stdio: [
          'ignore',
          plan.stdout,
          plan.stderr,
          'pipe',
          program === undefined ? 'ignore' : 'pipe',
          ...(plan.readyFd === true ? (['pipe'] as const) : []),
        ],
      },
    );
  } catch (err) {
    await plan.cgroup?.destroy().catch(() => {});
    throw new CellError('E_SPAWN_FAILED', `cannot start: ${(err as Error).message}.`, { cell: plan.name, cause: err });
  }
  if (program !== undefined) writeFd(child, SECCOMP_FD, program);
  return child;
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
  const bootEntry = bootEntryPath();
  const host = hostFor(name, spec.sandbox, spec.bwrap, spec.user);
  const { bwrap, user } = host;
  // The cell's own dirs belong to the user it runs as (another uid when the Root is root).
  if (user !== undefined) for (const dir of spec.writable) chownSync(dir, user.uid, user.gid);
  const cgroup = createCgroup(name, limits, spec.requireCgroup ?? spec.sandbox);
  const boot = bootFor(host, spec.boot);

  const cell =
    bwrap === undefined
      ? { args: [], command: [process.execPath, '--enable-source-maps', bootEntry, spec.bundlePath] }
      : sandboxArgs(name, {
          bundlePath: spec.bundlePath,
          bootEntry,
          addon: host.addon,
          writable: spec.writable,
          readOnly: spec.readOnly,
          network: spec.network === true,
          user,
          setpriv: host.setpriv,
          seccomp: host.program !== undefined,
        });
  const command = bwrap === undefined ? cell.command : [bwrap, ...cell.args, '--', ...cell.command];
  const child = await startIn({
    name,
    host,
    cgroup,
    command: [...command, ...(spec.args ?? [])],
    stdout: spec.stdout,
    stderr: spec.stderr,
  });
  writeFd(child, 3, Buffer.from(JSON.stringify(boot)));
  return capsuleOf(child, host, cgroup, limits);
}

/** The Encapsulated handle of a started process in its cgroup. */
export function capsuleOf(
  child: ChildProcess,
  host: Host,
  cgroup: CellCgroup | undefined,
  limits: Limits,
): Encapsulated {
  const bwrap = host.bwrap;
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

/** The boot entry (built by scripts/build.mjs from src/capsid/boot.ts), bound into every sandbox. */
export function bootEntryPath(): string {
  const path = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'boot', 'cell-boot.mjs');
  if (!existsSync(path)) {
    throw new CellError('E_SPAWN_FAILED', `the cell boot entry ${path} is missing.`, {
      fix: 'build Cell (`node scripts/build.mjs`, which `npm test` and `npm run demo` run).',
    });
  }
  return path;
}

/** Hands `data` to the child on fd `fd` and closes our end; a child that died first is noticed by 'exit'. */
export function writeFd(child: ChildProcess, fd: number, data: Buffer): void {
  const stream = child.stdio[fd] as Writable | null | undefined;
  if (stream === null || stream === undefined) return;
  stream.on('error', () => {});
  stream.end(data);
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
