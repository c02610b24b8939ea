import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Limits } from './limits.js';

/**
 * Per-cell cgroups. Hosts come in three shapes: pure cgroup v2 (one unified hierarchy at
 * /sys/fs/cgroup), pure v1 (one hierarchy per controller), and hybrids where v1 controllers are
 * mounted at /sys/fs/cgroup/<controller> and the unified hierarchy at /sys/fs/cgroup/unified holds
 * none or only some of them. v2 is used when its unified hierarchy has memory, cpu and pids;
 * otherwise each v1 controller that is mounted and writable is used.
 */
export type CgroupLayout =
  | { version: 2; parent: string }
  | { version: 1; parents: { memory: string; cpu: string | undefined; pids: string | undefined } };

/** Where the cgroup hierarchies are mounted; CELL_CGROUP_ROOT points elsewhere (or at nothing). */
function cgroupRoot(): string {
  return process.env.CELL_CGROUP_ROOT ?? '/sys/fs/cgroup';
}
const V2_NEEDED = ['memory', 'cpu', 'pids'];

/** Still running: neither gone nor a zombie (Z) or dead (X) awaiting its reaper. */
function running(pid: number): boolean {
  const stat = read(`/proc/${pid}/stat`);
  if (stat === undefined) return false;
  const state = stat.charAt(stat.lastIndexOf(')') + 2);
  return state !== 'Z' && state !== 'X';
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** The calling process's own path in a hierarchy (from /proc/self/cgroup), '/' when unknown. */
function ownPath(controller: string | null): string {
  for (const line of (read('/proc/self/cgroup') ?? '').split('\n')) {
    const [, controllers, path] = line.split(':');
    if (path === undefined) continue;
    if (controller === null ? controllers === '' : (controllers ?? '').split(',').includes(controller)) return path;
  }
  return '/';
}

function unifiedMount(): string | undefined {
  const root = cgroupRoot();
  if (existsSync(join(root, 'cgroup.controllers'))) return root;
  if (existsSync(join(root, 'unified', 'cgroup.controllers'))) return join(root, 'unified');
  return undefined;
}

/**
 * The `cell` parent of a v1 controller: nested under this process's own cgroup when that is
 * visible (so a supervisor's own limits still bound its cells), else under the mount's root.
 */
function v1Parent(controller: string): string | undefined {
  const mount = join(cgroupRoot(), controller);
  if (!existsSync(join(mount, 'cgroup.procs'))) return undefined;
  const own = join(mount, ownPath(controller));
  return join(existsSync(join(own, 'cgroup.procs')) ? own : mount, 'cell');
}

/** Why cgroups cannot be used, or the layout that can. Does not create anything. */
export function detectCgroups(): { layout: CgroupLayout; reason?: undefined } | { layout?: undefined; reason: string } {
  const unified = unifiedMount();
  if (unified !== undefined) {
    const available = (read(join(unified, 'cgroup.controllers')) ?? '').trim().split(/\s+/);
    if (V2_NEEDED.every((c) => available.includes(c))) return { layout: { version: 2, parent: join(unified, 'cell') } };
  }
  const memory = v1Parent('memory');
  if (memory !== undefined) {
    return { layout: { version: 1, parents: { memory, cpu: v1Parent('cpu'), pids: v1Parent('pids') } } };
  }
  return {
    reason:
      unified !== undefined
        ? `the unified cgroup hierarchy at ${unified} lacks the memory/cpu/pids controllers and no v1 memory controller is mounted`
        : `no cgroup hierarchy is mounted under ${cgroupRoot()}`,
  };
}

/** One cell's cgroup (one directory per v1 controller, one in v2). */
export class CellCgroup {
  /** The directory a status line shows (the memory controller's). */
  readonly path: string;
  readonly dirs: string[];
  private oomSeen = false;

  private constructor(
    readonly layout: CgroupLayout,
    dirs: string[],
  ) {
    this.dirs = dirs;
    this.path = dirs[0] as string;
  }

  /** Creates `<parent>/<name>-<id>` and writes the limits. Throws (with errno) when not writable. */
  static create(layout: CgroupLayout, name: string, limits: Limits): CellCgroup {
    const leaf = `${name}-${randomBytes(4).toString('hex')}`;
    const created: string[] = [];
    try {
      if (layout.version === 2) {
        const mount = join(layout.parent, '..');
        enableControllers(mount);
        mkdirSync(layout.parent, { recursive: true });
        enableControllers(layout.parent);
        const dir = join(layout.parent, leaf);
        mkdirSync(dir);
        created.push(dir);
        writeFileSync(join(dir, 'memory.max'), String(limits.memoryBytes));
        // No swap: a memory limit that swap can bypass is not a limit.
        if (existsSync(join(dir, 'memory.swap.max'))) writeFileSync(join(dir, 'memory.swap.max'), '0');
        writeFileSync(join(dir, 'cpu.max'), `${cpuQuota(limits.cpu)} ${CPU_PERIOD}`);
        writeFileSync(join(dir, 'pids.max'), String(limits.pids));
      } else {
        const { memory, cpu, pids } = layout.parents;
        const mem = join(memory, leaf);
        mkdirSync(mem, { recursive: true });
        created.push(mem);
        writeFileSync(join(mem, 'memory.limit_in_bytes'), String(limits.memoryBytes));
        // memory+swap ≥ memory is required, so it is written after memory; equal means no swap.
        if (existsSync(join(mem, 'memory.memsw.limit_in_bytes'))) {
          writeFileSync(join(mem, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes));
        }
        if (cpu !== undefined) {
          const dir = join(cpu, leaf);
          mkdirSync(dir, { recursive: true });
          created.push(dir);
          writeFileSync(join(dir, 'cpu.cfs_period_us'), String(CPU_PERIOD));
          writeFileSync(join(dir, 'cpu.cfs_quota_us'), String(cpuQuota(limits.cpu)));
        }
        if (pids !== undefined) {
          const dir = join(pids, leaf);
          mkdirSync(dir, { recursive: true });
          created.push(dir);
          writeFileSync(join(dir, 'pids.max'), String(limits.pids));
        }
      }
    } catch (err) {
      for (const d of created.reverse()) {
        try {
          rmdirSync(d);
        } catch {}
      }
      throw err;
    }
    return new CellCgroup(layout, created);
  }

  /**
   * Replaces the limits (a stem cell taking a cell's identity). Under v1, memory+swap must stay ≥
   * memory at every step, so the order depends on whether the limit grows. Throws when the kernel
   * refuses (a memory limit below what the cgroup already uses and cannot reclaim: EBUSY).
   */
  setLimits(limits: Limits): void {
    const [mem, ...rest] = this.dirs as [string, ...string[]];
    if (this.layout.version === 2) {
      writeFileSync(join(mem, 'memory.max'), String(limits.memoryBytes));
      writeFileSync(join(mem, 'cpu.max'), `${cpuQuota(limits.cpu)} ${CPU_PERIOD}`);
      writeFileSync(join(mem, 'pids.max'), String(limits.pids));
      return;
    }
    const memsw = join(mem, 'memory.memsw.limit_in_bytes');
    const files = [join(mem, 'memory.limit_in_bytes'), ...(existsSync(memsw) ? [memsw] : [])];
    const current = Number.parseInt(read(files[0] as string) ?? '0', 10);
    for (const f of limits.memoryBytes > current ? files.reverse() : files)
      writeFileSync(f, String(limits.memoryBytes));
    for (const d of rest) {
      if (existsSync(join(d, 'cpu.cfs_quota_us')))
        writeFileSync(join(d, 'cpu.cfs_quota_us'), String(cpuQuota(limits.cpu)));
      if (existsSync(join(d, 'pids.max'))) writeFileSync(join(d, 'pids.max'), String(limits.pids));
    }
  }

  /** The cgroup.procs files a process writes its pid into to join every controller. */
  procsFiles(): string[] {
    return this.dirs.map((d) => join(d, 'cgroup.procs'));
  }

  pids(): number[] {
    const out = new Set<number>();
    for (const d of this.dirs) {
      for (const line of (read(join(d, 'cgroup.procs')) ?? '').split('\n')) {
        const pid = Number.parseInt(line, 10);
        if (pid > 0) out.add(pid);
      }
    }
    return [...out];
  }

  /** True once the kernel has OOM-killed a process of this cgroup (sticky across dispose). */
  oomKilled(): boolean {
    if (this.oomSeen) return true;
    if (this.layout.version === 2) {
      this.oomSeen = counter(read(join(this.path, 'memory.events')), 'oom_kill') > 0;
    } else {
      const control = read(join(this.path, 'memory.oom_control'));
      if (control !== undefined && /^oom_kill /m.test(control)) this.oomSeen = counter(control, 'oom_kill') > 0;
      else {
        // Kernels before 4.13 have no oom_kill counter: a limit that was hit while the cgroup sat
        // under OOM is the closest record.
        const failcnt = Number.parseInt(read(join(this.path, 'memory.failcnt')) ?? '0', 10);
        this.oomSeen = failcnt > 0 && counter(control, 'under_oom') > 0;
      }
    }
    return this.oomSeen;
  }

  memoryBytes(): number | null {
    const file = this.layout.version === 2 ? 'memory.current' : 'memory.usage_in_bytes';
    const text = read(join(this.path, file));
    if (text === undefined) return null;
    const n = Number.parseInt(text, 10);
    return Number.isFinite(n) ? n : null;
  }

  /** SIGKILLs everything left, waits (bounded) for the cgroup to empty, removes its directories. */
  async destroy(timeoutMs = 5000): Promise<void> {
    this.oomKilled();
    const deadline = Date.now() + timeoutMs;
    const killed = new Set<number>();
    for (;;) {
      const pids = this.pids();
      if (pids.length === 0) break;
      for (const pid of pids) {
        killed.add(pid);
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    // A task leaves cgroup.procs early in its exit, before it stops running (the state turns Z
    // only later): "disposed" promises nothing of the cell still runs, so wait for that too.
    while ([...killed].some(running) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    let lastError: unknown;
    for (const d of [...this.dirs].reverse()) {
      for (;;) {
        try {
          rmdirSync(d);
          break;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          // EBUSY while the kernel finishes reaping the last task.
          if (code === 'EBUSY' && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 10));
            continue;
          }
          lastError = err;
          break;
        }
      }
    }
    if (lastError !== undefined) throw lastError;
  }
}

export const CPU_PERIOD = 100_000;

function cpuQuota(cores: number): number {
  return Math.max(1000, Math.round(cores * CPU_PERIOD));
}

function counter(text: string | undefined, key: string): number {
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(text ?? '');
  return m ? Number(m[1]) : 0;
}

function enableControllers(dir: string): void {
  const file = join(dir, 'cgroup.subtree_control');
  const enabled = (read(file) ?? '').trim().split(/\s+/);
  const missing = V2_NEEDED.filter((c) => !enabled.includes(c));
  if (missing.length > 0) writeFileSync(file, missing.map((c) => `+${c}`).join(' '));
}
