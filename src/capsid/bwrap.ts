import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, realpathSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';

/** Looks `cmd` up on PATH (or the given search path); undefined when absent or not executable. */
export function which(cmd: string, searchPath = process.env.PATH ?? ''): string | undefined {
  if (cmd.includes('/')) return isExecutable(cmd) ? cmd : undefined;
  for (const dir of searchPath.split(delimiter)) {
    if (dir === '') continue;
    const p = join(dir, cmd);
    if (isExecutable(p)) return p;
  }
  return undefined;
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The bubblewrap binary to use, or a reason why there is none. */
export function findBwrap(explicit?: string, searchPath?: string): { path: string } | { reason: string } {
  const wanted = explicit ?? process.env.CELL_BWRAP;
  if (wanted !== undefined) {
    const found = which(wanted, searchPath);
    return found !== undefined ? { path: resolve(found) } : { reason: `bubblewrap not found at ${wanted}` };
  }
  const found = which('bwrap', searchPath);
  return found !== undefined ? { path: found } : { reason: 'bubblewrap (bwrap) is not on PATH' };
}

const probed = new Map<string, string | null>();

/**
 * Runs bubblewrap once with the namespaces a cell gets: a missing user-namespace or mount
 * permission shows here instead of as a cell that dies at start. null = works.
 */
export function probeBwrap(bwrap: string): string | null {
  const known = probed.get(bwrap);
  if (known !== undefined) return known;
  const r = spawnSync(
    bwrap,
    [
      '--unshare-all',
      '--die-with-parent',
      '--new-session',
      '--cap-drop',
      'ALL',
      ...systemBinds().flatMap(bindArgs('--ro-bind')),
      '--proc',
      '/proc',
      '--dev',
      '/dev',
      '--',
      process.execPath,
      '-e',
      '',
    ],
    { encoding: 'utf8', timeout: 15_000, env: {} },
  );
  const reason =
    r.status === 0
      ? null
      : `${bwrap} cannot create a sandbox: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}`;
  probed.set(bwrap, reason);
  return reason;
}

export type Bind = [source: string, dest: string];
export const bindArgs = (flag: string) => (b: Bind) => [flag, b[0], b[1]];

let systemBindCache: Bind[] | undefined;

/**
 * What Node.js needs to run: its binary, the shared libraries it links (from ldd) and the loader
 * cache. When ldd is unavailable (or the binary is static), /usr, /lib and /lib64 are bound
 * read-only instead (docs/SANDBOX.md).
 */
export function systemBinds(extraObjects: string[] = []): Bind[] {
  if (systemBindCache === undefined) systemBindCache = librariesOf(process.execPath);
  const binds = new Map<string, string>();
  for (const [s, d] of systemBindCache) binds.set(d, s);
  for (const o of extraObjects) for (const [s, d] of librariesOf(o)) binds.set(d, s);
  return [...binds].map(([d, s]) => [s, d]);
}

function librariesOf(object: string): Bind[] {
  const binds: Bind[] = [];
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return undefined;
    }
  };
  if (object === process.execPath) {
    const r = real(object);
    if (r) binds.push([r, object]);
  }
  const r = spawnSync('ldd', [object], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) {
    if (object !== process.execPath) return binds;
    return [...binds, ...['/usr', '/lib', '/lib64', '/bin'].filter((p) => existsSync(p)).map((p): Bind => [p, p])];
  }
  for (const line of r.stdout.split('\n')) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    const lib = m?.[1];
    if (lib === undefined) continue;
    const target = real(lib);
    if (target) binds.push([target, lib]);
  }
  if (existsSync('/etc/ld.so.cache')) binds.push(['/etc/ld.so.cache', '/etc/ld.so.cache']);
  return binds;
}
