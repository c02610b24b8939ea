import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { CellError } from '../errors/index.js';

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Takes `<path>` with O_EXCL (the file holds the owner's pid). A lock whose owner is dead is
 * stale and taken over; a live owner is waited for with bounded polling.
 */
export async function acquireLock(path: string, timeoutMs: number, cell: string): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  const token = `${process.pid}:${Math.random().toString(36).slice(2)}`;
  for (;;) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, token);
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(path, 'utf8') === token) rmSync(path, { force: true });
        } catch {}
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner = Number.NaN;
    let stale = '';
    try {
      stale = readFileSync(path, 'utf8');
      owner = Number.parseInt(stale.split(':')[0] ?? '', 10);
    } catch {}
    if (Number.isInteger(owner) && owner > 0 && !pidAlive(owner)) {
      // Stale: its builder died. Takers serialize on a second O_EXCL file and remove the lock only
      // if it still holds the dead owner's token, so a fresh lock taken meanwhile is never removed.
      takeOver(path, stale);
      continue;
    }
    if (Date.now() > deadline) {
      throw new CellError('E_BUILD_FAILED', `timed out waiting for another build (lock ${path}, pid ${owner}).`, {
        cell,
        fix: `wait for process ${owner} to finish, or remove ${path} if it is gone.`,
      });
    }
    await sleep(25);
  }
}

function takeOver(path: string, staleToken: string): void {
  const guard = `${path}.takeover`;
  try {
    closeSync(openSync(guard, 'wx', 0o600));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    // A taker that died inside this short section leaves the guard behind.
    try {
      if (Date.now() - statSync(guard).mtimeMs > 10_000) rmSync(guard, { force: true });
    } catch {}
    return;
  }
  try {
    if (readFileSync(path, 'utf8') === staleToken) rmSync(path, { force: true });
  } catch {
  } finally {
    rmSync(guard, { force: true });
  }
}
