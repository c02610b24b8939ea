import { readFileSync } from 'node:fs';

/**
 * CPU and memory of a process from /proc/<pid>/stat and /proc/<pid>/status. Cheap enough for the
 * Root to read every cell once a second: two small file reads, no child processes.
 */

/** Clock ticks per second (USER_HZ). Linux fixes it at 100 on every architecture Node supports. */
const CLOCK_TICKS = 100;

export interface ProcessSample {
  readonly pid: number;
  /** utime + stime in seconds. */
  readonly cpuSeconds: number;
  readonly rssBytes: number;
  /** Process start, in seconds since boot (field 22 of stat), to tell a reused pid apart. */
  readonly startTicks: number;
  /** When the sample was taken (monotonic ms). */
  readonly at: number;
}

/** Reads one process; undefined when it does not exist (anymore) or /proc is not there. */
export function readProcess(pid: number): ProcessSample | undefined {
  let stat: string;
  let status: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime is field 14, stime 15, starttime 22.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  const start = Number(fields[19]);
  const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return {
    pid,
    cpuSeconds: (utime + stime) / CLOCK_TICKS,
    rssBytes: rss ? Number(rss[1]) * 1024 : 0,
    startTicks: start,
    at: performance.now(),
  };
}

/** CPU use between two samples of the same process, in percent of one core. */
export function cpuPercent(earlier: ProcessSample | undefined, later: ProcessSample): number | undefined {
  if (earlier === undefined || earlier.pid !== later.pid || earlier.startTicks !== later.startTicks) return undefined;
  const wall = (later.at - earlier.at) / 1000;
  if (wall <= 0) return undefined;
  return Math.max(0, ((later.cpuSeconds - earlier.cpuSeconds) / wall) * 100);
}

/** Keeps the previous sample per pid so each `sample` call can report CPU % since the last one. */
export class ProcessSampler {
  private readonly previous = new Map<number, ProcessSample>();

  sample(pid: number): { cpuSeconds: number; cpuPercent: number | undefined; rssBytes: number } | undefined {
    const now = readProcess(pid);
    if (now === undefined) {
      this.previous.delete(pid);
      return undefined;
    }
    const pct = cpuPercent(this.previous.get(pid), now);
    this.previous.set(pid, now);
    return { cpuSeconds: now.cpuSeconds, cpuPercent: pct, rssBytes: now.rssBytes };
  }

  /** Forgets pids not in `alive`, so the map does not grow with every restart. */
  retain(alive: Iterable<number>): void {
    const keep = new Set(alive);
    for (const pid of this.previous.keys()) if (!keep.has(pid)) this.previous.delete(pid);
  }
}
