import { linkSync, renameSync, rmSync } from 'node:fs';
import { CellError } from '../errors/index.js';
import { generationSocketPath } from '../paths/index.js';

/**
 * Zero-downtime hot swap of one cell over Unix sockets (no SO_REUSEPORT for AF_UNIX, and Node's
 * server.close() unlinks the path it bound). Every instance binds its own generation path
 * `<name>.<gen>.sock`; the public `<name>.sock` is only ever a rename target:
 *
 *   1. build the new DNA              (old instance serving, untouched)
 *   2. start generation n+1 at `<name>.<n+1>.sock`
 *   3. wait until it answers a health call there      → on failure: kill it, old keeps serving
 *   4. hard-link `<name>.<n+1>.sock` and rename the link over `<name>.sock` (atomic: new connect()
 *      calls reach n+1, and n+1 keeps its own name for clients that reconnect to their peer)
 *   5. tell generation n to drain: it sends GOAWAY on every connection (socket and shared memory),
 *      finishes what is in flight and exits. Its close() unlinks only its own generation name;
 *      the public name already points at n+1's socket, so it survives.
 *
 * The orchestration is here; the Root supplies the steps (Ribosome build, spawn, health, signal).
 */

export { generationSocketPath };

/**
 * Atomically points the public path at a generation's socket: a hard link to the same socket inode,
 * renamed over the public name. The generation keeps its own name too, which is what a client sees
 * as the peer's address (getpeername) and uses to reach the same instance again, e.g. for the
 * shared-memory pickup connection.
 */
export function publishGeneration(generationPath: string, publicPath: string): void {
  const link = `${generationPath}.publish`;
  rmSync(link, { force: true });
  linkSync(generationPath, link);
  try {
    renameSync(link, publicPath);
  } catch (err) {
    rmSync(link, { force: true });
    throw err;
  }
}

export interface GenerationProcess {
  readonly generation: number;
  readonly pid: number;
}

export interface SwapSteps<P extends GenerationProcess> {
  /** Rebuilds the cell's DNA; throws to abort before anything starts. */
  build(): Promise<void>;
  /** Starts the next generation bound at `bindPath`. */
  start(generation: number, bindPath: string): Promise<P>;
  /** Resolves once the new process answers health at `bindPath`; rejects with the reason otherwise. */
  ready(proc: P, bindPath: string, timeoutMs: number): Promise<void>;
  /** Asks an old generation to drain (GOAWAY, finish in-flight, exit) and resolves when it exited. */
  drain(proc: P): Promise<void>;
  /** Stops a generation that never went public (failed readiness). */
  discard(proc: P): Promise<void>;
}

export interface SwapOptions<P extends GenerationProcess> {
  cell: string;
  publicPath: string;
  current: P | undefined;
  nextGeneration: number;
  steps: SwapSteps<P>;
  readyTimeoutMs?: number;
  /** Called as the swap moves through its phases (for `cell swap` progress lines and logs). */
  onPhase?: (phase: SwapPhase, detail: string) => void;
}

export type SwapPhase = 'building' | 'starting' | 'waiting-ready' | 'published' | 'draining' | 'done' | 'rolled-back';

export interface SwapResult<P extends GenerationProcess> {
  readonly cell: string;
  readonly previous: P | undefined;
  readonly next: P;
  readonly durationMs: number;
  /** Set when the old generation did not drain cleanly (the swap itself still happened). */
  readonly drainError?: unknown;
}

/**
 * Runs one swap. On any failure before the rename, the new generation is discarded, the public path
 * is untouched, and the error (E_SWAP_FAILED, with the cause) says why; the old generation never
 * noticed. After the rename, a failing drain of the old one is reported but does not undo the swap.
 */
export async function swapGenerations<P extends GenerationProcess>(opts: SwapOptions<P>): Promise<SwapResult<P>> {
  const { cell, steps, publicPath, current } = opts;
  const started = performance.now();
  const phase = opts.onPhase ?? (() => {});
  const bindPath = generationSocketPath(publicPath, opts.nextGeneration);
  const fail = (why: string, cause: unknown, fix: string) =>
    new CellError('E_SWAP_FAILED', `${why}: ${(cause as Error)?.message ?? String(cause)}`, {
      cell,
      cause,
      fix,
      details: { generation: opts.nextGeneration, keptGeneration: current?.generation },
    });

  phase('building', 'rebuilding the DNA');
  try {
    await steps.build();
  } catch (err) {
    phase('rolled-back', 'build failed');
    throw fail(
      'the new version did not build; the running version keeps serving',
      err,
      'fix the build error and swap again.',
    );
  }

  phase('starting', `generation ${opts.nextGeneration} at ${bindPath}`);
  rmSync(bindPath, { force: true });
  let next: P;
  try {
    next = await steps.start(opts.nextGeneration, bindPath);
  } catch (err) {
    rmSync(bindPath, { force: true });
    phase('rolled-back', 'start failed');
    throw fail('the new version did not start; the running version keeps serving', err, `see \`cell logs ${cell}\`.`);
  }

  phase('waiting-ready', `pid ${next.pid}`);
  try {
    await steps.ready(next, bindPath, opts.readyTimeoutMs ?? 10_000);
    publishGeneration(bindPath, publicPath);
  } catch (err) {
    await steps.discard(next).catch(() => {});
    rmSync(bindPath, { force: true });
    phase('rolled-back', 'readiness failed');
    throw fail(
      'the new version failed its readiness check; the running version keeps serving',
      err,
      `see \`cell logs ${cell}\` for why generation ${opts.nextGeneration} did not become healthy.`,
    );
  }
  phase('published', `${publicPath} → generation ${opts.nextGeneration}`);

  let drainError: unknown;
  if (current !== undefined) {
    phase('draining', `generation ${current.generation} (pid ${current.pid})`);
    try {
      await steps.drain(current);
    } catch (err) {
      drainError = err;
    }
  }
  phase('done', `generation ${opts.nextGeneration} serving`);
  return { cell, previous: current, next, durationMs: performance.now() - started, drainError };
}
