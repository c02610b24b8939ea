import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { connect } from 'node:net';
import { CellError } from '../errors/index.js';

/**
 * Single-instance guard for a cell name. Node has no flock, so the lock is a file created with O_EXCL
 * holding "<pid> <start time>"; a lock whose process is gone (or whose pid was reused by a process that
 * started at another time) is stale and replaced. The socket path is then probed: a socket that accepts
 * a connection belongs to a live cell and is never removed; one that refuses is stale and is unlinked.
 */
export class InstanceLock {
  readonly path: string;
  private readonly token: string;
  private held = false;

  private constructor(path: string, token: string) {
    this.path = path;
    this.token = token;
  }

  static acquire(lockPath: string, cell: string): InstanceLock {
    const token = `${process.pid} ${processStartTime(process.pid) ?? '0'}\n`;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fd = openSync(lockPath, 'wx', 0o600);
        try {
          writeSync(fd, token);
        } finally {
          closeSync(fd);
        }
        const lock = new InstanceLock(lockPath, token);
        lock.held = true;
        return lock;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      let content = '';
      try {
        content = readFileSync(lockPath, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      const [pidText, startText] = content.trim().split(/\s+/);
      const pid = Number(pidText);
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid, startText)) {
        throw alreadyRunning(cell, pid, lockPath);
      }
      // Stale: its owner is dead. Remove only if it still holds the content we judged.
      try {
        if (readFileSync(lockPath, 'utf8') === content) unlinkSync(lockPath);
      } catch {
        // someone else replaced or removed it; retry decides
      }
    }
    throw new CellError('E_CELL_ALREADY_RUNNING', `could not take the instance lock ${lockPath}.`, {
      cell,
      fix: 'another process keeps re-creating it; stop the other instance.',
    });
  }

  release(): void {
    if (!this.held) return;
    this.held = false;
    try {
      if (readFileSync(this.path, 'utf8') === this.token) unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

function alreadyRunning(cell: string, pid: number | undefined, where: string): CellError {
  return new CellError(
    'E_CELL_ALREADY_RUNNING',
    `another instance is already running${pid !== undefined ? ` (pid ${pid})` : ''}; ${where} is in use.`,
    {
      cell,
      fix: `stop the running instance first (\`cell stop ${cell}\` when the Root runs it, else SIGTERM its process), or use a different CELL_SOCKET_DIR.`,
      details: { pid, path: where },
    },
  );
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); null when the process is gone. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

function isAlive(pid: number, startTime: string | undefined): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (startTime === undefined || startTime === '0') return true;
  const now = processStartTime(pid);
  return now === null ? true : now === startTime;
}

/**
 * Probes an existing socket path: 'live' if something accepts, 'stale' if connecting is refused,
 * 'absent' if there is no such file.
 */
export function probeSocket(path: string, timeoutMs = 1000): Promise<'live' | 'stale' | 'absent'> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    const timer = setTimeout(() => {
      s.destroy();
      resolve('live'); // a listener too busy to accept is still a listener
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve('live');
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ECONNREFUSED') resolve('stale');
      else if (err.code === 'ENOENT') resolve('absent');
      else reject(err);
    });
  });
}

export { alreadyRunning };
