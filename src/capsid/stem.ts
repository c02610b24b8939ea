import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, linkSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { CellError } from '../errors/index.js';
import type { CellBoot } from '../paths/index.js';
import type { CellCgroup } from './cgroup.js';
import { DEFAULT_LIMITS, type Limits, resolveLimits } from './limits.js';
import {
  bootEntryPath,
  bootFor,
  capsuleOf,
  createCgroup,
  type Encapsulated,
  type Host,
  hostFor,
  INSIDE,
  type SandboxUser,
  sandboxArgs,
  startIn,
  writeFd,
} from './sandbox.js';

/**
 * Stem cells: sandboxed boot processes started before any cell is chosen for them. Each one already
 * runs Node inside its own bubblewrap namespaces, seccomp filter and cgroup, and waits (blocked
 * reading its boot contract) holding nothing of any cell. Growing a cell hands one of them that
 * cell's limits, directories, bundle and identity; it is used once.
 *
 * A sandbox's binds are fixed when bubblewrap starts, so a stem gets three empty slots of its own:
 * - `<socketDir>/.stem-<id>/`, bound writable at the same path. The Root renames it to
 *   `<socketDir>/<name>/` on adoption: the sandbox's writable mount stays on that directory, which the
 *   stem (through its read-only view of the rendezvous dir) and every caller now see as the cell's
 *   run dir. No other directory is writable.
 * - `<cells>/.stem-<id>/`, the private dir (tap socket), bound writable, renamed to `<cells>/<name>/`.
 * - `<stems>/<id>/`, bound read-only at /cell/dna; the Root links the cell's bundle and its channel
 *   socket into it before the contract is written.
 */
export interface StemOptions {
  /** false: a raw process (--no-sandbox), still in its own cgroup when one can be made. */
  sandbox: boolean;
  bwrap?: string;
  user?: SandboxUser;
  /** The rendezvous dir (bound read-only; the run slot is created inside it). */
  socketDir: string;
  /** The parent of the cells' private dirs (the private slot is created inside it). */
  privateParent: string;
  /** A Root-private dir holding the read-only slots. */
  stemsDir: string;
}

/** What a stem is told when it becomes a cell. */
export interface Adoption {
  name: string;
  boot: CellBoot;
  bundlePath: string;
  limits?: Partial<Limits> | undefined;
  /** The cell's run dir and private dir on the host (`<socketDir>/<name>`, `<cells>/<name>`). */
  runDir: string;
  privateDir: string;
  /** The cell's channel socket on the host. */
  umbilical: string;
}

export class Stem {
  readonly id: string;
  readonly startedAt = Date.now();
  /** True once the boot entry said it waits for its contract. */
  ready = false;
  private used = false;
  /** Set once the contract was written: from then on the process is a cell, disposed as one. */
  private handedOver = false;
  private disposed: Promise<void> | undefined;

  private constructor(
    id: string,
    readonly child: ChildProcess,
    private readonly host: Host,
    private readonly cgroupOf: CellCgroup | undefined,
    private readonly slots: { run: string; priv: string; dna: string } | undefined,
  ) {
    this.id = id;
    const ready = (child.stdio as unknown as Array<Readable | null | undefined>)[5];
    ready?.once('data', () => {
      this.ready = true;
    });
    ready?.on('error', () => {});
  }

