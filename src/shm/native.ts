import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { installCopyPool } from './copy-pool.js';

/** The C++ addon's surface (native/cell_native.cc). */
export interface NativeAddon {
  memfdCreate(name: string, size: number): number;
  /** readOnly maps PROT_READ (a slot only the peer writes); the file must be ≥ size and sealed against shrinking. */
  mmapShared(fd: number, size: number, readOnly?: boolean): SharedArrayBuffer;
  closeFd(fd: number): void;
  releaseMemory(fd: number, size: number): void;
  /** Gives back the whole pages of `[offset, offset + length)` of a shared mapping (MADV_REMOVE); returns the bytes released. */
  trimShared(sab: SharedArrayBuffer, offset: number, length: number): number;
  /**
   * A dead connection's ring: replaces the mapping in place by private anonymous memory, so this
   * process no longer holds the memfd; the buffer stays safe to touch (zeros). The peer's view is
   * untouched (the creator punches the pages out through its fd).
   */
  unmapShared(sab: SharedArrayBuffer): void;
  sendFds(socketFd: number, fds: number[], payload: Uint8Array): number;
  recvFds(socketFd: number): { fds: number[]; payload: Buffer };
  fetchFds(
    path: string,
    request: Uint8Array,
    timeoutMs: number,
  ): Promise<{ fds: number[]; payload: Buffer; peer: PeerCredentials }>;
  peerCred(fd: number): PeerCredentials;
  /** Path of the Unix socket `fd` is connected to ('' when unnamed). */
  peerPath(fd: number): string;
  futexWait(
    sab: SharedArrayBuffer,
    index: number,
    expected: number,
    timeoutNs?: number,
  ): 'ok' | 'not-equal' | 'timed-out';
  futexWake(sab: SharedArrayBuffer, index: number, count: number): number;
  FutexWatcher: new (sab: SharedArrayBuffer, index: number, callback: () => void) => FutexWatcher;
  /** A nonblocking, close-on-exec eventfd: a ring's doorbell. */
  eventfdCreate(): number;
  eventfdSignal(fd: number): void;
  /** Calls back on the JS thread (from the event loop) each time the eventfd is signalled. */
  FdWatcher: new (
    fd: number,
    callback: () => void,
  ) => { close(): void };
  /**
   * A plain ArrayBuffer holding a copy of `view[offset, offset + length)`, in memory recycled from
   * buffers the garbage collector freed (no page faults once warm). Absent from older builds.
   */
  takeCopy?(view: Uint8Array, offset: number, length: number): ArrayBuffer;
  /** memcpy of the whole `source` to `target[offset…]` (any alignment, shared or not). Absent from older builds. */
  copyInto?(target: Uint8Array, offset: number, source: Uint8Array): void;
  /** Unmaps the pool's idle chunks; returns the bytes freed. */
  trimCopyPool?(): number;
  /** The pool's idle bytes, the chunks held by live buffers, and chunks mapped fresh / reused so far. */
  copyPoolStats?(): { idleBytes: number; liveChunks: number; mapped: number; reused: number };
}

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

export interface FutexWatcher {
  /** Sleep (on a native thread) until the word differs from `expected` or is woken; then call back once. */
  arm(expected: number): void;
  close(): void;
}

export type NativeLoad = { addon: NativeAddon; reason: undefined } | { addon: undefined; reason: string };

let cached: NativeLoad | undefined;

/**
 * Loads native/build/Release/cell_native.node (built by scripts/setup.mjs with node-gyp). Failure is
 * not an error: Cell then stays on Unix sockets, and `reason` says why. CELL_NATIVE_ADDON points at
 * another build (or at nothing, to exercise the fallback).
 */
function addonCandidates(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  return process.env.CELL_NATIVE_ADDON
    ? [process.env.CELL_NATIVE_ADDON]
    : [
        join(here, '..', '..', '..', 'native', 'build', 'Release', 'cell_native.node'), // dist/src/shm
        join(here, '..', '..', 'native', 'build', 'Release', 'cell_native.node'), // src/shm
      ];
}

/**
 * Why there is no addon, and how to build it: the package's install script records its reason in
 * native/build/NOT-BUILT; a checkout builds it with scripts/setup.mjs.
 */
function notBuiltReason(expected: string): string {
  const build = dirname(dirname(expected));
  const pkg = dirname(dirname(build));
  let why = '';
  try {
    why = readFileSync(join(build, 'NOT-BUILT'), 'utf8').trim();
  } catch {
    // no note: never attempted (or a checkout)
  }
  const how = existsSync(join(pkg, 'scripts', 'setup.mjs'))
    ? 'run `node scripts/setup.mjs` (needs g++, make, python3)'
    : 'run `npm rebuild cell-runtime` (needs g++, make, python3; npm 12 first needs `npm approve-scripts cell-runtime`)';
  return `native addon not built${why === '' ? '' : ` at install: ${why}`} (looked for ${expected}); ${how}`;
}

export function loadNative(): NativeLoad {
  if (cached !== undefined) return cached;
  const candidates = addonCandidates();
  const path = candidates.find((p) => existsSync(p));
  if (path === undefined) {
    cached = { addon: undefined, reason: notBuiltReason(candidates[0] as string) };
    return cached;
  }
  try {
    const require = createRequire(import.meta.url);
    const addon = require(path) as NativeAddon;
    installCopyPool(addon);
    cached = { addon, reason: undefined };
  } catch (err) {
    cached = { addon: undefined, reason: `native addon failed to load: ${(err as Error).message}` };
  }
  return cached;
}
