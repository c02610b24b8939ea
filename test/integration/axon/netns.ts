import type { ChildProcess } from 'node:child_process';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';

/**
 * A private network of "hosts" made of Linux network namespaces: one switch namespace holding a
 * bridge, and one namespace per host joined to it by a veth pair. Addresses (10.77.0.0/24) exist only
 * inside these namespaces, so nothing can leave the machine. Multicast is routed onto each host's
 * veth and the bridge floods it (no snooping), so pheromones behave as on a real LAN segment.
 */
const PREFIX = 'cellax';

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function netnsAvailable(): boolean {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  try {
    ip('netns', 'list');
    return true;
  } catch {
    return false;
  }
}

/** Namespaces left by a run that was killed before its teardown (its pid is gone). */
function removeStale(): void {
  for (const line of ip('netns', 'list').split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = new RegExp(`^${PREFIX}-(\\d+)-`).exec(name);
    if (!m) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch {
      try {
        ip('netns', 'del', name);
      } catch {}
    }
  }
}

export interface Proc {
  child: ChildProcess;
  /** Resolves with the first JSON line for which `pred` holds. */
  waitLine<T = Record<string, unknown>>(pred: (msg: T) => boolean, timeoutMs?: number, what?: string): Promise<T>;
  send(msg: unknown): void;
  lines: Record<string, unknown>[];
  stderr(): string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export class NetnsLab {
  readonly switchNs: string;
  readonly hosts: string[] = [];
  private readonly procs = new Set<Proc>();

  private constructor(readonly tag: string) {
    this.switchNs = `${PREFIX}-${process.pid}-${tag}-sw`;
  }

  static create(hostCount: number): NetnsLab {
    removeStale();
    const lab = new NetnsLab(randomBytes(3).toString('hex'));
    try {
      ip('netns', 'add', lab.switchNs);
      ip('-n', lab.switchNs, 'link', 'set', 'lo', 'up');
      ip('-n', lab.switchNs, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0');
      ip('-n', lab.switchNs, 'link', 'set', 'br0', 'up');
      for (let i = 0; i < hostCount; i++) {
        const ns = `${PREFIX}-${process.pid}-${lab.tag}-h${i}`;
        ip('netns', 'add', ns);
        lab.hosts.push(ns);
        ip('-n', ns, 'link', 'set', 'lo', 'up');
        ip('-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `sw${i}`, 'netns', lab.switchNs);
        ip('-n', ns, 'addr', 'add', `${lab.address(i)}/24`, 'dev', 'eth0');
        ip('-n', ns, 'link', 'set', 'eth0', 'up');
        ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0');
        ip('-n', lab.switchNs, 'link', 'set', `sw${i}`, 'master', 'br0');
        ip('-n', lab.switchNs, 'link', 'set', `sw${i}`, 'up');
      }
    } catch (err) {
      lab.destroyNamespaces();
      throw err;
    }
    return lab;
  }

  address(host: number): string {
    return `10.77.0.${host + 1}`;
  }

  /** Unplugs a host's cable at the switch: its packets vanish, its sockets stay open. */
  cut(host: number): void {
    ip('-n', this.switchNs, 'link', 'set', `sw${host}`, 'down');
  }

  restore(host: number): void {
    ip('-n', this.switchNs, 'link', 'set', `sw${host}`, 'up');
  }

  /** Runs `node <script> args…` inside a host namespace; it speaks JSON lines on stdin/stdout. */
  spawn(host: number, script: string, args: string[], env: Record<string, string>): Proc {
    const child = spawn('ip', ['netns', 'exec', this.hosts[host] as string, process.execPath, script, ...args], {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const lines: Record<string, unknown>[] = [];
    const waiters = new Set<() => void>();
    let err = '';
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        lines.push(JSON.parse(line));
      } catch {
        err += `${line}\n`;
      }
      for (const w of waiters) w();
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.once('exit', () => {
      for (const w of waiters) w();
    });
    const proc: Proc = {
      child,
      lines,
      stderr: () => err,
      send: (msg) => child.stdin?.write(`${JSON.stringify(msg)}\n`),
      waitLine: <T>(pred: (msg: T) => boolean, timeoutMs = 15_000, what = 'a line') =>
        new Promise<T>((resolve, reject) => {
          let seen = 0;
          const check = () => {
            for (; seen < lines.length; seen++) {
              if (pred(lines[seen] as T)) {
                cleanup();
                return resolve(lines[seen] as T);
              }
            }
            if (child.exitCode !== null || child.signalCode !== null) {
              cleanup();
              reject(
                new Error(`process exited (${child.exitCode ?? child.signalCode}) before ${what}; stderr:\n${err}`),
              );
            }
          };
          const timer = setTimeout(() => {
            cleanup();
            reject(
              new Error(
                `timed out after ${timeoutMs} ms waiting for ${what}; last lines: ${JSON.stringify(lines.slice(-3))}; stderr:\n${err}`,
              ),
            );
          }, timeoutMs);
          const cleanup = () => {
            clearTimeout(timer);
            waiters.delete(check);
          };
          waiters.add(check);
          check();
        }),
      kill: async (signal = 'SIGTERM') => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill(signal);
          const t = setTimeout(() => child.kill('SIGKILL'), 3_000);
          await exited;
          clearTimeout(t);
        }
        this.procs.delete(proc);
      },
    };
    this.procs.add(proc);
    return proc;
  }

  async destroy(): Promise<void> {
    await Promise.all([...this.procs].map((p) => p.kill('SIGKILL')));
    this.destroyNamespaces();
  }

  private destroyNamespaces(): void {
    for (const ns of [...this.hosts, this.switchNs]) {
      try {
        ip('netns', 'del', ns);
      } catch {}
    }
  }
}
