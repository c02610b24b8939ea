// Shared by the Root suites: a private CELL_HOME per test, the real `cell` CLI as a child process,
// cells written as DNA folders, and a /proc scan that finds every process the test started.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const cliPath = fileURLToPath(new URL('../../../src/cli/main.js', import.meta.url));

export interface Sandbox {
  dir: string;
  env: NodeJS.ProcessEnv;
  cell(name: string, source: string): string;
  manifest(cells: Record<string, Record<string, unknown>>): string;
  cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** The CLI run from another working directory. */
  cliAt(cwd: string, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** The CLI with extra environment variables. */
  cliWith(
    extra: NodeJS.ProcessEnv,
    ...args: string[]
  ): Promise<{ code: number | null; stdout: string; stderr: string }>;
  cleanup(): Promise<void>;
}

/**
 * Pids whose environment or command line mentions `marker` (the Root, the sandboxes it started for
 * this test: bubblewrap's arguments name the test's dirs) and every process below them (a cell's own
 * environment is empty until its boot entry reads fd 3).
 */
export function processesMentioning(marker: string): number[] {
  const parents = new Map<number, number>();
  const found = new Set<number>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!/^\d+$/.test(entry) || pid === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      parents.set(pid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
      const text = readFileSync(`/proc/${entry}/environ`, 'latin1') + readFileSync(`/proc/${entry}/cmdline`, 'latin1');
      if (text.includes(marker)) found.add(pid);
    } catch {
      // gone, or not ours to read
    }
  }
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, ppid] of parents) {
      if (!found.has(pid) && found.has(ppid)) {
        found.add(pid);
        grew = true;
      }
    }
  }
  return [...found];
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${last === undefined ? '' : `: ${(last as Error).message}`}`);
}

export function makeSandbox(): Sandbox {
  const dir = mkdtempSync(join(tmpdir(), 'cell-root-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CELL_HOME: join(dir, 'home'),
    CELL_SOCKET_DIR: join(dir, 'run'),
    CELL_LAN: '0',
  };
  delete env.CELL_PEER;
  delete env.CELL_UMBILICAL;
  return {
    dir,
    env,
    cell(name, source) {
      const d = join(dir, 'dna', name);
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, 'index.ts'), source);
      return d;
    },
    manifest(cells) {
      const path = join(dir, 'cell.json');
      writeFileSync(path, JSON.stringify({ cells }, null, 2));
      return path;
    },
    cli(...args) {
      return this.cliAt(dir, ...args);
    },
    cliAt(cwd, ...args) {
      return runCli(cwd, env, args);
    },
    cliWith(extra, ...args) {
      return runCli(dir, { ...env, ...extra }, args);
    },
    async cleanup() {
      await this.cli('down').catch(() => {});
      for (const pid of processesMentioning(dir)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function runCli(
  cwd: string,
  env: NodeJS.ProcessEnv,
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cliPath, ...args], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Points this test process's Synapse at the sandbox (paths are read from the environment per call). */
export function useSandboxEnv(sb: Sandbox): () => void {
  const keys = ['CELL_HOME', 'CELL_SOCKET_DIR', 'CELL_UMBILICAL', 'CELL_LAN'] as const;
  const saved = keys.map((k) => process.env[k]);
  for (const k of keys) {
    if (sb.env[k] === undefined) delete process.env[k];
    else process.env[k] = sb.env[k];
  }
  return () =>
    keys.forEach((k, i) => {
      if (saved[i] === undefined) delete process.env[k];
      else process.env[k] = saved[i];
    });
}

/** A small cell: `service(name, { echo, add, die })`. */
export function echoCell(name: string, extra = ''): string {
  return `import { Membrane, rpc, service, t } from 'cell';
const Svc = service(${JSON.stringify(name)}, {
  echo: rpc(t.string, t.string),
  add: rpc(t.struct('Pair', { a: t.uint, b: t.uint }), t.uint),
  die: rpc(t.unit, t.unit),
  wait: rpc(t.uint, t.uint),
});
${extra}
await Membrane.bind(Svc, {
  echo: (s) => ${JSON.stringify(`${name}:`)} + s,
  add: (p) => p.a + p.b,
  die: () => process.exit(1),
  wait: (ms) => new Promise((resolve) => setTimeout(() => resolve(ms), ms)),
});
console.log(${JSON.stringify(`${name} ready`)});
`;
}

import { t } from '../../../src/protein/index.js';
import { rpc, service } from '../../../src/service/index.js';

/** The caller's copy of echoCell's contract. */
export function echoContract(name: string) {
  return service(name, {
    echo: rpc(t.string, t.string),
    add: rpc(t.struct('Pair', { a: t.uint, b: t.uint }), t.uint),
    die: rpc(t.unit, t.unit),
    wait: rpc(t.uint, t.uint),
  });
}

import { detectCgroups, findBwrap, probeBwrap } from '../../../src/capsid/index.js';

/** True when cells can run in the real sandbox here (bubblewrap runnable and cgroups writable). */
export function canSandbox(): boolean {
  const found = findBwrap();
  return 'path' in found && probeBwrap(found.path) === null && detectCgroups().layout !== undefined;
}

/** `cell up` flags: the real sandbox when this host has one, else --no-sandbox. */
export function sandboxFlags(): string[] {
  return canSandbox() ? [] : ['--no-sandbox'];
}

/** The per-cell cgroup directories (under a `cell` parent) a process sits in, from /proc/<pid>/cgroup. */
export function cellCgroupsOf(pid: number): string[] {
  let text = '';
  try {
    text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return [];
  }
  const dirs: string[] = [];
  for (const line of text.trim().split('\n')) {
    const [, controllers, path] = line.split(':') as [string, string, string];
    if (!/\/cell\//.test(path)) continue;
    const mounts = controllers === '' ? [''] : controllers.split(',').map((c) => c.replace(/^name=/, ''));
    for (const m of mounts) {
      const dir = m === '' ? join('/sys/fs/cgroup', path) : join('/sys/fs/cgroup', m, path);
      if (existsSync(dir)) dirs.push(dir);
    }
  }
  return dirs;
}
