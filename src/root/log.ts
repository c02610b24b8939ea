import {
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';

export type LogStream = 'stdout' | 'stderr' | 'root';

const NEWLINE = Buffer.from('\n');
/** A partial line longer than this is written as a line of its own rather than held without bound. */
const MAX_PARTIAL = 64 * 1024;

/**
 * Cuts one output stream of a cell into lines for its log. A chunk may end mid-line: the rest waits
 * for the next chunk (or for `end`, when the process is gone), so no byte is dropped and lines of
 * stdout and stderr never interleave inside one another.
 */
export class LineSplitter {
  private partial: Buffer | null = null;

  constructor(
    private readonly log: RotatingLog,
    private readonly stream: LogStream,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    let nl = chunk.indexOf(10, start);
    while (nl !== -1) {
      let line = chunk.subarray(start, nl);
      if (this.partial !== null) {
        line = Buffer.concat([this.partial, line]);
        this.partial = null;
      }
      this.log.line(this.stream, line);
      start = nl + 1;
      nl = chunk.indexOf(10, start);
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.partial = this.partial === null ? Buffer.from(rest) : Buffer.concat([this.partial, rest]);
      if (this.partial.length >= MAX_PARTIAL) this.end();
    }
  }

  /** Writes what is left of an unfinished last line. */
  end(): void {
    if (this.partial === null) return;
    this.log.line(this.stream, this.partial);
    this.partial = null;
  }
}

/** One parsed log line (`cell logs --json`); time and stream are null for a line without the prefix. */
export interface LogEntry {
  time: string | null;
  cell: string;
  stream: LogStream | null;
  line: string;
}

const PREFIX = /^\[(stdout|stderr|root) (\d{4}-\d\d-\d\dT[\d:.]+Z)(?: ([a-z0-9][a-z0-9_-]*))?\] ?/;

/** Splits a stored line into its fields; a line written before the prefix existed keeps only its text. */
export function parseLogLine(text: string, cell: string): LogEntry {
  const m = PREFIX.exec(text);
  if (m === null) return { time: null, cell, stream: null, line: text };
  return { time: m[2] as string, cell: m[3] ?? cell, stream: m[1] as LogStream, line: text.slice(m[0].length) };
}

/**
 * An append-only log file rotated by size: `<path>` → `<path>.1` → … → `<path>.<keep>` (oldest dropped).
 * Writes are synchronous appends of whole chunks, so a crash loses nothing already handed over.
 */
export class RotatingLog {
  private fd: number;
  private size: number;
  private closed = false;

  constructor(
    readonly path: string,
    private readonly maxBytes = 10 * 1024 * 1024,
    private readonly keep = 3,
  ) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.fd = openSync(path, 'a', 0o600);
    this.size = fstatSync(this.fd).size;
  }

  write(chunk: Buffer | string): void {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (this.closed) return;
    try {
      if (this.fd < 0) this.reopen();
      else if (this.size > 0 && this.size + buf.length > this.maxBytes) this.rotate();
      writeSync(this.fd, buf);
      this.size += buf.length;
    } catch {
      // A full disk, or a log directory removed under the Root, must not take it down: the line is
      // lost, and the next write tries again (rotate reopens the file by name).
    }
  }

  /**
   * The cell this log belongs to: set, every line carries it — `[<stream> <time> <cell>] <text>`
   * (see parseLogLine) — and the Root's notes are stream `root`.
   */
  cell = '';

  /** A line from the Root itself (spawn, exit, restart), timestamped. */
  note(line: string): void {
    this.write(`[root ${new Date().toISOString()}${this.cell === '' ? '' : ` ${this.cell}`}] ${line}\n`);
  }

  /** One line of a cell's output: the prefix, the bytes exactly as the cell wrote them, a newline. */
  line(stream: LogStream, bytes: Buffer): void {
    const prefix = Buffer.from(`[${stream} ${new Date().toISOString()} ${this.cell}] `);
    this.write(Buffer.concat([prefix, bytes, NEWLINE]));
  }

  /** Opens the file by name again (after a failed rotation, or a directory removed under the Root). */
  private reopen(): void {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    this.fd = openSync(this.path, 'a', 0o600);
    this.size = fstatSync(this.fd).size;
  }

  private rotate(): void {
    const fd = this.fd;
    // Never left pointing at a closed descriptor, whose number the process may hand to another file.
    this.fd = -1;
    closeSync(fd);
    rmSync(`${this.path}.${this.keep}`, { force: true });
    for (let i = this.keep - 1; i >= 1; i--) {
      if (existsSync(`${this.path}.${i}`)) renameSync(`${this.path}.${i}`, `${this.path}.${i + 1}`);
    }
    if (existsSync(this.path)) renameSync(this.path, `${this.path}.1`);
    this.reopen();
  }

  close(): void {
    this.closed = true;
    if (this.fd < 0) return;
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
  }
}

/** The last `lines` lines of a file (reads at most the last 256 KiB). */
export function tailLines(path: string, lines: number): string[] {
  if (lines <= 0) return [];
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return [];
  }
  try {
    const size = statSync(path).size;
    const len = Math.min(size, 256 * 1024);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    const all = buf.toString('utf8').split('\n');
    if (all.at(-1) === '') all.pop();
    return all.slice(-lines);
  } finally {
    closeSync(fd);
  }
}
