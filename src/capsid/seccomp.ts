import { mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The syscall filter a sandboxed cell runs under: a classic-BPF seccomp program, in the form
 * `bwrap --seccomp FD` reads (an array of `struct sock_filter`, host byte order). bubblewrap loads it
 * last, right before it execs Node, so its own namespace set-up is not filtered. Everything not
 * listed in DENIED_SYSCALLS is allowed. docs/SANDBOX.md § Syscall filter.
 */

/** The kernel's names for the architectures a filter exists for. */
export type SeccompArch = 'x86_64' | 'aarch64';

/** Why a call is denied: the groups of docs/SANDBOX.md § Syscall filter. */
export type DenialGroup =
  | 'namespaces' // mounts and namespaces: bubblewrap built the cell's view before the filter loaded
  | 'file handles' // opening files by handle, around the mount namespace
  | 'other processes' // reading or writing another process's memory or descriptors
  | 'keyring' // the kernel keyring is not namespaced
  | 'kernel surface' // large, privilege-escalation-prone kernel interfaces
  | 'execution domain' // personas that weaken memory protections
  | 'host administration' // the clock, modules, swap, reboot, the kernel log, raw I/O ports
  | 'terminal'; // injecting input into a terminal

export interface DeniedSyscall {
  readonly name: string;
  /** Syscall number per architecture (asm/unistd_64.h, asm-generic/unistd.h); absent: no such call there. */
  readonly nr: Readonly<Partial<Record<SeccompArch, number>>>;
  /** The errno the call fails with. */
  readonly errno: 'EPERM' | 'ENOSYS';
  /** Only when the arguments match this (absent: always). */
  readonly when?: string;
  readonly group: DenialGroup;
}

type Row = [name: string, x86_64: number | undefined, aarch64: number | undefined, group: DenialGroup];

// Numbers checked against /usr/include/x86_64-linux-gnu/asm/unistd_64.h and asm-generic/unistd.h
// (test/capsid/seccomp.test.ts re-checks them whenever the headers are installed).
const ALWAYS_EPERM: Row[] = [
  ['mount', 165, 40, 'namespaces'],
  ['umount2', 166, 39, 'namespaces'],
  ['pivot_root', 155, 41, 'namespaces'],
  ['chroot', 161, 51, 'namespaces'],
  ['unshare', 272, 97, 'namespaces'],
  ['setns', 308, 268, 'namespaces'],
  ['fsopen', 430, 430, 'namespaces'],
  ['fsconfig', 431, 431, 'namespaces'],
  ['fsmount', 432, 432, 'namespaces'],
  ['fspick', 433, 433, 'namespaces'],
  ['move_mount', 429, 429, 'namespaces'],
  ['open_tree', 428, 428, 'namespaces'],
  ['mount_setattr', 442, 442, 'namespaces'],
  ['open_by_handle_at', 304, 265, 'file handles'],
  ['name_to_handle_at', 303, 264, 'file handles'],
  ['ptrace', 101, 117, 'other processes'],
  ['process_vm_readv', 310, 270, 'other processes'],
  ['process_vm_writev', 311, 271, 'other processes'],
  ['kcmp', 312, 272, 'other processes'],
  ['pidfd_getfd', 438, 438, 'other processes'],
  ['keyctl', 250, 219, 'keyring'],
  ['add_key', 248, 217, 'keyring'],
  ['request_key', 249, 218, 'keyring'],
  ['bpf', 321, 280, 'kernel surface'],
  ['perf_event_open', 298, 241, 'kernel surface'],
  ['userfaultfd', 323, 282, 'kernel surface'],
  ['io_uring_setup', 425, 425, 'kernel surface'],
  ['io_uring_enter', 426, 426, 'kernel surface'],
  ['io_uring_register', 427, 427, 'kernel surface'],
  ['kexec_load', 246, 104, 'host administration'],
  ['kexec_file_load', 320, 294, 'host administration'],
  ['init_module', 175, 105, 'host administration'],
  ['finit_module', 313, 273, 'host administration'],
  ['delete_module', 176, 106, 'host administration'],
  ['swapon', 167, 224, 'host administration'],
  ['swapoff', 168, 225, 'host administration'],
  ['reboot', 169, 142, 'host administration'],
  ['acct', 163, 89, 'host administration'],
  ['quotactl', 179, 60, 'host administration'],
  ['quotactl_fd', 443, 443, 'host administration'],
  ['syslog', 103, 116, 'host administration'],
  ['lookup_dcookie', 212, 18, 'host administration'],
  ['iopl', 172, undefined, 'host administration'],
  ['ioperm', 173, undefined, 'host administration'],
  ['settimeofday', 164, 170, 'host administration'],
  ['clock_settime', 227, 112, 'host administration'],
  ['adjtimex', 159, 171, 'host administration'],
  ['clock_adjtime', 305, 266, 'host administration'],
  ['vhangup', 153, 58, 'host administration'],
];

/** Calls whose arguments decide; each has its own branch in the program. */
const CLONE: Row = ['clone', 56, 220, 'namespaces'];
const CLONE3: Row = ['clone3', 435, 435, 'namespaces'];
const PERSONALITY: Row = ['personality', 135, 92, 'execution domain'];
const IOCTL: Row = ['ioctl', 16, 29, 'terminal'];

const CLONE_NEWNS = 0x00020000;
const CLONE_NEWCGROUP = 0x02000000;
const CLONE_NEWUTS = 0x04000000;
const CLONE_NEWIPC = 0x08000000;
const CLONE_NEWUSER = 0x10000000;
const CLONE_NEWPID = 0x20000000;
const CLONE_NEWNET = 0x40000000;
const CLONE_NAMESPACES =
  CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP;
/** personality(0xffffffff) only reads the current persona; PER_LINUX (0) is the default one. */
const PERSONALITY_QUERY = 0xffffffff;
const PER_LINUX = 0;
const TIOCSTI = 0x5412; // asm-generic/ioctls.h, shared by x86_64 and aarch64

const entry = (r: Row, errno: DeniedSyscall['errno'], when?: string): DeniedSyscall => {
  const nr: Partial<Record<SeccompArch, number>> = {};
  if (r[1] !== undefined) nr.x86_64 = r[1];
  if (r[2] !== undefined) nr.aarch64 = r[2];
  Object.freeze(nr);
  return Object.freeze(
    when === undefined ? { name: r[0], nr, errno, group: r[3] } : { name: r[0], nr, errno, when, group: r[3] },
  );
};

/** Every call the filter refuses, and when (for docs/SANDBOX.md and `cell doctor`). */
export const DENIED_SYSCALLS: readonly DeniedSyscall[] = Object.freeze([
  ...ALWAYS_EPERM.map((r) => entry(r, 'EPERM')),
  entry(CLONE, 'EPERM', 'flags create a namespace (CLONE_NEWNS/USER/PID/NET/UTS/IPC/CGROUP)'),
  // Always: its flags are in memory a filter cannot read. ENOSYS, so glibc falls back to clone.
  entry(CLONE3, 'ENOSYS'),
  entry(PERSONALITY, 'EPERM', 'anything but the query (0xffffffff) and PER_LINUX'),
  entry(IOCTL, 'EPERM', 'TIOCSTI (push input into a terminal)'),
]);

// --- the program -----------------------------------------------------------------------------

const BPF_LD_W_ABS = 0x20;
const BPF_JEQ_K = 0x15;
const BPF_JGE_K = 0x35;
const BPF_JSET_K = 0x45;
const BPF_RET_K = 0x06;

const RET_KILL_PROCESS = 0x80000000;
const RET_ERRNO = 0x00050000;
const RET_ALLOW = 0x7fff0000;
const EPERM = 1;
const ENOSYS = 38;

// struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
const OFF_NR = 0;
const OFF_ARCH = 4;
/** Low 32 bits of args[i] on a little-endian machine (both supported arches are). */
const offArgLow = (i: number) => 16 + 8 * i;

const ARCHES: Record<SeccompArch, { audit: number; x32Bit?: number }> = {
  // AUDIT_ARCH_X86_64 = EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE; x32 calls set __X32_SYSCALL_BIT
  x86_64: { audit: 0xc000003e, x32Bit: 0x40000000 },
  // AUDIT_ARCH_AARCH64 = EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
  aarch64: { audit: 0xc00000b7 },
};

/** Node's `process.arch` to the kernel's name. */
const NODE_ARCH = new Map<string, SeccompArch>([
  ['x64', 'x86_64'],
  ['arm64', 'aarch64'],
]);

type Target = string;
interface Insn {
  code: number;
  jt: Target | null;
  jf: Target | null;
  k: number;
}

/** A tiny assembler: instructions whose jumps name labels, resolved to forward offsets at the end. */
class Program {
  private readonly insns: Insn[] = [];
  private readonly labels = new Map<string, number>();

  label(name: string): void {
    this.labels.set(name, this.insns.length);
  }
  load(offset: number): void {
    this.insns.push({ code: BPF_LD_W_ABS, jt: null, jf: null, k: offset });
  }
  /** jt/jf: a label, or null for the next instruction. */
  jump(code: number, k: number, jt: Target | null, jf: Target | null): void {
    this.insns.push({ code, jt, jf, k });
  }
  ret(k: number): void {
    this.insns.push({ code: BPF_RET_K, jt: null, jf: null, k });
  }

  assemble(): Buffer {
    const out = Buffer.alloc(this.insns.length * 8);
    this.insns.forEach((insn, i) => {
      out.writeUInt16LE(insn.code, i * 8);
      out.writeUInt8(this.offset(insn.jt, i), i * 8 + 2);
      out.writeUInt8(this.offset(insn.jf, i), i * 8 + 3);
      out.writeUInt32LE(insn.k >>> 0, i * 8 + 4);
    });
    return out;
  }

  private offset(target: Target | null, from: number): number {
    if (target === null) return 0;
    const at = this.labels.get(target);
    if (at === undefined) throw new Error(`seccomp: undefined label ${target}`);
    const off = at - from - 1;
    if (off < 0 || off > 255) throw new Error(`seccomp: jump to ${target} out of range (${off})`);
    return off;
  }
}

/**
 * The cell's seccomp program for `arch` (Node's `process.arch` names), or why there is none. A
 * process of another ABI (i386 through int 0x80, arm32 compat) is killed at its first syscall.
 */
export function seccompFilter(arch: string = process.arch): { program: Buffer } | { reason: string } {
  const kernelArch = NODE_ARCH.get(arch);
  if (kernelArch === undefined) {
    return { reason: `no seccomp filter for ${arch} (x86_64 and aarch64 only)` };
  }
  const { audit, x32Bit } = ARCHES[kernelArch];
  const nrOf = (r: Row) => (kernelArch === 'x86_64' ? r[1] : r[2]);
  const p = new Program();

  p.load(OFF_ARCH);
  p.jump(BPF_JEQ_K, audit, null, 'kill');
  p.load(OFF_NR);
  if (x32Bit !== undefined) p.jump(BPF_JSET_K, x32Bit, 'enosys', null);

  // Sorted (nr → where to go), searched as a binary tree: a few comparisons per syscall, not one per row.
  const targets: [number, Target][] = [];
  for (const r of ALWAYS_EPERM) {
    const nr = nrOf(r);
    if (nr !== undefined) targets.push([nr, 'eperm']);
  }
  const special: [Row, Target][] = [
    [CLONE, 'clone'],
    [CLONE3, 'enosys'],
    [PERSONALITY, 'personality'],
    [IOCTL, 'ioctl'],
  ];
  for (const [r, target] of special) {
    const nr = nrOf(r);
    if (nr !== undefined) targets.push([nr, target]);
  }
  targets.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < targets.length; i++) {
    if (targets[i][0] === targets[i - 1][0]) throw new Error(`seccomp: syscall ${targets[i][0]} listed twice`);
  }
  let node = 0;
  const search = (lo: number, hi: number): void => {
    if (hi - lo <= 4) {
      for (let i = lo; i < hi; i++) p.jump(BPF_JEQ_K, targets[i][0], targets[i][1], i === hi - 1 ? 'allow' : null);
      return;
    }
    const mid = (lo + hi) >>> 1;
    const upper = `upper${node++}`;
    p.jump(BPF_JGE_K, targets[mid][0], upper, null);
    search(lo, mid);
    p.label(upper);
    search(mid, hi);
  };
  search(0, targets.length);

  p.label('clone');
  p.load(offArgLow(0)); // the kernel reads only the low 32 bits of clone's flags
  p.jump(BPF_JSET_K, CLONE_NAMESPACES, 'eperm', 'allow');
  p.label('personality');
  p.load(offArgLow(0)); // unsigned int persona
  p.jump(BPF_JEQ_K, PERSONALITY_QUERY, 'allow', null);
  p.jump(BPF_JEQ_K, PER_LINUX, 'allow', 'eperm');
  p.label('ioctl');
  p.load(offArgLow(1)); // unsigned int cmd: high bits set do not make another command
  p.jump(BPF_JEQ_K, TIOCSTI, 'eperm', 'allow');

  p.label('allow');
  p.ret(RET_ALLOW);
  p.label('eperm');
  p.ret(RET_ERRNO | EPERM);
  p.label('enosys');
  p.ret(RET_ERRNO | ENOSYS);
  p.label('kill');
  p.ret(RET_KILL_PROCESS);
  return { program: p.assemble() };
}

/** The calls the filter denies on `arch` (Node's names), or undefined when there is no filter for it. */
export function deniedSyscalls(arch: string = process.arch): DeniedSyscall[] | undefined {
  const kernelArch = NODE_ARCH.get(arch);
  if (kernelArch === undefined) return undefined;
  return DENIED_SYSCALLS.filter((s) => s.nr[kernelArch] !== undefined);
}

/** The kernel's name for Node's `arch` when a filter exists for it. */
export function seccompArch(arch: string = process.arch): SeccompArch | undefined {
  return NODE_ARCH.get(arch);
}

/**
 * A read-only descriptor holding `program`, for `bwrap --seccomp <fd>` (pass it in the spawn's
 * stdio array; bubblewrap reads it to the end). The file behind it is already unlinked; close the
 * descriptor once the child is spawned.
 */
export function openSeccompFd(program: Buffer): number {
  const dir = mkdtempSync(join(tmpdir(), 'cell-seccomp-'));
  try {
    const file = join(dir, 'filter.bpf');
    writeFileSync(file, program, { mode: 0o400 });
    return openSync(file, 'r');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
