import type { ChildProcess } from 'node:child_process';
import type { GenerationProcess, SwapSteps } from './generations.js';
import { waitHealthy } from './probe.js';

/** A generation that is a child process of the caller (the Root, or a test harness). */
export interface ChildGeneration extends GenerationProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function childGeneration(generation: number, child: ChildProcess): ChildGeneration {
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null)
      resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  return { generation, pid: child.pid ?? -1, child, exited };
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Sends SIGTERM (the Membrane drains: GOAWAY, in-flight calls finish), then SIGKILL after `graceMs`. */
export async function stopGeneration(gen: ChildGeneration, graceMs: number): Promise<void> {
  if (!isRunning(gen.child)) return;
  gen.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      if (isRunning(gen.child)) gen.child.kill('SIGKILL');
      resolve();
    }, graceMs);
  });
  await Promise.race([gen.exited, killed]);
  clearTimeout(timer);
  await gen.exited;
}

/**
 * Swap steps for cells that run as child processes: `spawn` starts one with CELL_BIND_PATH set to
 * the generation path; readiness is the Membrane's health built-in at that path; draining is SIGTERM,
 * which makes the Membrane send GOAWAY, finish what is in flight and exit.
 */
export function childProcessSwapSteps(opts: {
  cell: string;
  build?: () => Promise<void>;
  spawn: (generation: number, bindPath: string) => ChildProcess;
  /** How long a draining generation may take before it is killed (default 15 s). */
  drainGraceMs?: number;
}): SwapSteps<ChildGeneration> {
  return {
    build: opts.build ?? (async () => {}),
    start: async (generation, bindPath) => childGeneration(generation, opts.spawn(generation, bindPath)),
    ready: async (proc, bindPath, timeoutMs) => {
      await waitHealthy(opts.cell, bindPath, timeoutMs, () => isRunning(proc.child));
    },
    drain: (proc) => stopGeneration(proc, opts.drainGraceMs ?? 15_000),
    discard: async (proc) => {
      if (isRunning(proc.child)) proc.child.kill('SIGKILL');
      await proc.exited;
    },
  };
}
