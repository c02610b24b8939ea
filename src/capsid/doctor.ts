import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadNative } from '../shm/native.js';
import { findBwrap, probeBwrap, probeDisableUserns, probeSeccomp } from './bwrap.js';
import { detectCgroups } from './cgroup.js';
import { deniedSyscalls, seccompArch } from './seccomp.js';

/** One line of `cell doctor`: what was found and what its absence turns off. */
export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** What does not work while this check fails. */
  disables: string;
}

export interface DoctorOptions {
  /** The bubblewrap binary to check (default CELL_BWRAP, else bwrap on PATH). */
  bwrap?: string;
  /** Search path used to find tools (default process.env.PATH). */
  searchPath?: string;
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function checkBwrap(opts: DoctorOptions): DoctorCheck[] {
  const disables = 'sandboxed cells (only --no-sandbox runs)';
  const found = findBwrap(opts.bwrap, opts.searchPath);
  if ('reason' in found) {
    return [
      {
        name: 'bubblewrap',
        ok: false,
        detail: `${found.reason}; install it with \`apt-get install bubblewrap\``,
        disables,
      },
      { name: 'sandbox runnable', ok: false, detail: 'no bubblewrap to run', disables },
      ...hardeningUnchecked('no bubblewrap to run'),
    ];
  }
  const v = spawnSync(found.path, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  const version = v.status === 0 ? v.stdout.trim() : undefined;
  if (version === undefined) {
    return [
      {
        name: 'bubblewrap',
        ok: false,
        detail: `${found.path} --version failed: ${(v.stderr || v.error?.message || '').trim()}`,
        disables,
      },
      { name: 'sandbox runnable', ok: false, detail: 'bubblewrap does not run', disables },
      ...hardeningUnchecked('bubblewrap does not run'),
    ];
  }
  const broken = probeBwrap(found.path);
  return [
    { name: 'bubblewrap', ok: true, detail: `${version} at ${found.path}`, disables },
    {
      name: 'sandbox runnable',
      ok: broken === null,
      detail: broken ?? 'bwrap --unshare-all runs node (user, pid, net, ipc, uts, mount namespaces)',
      disables,
    },
    ...(broken === null
      ? [checkNestedUserns(found.path, version), checkSeccomp(found.path)]
      : hardeningUnchecked('the sandbox does not run (above)')),
  ];
}

const NESTED_USERNS = 'nested user namespaces';
const NESTED_USERNS_DISABLES =
  'blocking user namespaces inside cells (a cell can create its own and reach kernel code otherwise kept for root)';
const SECCOMP = 'seccomp';
const SECCOMP_DISABLES =
  'the syscall filter in cells (mount, ptrace, bpf, io_uring, keyctl… reach the kernel, held back only by namespaces and dropped capabilities)';

function hardeningUnchecked(why: string): DoctorCheck[] {
  return [
    { name: NESTED_USERNS, ok: false, detail: why, disables: NESTED_USERNS_DISABLES },
    { name: SECCOMP, ok: false, detail: why, disables: SECCOMP_DISABLES },
  ];
}

/** `bwrap --disable-userns`: bubblewrap ≥ 0.8 and a kernel where a user namespace can lower its own limit. */
function checkNestedUserns(bwrap: string, version: string): DoctorCheck {
  const broken = probeDisableUserns(bwrap);
  if (broken === null) {
    return {
      name: NESTED_USERNS,
      ok: true,
      detail: 'disabled in cells (bwrap --disable-userns)',
      disables: NESTED_USERNS_DISABLES,
    };
  }
  const detail = /unknown option/i.test(broken)
    ? `${version} has no --disable-userns; upgrade bubblewrap to 0.8 or later (Debian 12 and Ubuntu 23.04 ship it)`
    : `${broken}; --disable-userns needs a bubblewrap that is not setuid and a kernel (4.9 or later) that lets a user namespace lower user.max_user_namespaces`;
  return { name: NESTED_USERNS, ok: false, detail, disables: NESTED_USERNS_DISABLES };
}

/** The cell's seccomp filter (seccompFilter) loaded by `bwrap --seccomp` under Node. */
function checkSeccomp(bwrap: string): DoctorCheck {
  const arch = seccompArch();
  const denied = deniedSyscalls();
  if (arch === undefined || denied === undefined) {
    return {
      name: SECCOMP,
      ok: false,
      detail: `no seccomp filter for ${process.arch} (x86_64 and aarch64 only)`,
      disables: SECCOMP_DISABLES,
    };
  }
  const broken = probeSeccomp(bwrap);
  if (broken !== null) {
    return {
      name: SECCOMP,
      ok: false,
      detail: `${broken}; the kernel needs seccomp filtering (CONFIG_SECCOMP_FILTER)`,
      disables: SECCOMP_DISABLES,
    };
  }
  const always = denied.filter((s) => s.when === undefined).length;
  const byArgument = denied.filter((s) => s.when !== undefined).map((s) => s.name);
  return {
    name: SECCOMP,
    ok: true,
    detail: `${always} syscalls denied (${arch}); ${byArgument.join(', ')} by argument`,
    disables: SECCOMP_DISABLES,
  };
}

function checkUserNamespaces(): DoctorCheck {
  const max = Number.parseInt(read('/proc/sys/user/max_user_namespaces') ?? '-1', 10);
  const clone = read('/proc/sys/kernel/unprivileged_userns_clone')?.trim();
  const root = process.getuid?.() === 0;
  const ok = max !== 0 && (clone !== '0' || root);
  const detail =
    max === 0
      ? 'user.max_user_namespaces is 0'
      : clone === '0' && !root
        ? 'kernel.unprivileged_userns_clone is 0 and this user is not root'
        : `available (max_user_namespaces=${max < 0 ? 'unknown' : max}${root ? ', running as root' : ''})`;
  return { name: 'user namespaces', ok, detail, disables: 'sandboxed cells for non-root users' };
}

function checkCgroups(): DoctorCheck {
  const disables = 'memory/cpu/pids limits and OOM reports (sandboxed spawns refuse)';
  const d = detectCgroups();
  if (d.layout === undefined) return { name: 'cgroups', ok: false, detail: d.reason, disables };
  const parents =
    d.layout.version === 2
      ? [d.layout.parent]
      : [d.layout.parents.memory, d.layout.parents.cpu, d.layout.parents.pids].filter(
          (p): p is string => p !== undefined,
        );
  const missing =
    d.layout.version === 1
      ? (['cpu', 'pids'] as const).filter((c) => d.layout.version === 1 && d.layout.parents[c] === undefined)
      : [];
  for (const parent of parents) {
    const probe = join(parent, `doctor-${randomBytes(4).toString('hex')}`);
    try {
      mkdirSync(probe, { recursive: true });
      rmdirSync(probe);
    } catch (err) {
      return {
        name: 'cgroups',
        ok: false,
        detail: `cgroup v${d.layout.version}: ${parent} is not writable (${(err as Error).message})`,
        disables,
      };
    }
  }
  const controllers =
    d.layout.version === 2
      ? 'memory, cpu, pids'
      : `memory${missing.length ? ` (missing: ${missing.join(', ')})` : ', cpu, pids'}`;
  return {
    name: 'cgroups',
    ok: missing.length === 0,
    detail: `cgroup v${d.layout.version} (${controllers}) writable under ${parents.join(', ')}`,
    disables,
  };
}

function checkShm(): DoctorCheck {
  const r = loadNative();
  return {
    name: 'shm addon',
    ok: r.addon !== undefined,
    detail: r.addon !== undefined ? 'native shared-memory addon loads' : r.reason,
    disables: 'the shared-memory transport (cells stay on Unix sockets)',
  };
}

async function checkEsbuild(): Promise<DoctorCheck> {
  const disables = 'compiling DNA (cells cannot be spawned from source)';
  try {
    const esbuild = await import('esbuild');
    return { name: 'esbuild', ok: true, detail: `esbuild ${esbuild.version}`, disables };
  } catch (err) {
    return {
      name: 'esbuild',
      ok: false,
      detail: `cannot load esbuild: ${(err as Error).message}; run \`npm ci\``,
      disables,
    };
  }
}

/** A default route or a 224.0.0.0/4 route in /proc/net/route lets pheromone multicast leave the host. */
function checkMulticast(): DoctorCheck {
  const routes = (read('/proc/net/route') ?? '')
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/));
  const multicast = routes.find((r) => r[1] === '000000E0' && r[7] === '000000F0');
  const fallback = routes.find((r) => r[1] === '00000000' && r[7] === '00000000');
  const ok = multicast !== undefined || fallback !== undefined;
  return {
    name: 'multicast route',
    ok,
    detail: multicast
      ? `224.0.0.0/4 via ${multicast[0]}`
      : fallback
        ? `default route via ${fallback[0]}`
        : 'no multicast or default route',
    disables:
      'pheromone discovery of cells on other hosts (`ip route add 224.0.0.0/4 dev <iface>` or CELL_LAN_INTERFACE)',
  };
}

/** What this host can do for Cell, each check with what its failure disables. */
export async function diagnose(opts: DoctorOptions = {}): Promise<DoctorCheck[]> {
  return [
    ...checkBwrap(opts),
    checkUserNamespaces(),
    checkCgroups(),
    checkShm(),
    await checkEsbuild(),
    checkMulticast(),
  ];
}

/** The table `cell doctor` prints. */
export function formatDoctor(checks: DoctorCheck[]): string {
  const width = Math.max(...checks.map((c) => c.name.length));
  return checks
    .map(
      (c) =>
        `${c.ok ? 'ok  ' : 'FAIL'}  ${c.name.padEnd(width)}  ${c.detail}${c.ok ? '' : `\n      ${' '.repeat(width)}  disables: ${c.disables}`}`,
    )
    .join('\n');
}