  /** Starts a stem cell: slots, cgroup (default limits until adoption), then the sandboxed boot entry. */
  static async germinate(opts: StemOptions): Promise<Stem> {
    const id = randomBytes(6).toString('hex');
    const host = hostFor('stem', opts.sandbox, opts.bwrap, opts.user);
    const bootEntry = bootEntryPath();
    let slots: { run: string; priv: string; dna: string } | undefined;
    let command: string[];
    if (host.bwrap === undefined) {
      command = [process.execPath, '--enable-source-maps', bootEntry, '--stem'];
    } else {
      slots = {
        run: join(opts.socketDir, `.stem-${id}`),
        priv: join(opts.privateParent, `.stem-${id}`),
        dna: join(opts.stemsDir, id),
      };
      for (const dir of [slots.run, slots.priv]) {
        mkdirSync(dir, { mode: 0o700 });
        if (host.user !== undefined) chownSync(dir, host.user.uid, host.user.gid);
      }
      mkdirSync(opts.stemsDir, { recursive: true, mode: 0o700 });
      // Read-only inside; the cell's user (another uid when the Root is root) lists and reads it.
      mkdirSync(slots.dna, { mode: 0o755 });
      chmodSync(slots.dna, 0o755);
      const cell = sandboxArgs('stem', {
        bundlePath: slots.dna,
        stem: true,
        bootEntry,
        addon: host.addon,
        writable: [slots.run, slots.priv],
        readOnly: [opts.socketDir],
        network: false,
        user: host.user,
        setpriv: host.setpriv,
        seccomp: host.program !== undefined,
      });
      command = [host.bwrap, ...cell.args, '--', ...cell.command];
    }
    let cgroup: CellCgroup | undefined;
    try {
      cgroup = createCgroup('stem', DEFAULT_LIMITS, opts.sandbox);
      const child = await startIn({
        name: 'stem',
        host,
        cgroup,
        command,
        stdout: 'pipe',
        stderr: 'pipe',
        readyFd: true,
      });
      return new Stem(id, child, host, cgroup, slots);
    } catch (err) {
      await cgroup?.destroy().catch(() => {});
      removeSlots(slots);
      throw err;
    }
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  get cgroup(): string | null {
    return this.cgroupOf?.path ?? null;
  }

  alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * Makes this stem the cell `a.name`: its limits first, then its directories and bundle, and last
   * its contract (identity included), which is what lets the waiting boot entry go on. Throws
   * E_SPAWN_FAILED when the stem is gone or was used; the caller then starts the cell the usual way.
   */
  adopt(a: Adoption): Encapsulated {
    if (this.used || !this.alive()) {
      throw new CellError('E_SPAWN_FAILED', `stem cell ${this.id} is ${this.used ? 'used' : 'gone'}.`, {
        cell: a.name,
        fix: 'start the cell without the stem-cell pool.',
      });
    }
    this.used = true;
    const limits = resolveLimits(a.limits);
    this.cgroupOf?.setLimits(limits);
    let boot: CellBoot = { ...a.boot, bundle: a.bundlePath };
    const slots = this.slots;
    if (slots !== undefined) {
      linkOrCopy(a.bundlePath, join(slots.dna, 'bundle.mjs'));
      linkSync(a.umbilical, join(slots.dna, 'umbilical.sock'));
      // What a previous generation left (a crashed one's socket) goes; the slot takes its place.
      for (const [slot, dir] of [
        [slots.run, a.runDir],
        [slots.priv, a.privateDir],
      ] as const) {
        rmSync(dir, { recursive: true, force: true });
        renameSync(slot, dir);
      }
      boot = {
        ...boot,
        bundle: `${INSIDE.dna}/bundle.mjs`,
        umbilical: `${INSIDE.dna}/umbilical.sock`,
        // Inside, the private dir is mounted where the slot was created.
        tapPath: join(slots.priv, 'tap.sock'),
        inspectPath: join(slots.priv, 'inspect.sock'),
      };
    }
    writeFd(this.child, 3, Buffer.from(JSON.stringify(bootFor(this.host, boot))));
    this.handedOver = true;
    const capsule = capsuleOf(this.child, this.host, this.cgroupOf, limits);
    const dispose = capsule.dispose;
    capsule.dispose = () => dispose().finally(() => removeSlots(slots && { dna: slots.dna }));
    return capsule;
  }

  /** Kills a stem that did not become a cell (never taken, or its adoption failed), with its cgroup and slots. */
  dispose(): Promise<void> {
    if (this.handedOver) return Promise.resolve();
    this.disposed ??= capsuleOf(this.child, this.host, this.cgroupOf, DEFAULT_LIMITS)
      .dispose()
      .finally(() => removeSlots(this.slots));
    return this.disposed;
  }
}

function linkOrCopy(from: string, to: string): void {
  try {
    linkSync(from, to);
  } catch {
    copyFileSync(from, to);
  }
}

function removeSlots(slots: { run?: string; priv?: string; dna?: string } | undefined): void {
  for (const dir of [slots?.run, slots?.priv, slots?.dna]) {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  }
}
