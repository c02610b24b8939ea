import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CellError } from '../errors/index.js';
import { Stem, type StemOptions } from './engine.js';

/** Stem cells kept waiting when neither the Root's options nor CELL_STEM_CELLS say otherwise. */
export const STEM_CELLS_DEFAULT = 2;
const STEM_CELLS_MAX = 64;
/** Stems that die before they said they wait, in a row, before the pool gives up (a broken host). */
const STEM_FAILURES_MAX = 5;
const STEM_RETRY_FIRST_MS = 200;
/** How long after a cell became ready its replacement starts (it would compete with the cell's first calls). */
const REFILL_DELAY_MS = 300;

/** The pool size: the option, else CELL_STEM_CELLS, else the default; 0 turns the pool off. */
export function stemCellsWanted(option: number | undefined, env = process.env.CELL_STEM_CELLS): number {
  const raw = option ?? (env === undefined || env === '' ? STEM_CELLS_DEFAULT : Number(env));
  if (!Number.isInteger(raw) || raw < 0 || raw > STEM_CELLS_MAX) {
    throw new CellError('E_INVALID_ARGUMENT', `the stem-cell pool size is ${String(option ?? env)}.`, {
      fix: `set CELL_STEM_CELLS to an integer from 0 (no pool) to ${STEM_CELLS_MAX}.`,
    });
  }
  return raw;
}

/** Removes the slots a Root that was killed left behind (their stems died with it). */
export function removeStaleSlots(opts: StemOptions): void {
  for (const parent of [opts.socketDir, opts.privateParent]) {
    let entries: string[] = [];
    try {
      entries = readdirSync(parent);
    } catch {}
    for (const e of entries) if (e.startsWith('.stem-')) rmSync(join(parent, e), { recursive: true, force: true });
  }
  rmSync(opts.stemsDir, { recursive: true, force: true });
}

/**
 * The Root's stem cells: `size` sandboxed boot processes waiting for a cell's contract. `take()` hands
 * one out (it is used once); `fill()` starts replacements; a stem that dies while waiting is removed
 * and replaced (with backoff, and the pool turns itself off after repeated early deaths, so a host
 * where stems cannot start falls back to starting each cell on its own).
 */
export class StemPool {
  private readonly waiting: Stem[] = [];
  private readonly starting = new Set<Promise<void>>();
  private closed = false;
  private failures = 0;
  private retry: NodeJS.Timeout | null = null;
  private refill: NodeJS.Timeout | null = null;
  /** Why the pool stopped starting stems (undefined while it works). */
  off: string | undefined;

  constructor(
    readonly size: number,
    private readonly opts: StemOptions,
    private readonly note: (line: string) => void,
  ) {}

  /**
   * Starts stems until `size` are waiting or starting, one at a time: each is a Node start in
   * bubblewrap, and several at once would take the CPU from the cells that are running.
   */
  fill(): void {
    if (this.refill !== null) clearTimeout(this.refill);
    this.refill = null;
    while (
      !this.closed &&
      this.off === undefined &&
      this.starting.size === 0 &&
      this.waiting.length + this.starting.size < this.size
    ) {
      const p: Promise<void> = Stem.germinate(this.opts).then(
        (stem) => {
          this.starting.delete(p);
          this.arrived(stem);
        },
        (err: unknown) => {
          this.starting.delete(p);
          this.failed(`cannot start: ${err instanceof Error ? err.message : String(err)}`);
        },
      );
      this.starting.add(p);
    }
  }

  /** fill(), a little later (after a stem was taken, once the cell it became answers). */
  fillSoon(): void {
    if (this.refill !== null || this.closed) return;
    this.refill = setTimeout(() => this.fill(), REFILL_DELAY_MS);
    this.refill.unref();
  }

  /** A waiting stem (one that said it waits, if any), out of the pool for good. */
  take(): Stem | undefined {
    const i = this.waiting.findIndex((s) => s.ready && s.alive());
    const at = i >= 0 ? i : this.waiting.findIndex((s) => s.alive());
    if (at < 0) return undefined;
    // One that reached its wait proves the host can run stems: early deaths count from zero again.
    if (i >= 0) this.failures = 0;
    return this.waiting.splice(at, 1)[0];
  }

  /** Stems waiting now. */
  get count(): number {
    return this.waiting.length;
  }

  /** Stems ready (waiting for a contract), still starting, and why the pool is off ('' while on). */
  state(): { ready: number; starting: number; off: string } {
    const ready = this.waiting.filter((s) => s.ready && s.alive()).length;
    return { ready, starting: this.waiting.length - ready + this.starting.size, off: this.off ?? '' };
  }

  pids(): number[] {
    return this.waiting.map((s) => s.pid);
  }

  cgroups(): string[] {
    return this.waiting.flatMap((s) => (s.cgroup === null ? [] : [s.cgroup]));
  }

  private arrived(stem: Stem): void {
    if (this.closed) {
      void stem.dispose();
      return;
    }
    this.waiting.push(stem);
    stem.child.once('exit', (code, signal) => this.died(stem, code, signal));
    this.fill();
  }

  private died(stem: Stem, code: number | null, signal: NodeJS.Signals | null): void {
    const i = this.waiting.indexOf(stem);
    if (i < 0) return; // adopted: the Root watches it as a cell now
    this.waiting.splice(i, 1);
    void stem.dispose().catch(() => {});
    if (this.closed) return;
    const how = signal !== null ? `signal ${signal}` : `exit ${code}`;
    if (stem.ready) {
      this.failures = 0;
      this.note(`stem cell ${stem.id} (pid ${stem.pid}) ended while waiting (${how}); replacing it`);
      this.fill();
    } else this.failed(`stem cell ${stem.id} (pid ${stem.pid}) ended before it was ready (${how})`);
  }

  private failed(why: string): void {
    this.failures++;
    if (this.failures >= STEM_FAILURES_MAX) {
      this.off = why;
      this.note(`stem cells off after ${this.failures} failures (${why}); cells start without them`);
      return;
    }
    this.note(`${why}; retrying`);
    if (this.retry !== null || this.closed) return;
    this.retry = setTimeout(
      () => {
        this.retry = null;
        this.fill();
      },
      STEM_RETRY_FIRST_MS * 2 ** (this.failures - 1),
    );
  }

  /** Kills every waiting stem (and those still starting) and removes their cgroups and slots. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retry !== null) clearTimeout(this.retry);
    if (this.refill !== null) clearTimeout(this.refill);
    await Promise.all([...this.starting]);
    const stems = this.waiting.splice(0);
    await Promise.all(stems.map((s) => s.dispose().catch(() => {})));
  }

  /** Synchronous last resort at process exit. */
  killAll(): void {
    for (const s of this.waiting) s.child.kill('SIGKILL');
  }
}
