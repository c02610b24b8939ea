import { spawnSync } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, realpathSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { openSeccompFd, seccompFilter } from './seccomp.js';

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

/**
 * bubblewrap with a cell's namespaces, identity and capabilities, the binds Node needs and its own
 * /proc, /dev and /tmp, running `node -e ''` with `extra` flags: null when it runs, else why not.
 */
function runNodeUnder(bwrap: string, extra: string[], fd?: number): string | null {
  const r = spawnSync(
    bwrap,
    [
      '--unshare-all',
      '--unshare-user',
      '--uid',
      '65534',
      '--gid',
      '65534',
      '--die-with-parent',
      '--new-session',
      '--cap-drop',
      'ALL',
      ...systemBinds().flatMap(bindArgs('--ro-bind')),
      '--proc',
      '/proc',
      '--dev',
      '/dev',
      '--tmpfs',
      '/tmp',
      ...extra,
      '--',
      process.execPath,
      '-e',
      '',
    ],
    {
      encoding: 'utf8',
      timeout: 15_000,
      env: {},
      stdio: fd === undefined ? 'pipe' : ['ignore', 'pipe', 'pipe', fd],
    },
  );
  if (r.status === 0) return null;
  const why = (r.stderr || r.error?.message || (r.signal ? `killed by ${r.signal}` : `exit ${r.status}`)).trim();
  return `${bwrap} ${extra[0]} fails: ${why}`;
}

const probedUserns = new Map<string, string | null>();

/**
 * Whether bubblewrap can stop a cell from creating user namespaces of its own (`--disable-userns`:
 * bubblewrap ≥ 0.8, which sets user.max_user_namespaces to 1 in the cell's user namespace, nests
 * another one inside it, and checks that unshare(CLONE_NEWUSER) then fails). null = it can.
 */
export function probeDisableUserns(bwrap: string): string | null {
  const known = probedUserns.get(bwrap);
  if (known !== undefined) return known;
  const reason = runNodeUnder(bwrap, ['--disable-userns']);
  probedUserns.set(bwrap, reason);
  return reason;
}

const probedSeccomp = new Map<string, string | null>();

/**
 * Whether Node runs under the cell's seccomp filter (seccompFilter) loaded by `bwrap --seccomp`:
 * no filter for this architecture, or a kernel without seccomp filtering, says why. null = it runs.
 */
export function probeSeccomp(bwrap: string): string | null {
  const known = probedSeccomp.get(bwrap);
  if (known !== undefined) return known;
  const filter = seccompFilter();
  let reason: string | null;
  if ('reason' in filter) {
    reason = filter.reason;
  } else {
    const fd = openSeccompFd(filter.program);
    try {
      reason = runNodeUnder(bwrap, ['--seccomp', '3'], fd);
    } finally {
      closeSync(fd);
    }
  }
  probedSeccomp.set(bwrap, reason);
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
