import { dirname } from 'node:path';
import { CellError } from '../../errors/index.js';
import type { WalFile, WalFs } from './fs.js';

/** One file's bytes: what a datasync made durable, and the writes since (which a crash may lose or tear).
 * Appends go into a buffer that grows by doubling, and the durable bytes are a prefix of it until a
 * truncate cuts into them, so a long log costs no copy of the whole file per write or per sync. */
class Inode {
  private buf = new Uint8Array(0);
  private len = 0;
  private durableLen = 0;
  /** The durable bytes when they are no longer a prefix of `buf` (a truncate cut into them). */
  private durableCopy: Uint8Array | null = null;
  unsynced: { off: number; len: number }[] = [];

  get current(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }

  get durable(): Uint8Array {
    return this.durableCopy ?? this.buf.subarray(0, this.durableLen);
  }

  append(data: Uint8Array): number {
    const off = this.len;
    if (off + data.byteLength > this.buf.byteLength) {
      const next = new Uint8Array(Math.max(off + data.byteLength, this.buf.byteLength * 2, 4096));
      next.set(this.buf.subarray(0, off));
      this.buf = next;
    }
    this.buf.set(data, off);
    this.len = off + data.byteLength;
    this.unsynced.push({ off, len: data.byteLength });
    return off;
  }

  sync(): void {
    this.durableCopy = null;
    this.durableLen = this.len;
    this.unsynced = [];
  }

  truncate(length: number): void {
    if (length < this.durableLen && !this.durableCopy) this.durableCopy = this.buf.slice(0, this.durableLen);
    this.len = Math.min(length, this.len);
    this.unsynced = this.unsynced.filter((w) => w.off + w.len <= length);
  }

  /** Both durable and current become `bytes` (a file as found after a crash). */
  reset(bytes: Uint8Array): void {
    this.buf = bytes.slice();
    this.len = bytes.byteLength;
    this.sync();
  }

  flip(offset: number): void {
    this.buf[offset] ^= 0xff;
    this.sync();
  }
}

export type CrashMode = 'clean' | 'torn';

/**
 * A simulated disk with the crash semantics of SQLite's crash VFS: data written since the last
 * datasync may, at a crash, land intact, be lost (zeros or a shorter file) or be garbage; names
 * created, renamed or unlinked since the last directory fsync revert. `crashAfter` makes the n-th
 * mutating operation (and every later one) fail as if the power went out; `failSyncAt` makes the
 * n-th datasync fail with EIO.
 */
export class SimDisk implements WalFs {
  private names = new Map<string, Inode>();
  private durableNames = new Map<string, Inode>();
  private dirs = new Set<string>(['/']);
  /** Mutating operations so far (write, datasync, create, rename, unlink, truncate, dir fsync). */
  ops = 0;
  syncs = 0;
  crashAfter = Number.POSITIVE_INFINITY;
  failSyncAt = Number.POSITIVE_INFINITY;
  crashed = false;
  /** Every mutating operation, in order, for tests that check ordering (e.g. dir fsync before ack). */
  readonly trace: string[] = [];

  private op(what: string): void {
    if (this.crashed || this.ops >= this.crashAfter) {
      this.crashed = true;
      throw new CellError('E_WAL_IO', `simulated power loss before ${what}`);
    }
    this.ops++;
    this.trace.push(what);
  }

  async mkdirp(dir: string): Promise<void> {
    this.dirs.add(dir);
  }

  async list(dir: string): Promise<string[]> {
    const out: string[] = [];
    for (const p of this.names.keys()) if (dirname(p) === dir) out.push(p.slice(dir.length + 1));
    return out.sort();
  }

  async readFile(path: string): Promise<Uint8Array> {
    const f = this.names.get(path);
    if (!f) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return f.current.slice();
  }

  async openAppend(path: string, create: boolean): Promise<WalFile> {
    let f = this.names.get(path);
    if (create) {
      if (f) throw Object.assign(new Error(`EEXIST: ${path}`), { code: 'EEXIST' });
      this.op(`create ${path}`);
      f = new Inode();
      this.names.set(path, f);
    } else if (!f) {
      throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    }
    const inode = f;
    return {
      write: async (data) => {
        this.op(`write ${path} ${data.byteLength}`);
        inode.append(data);
      },
      datasync: async () => {
        this.op(`datasync ${path}`);
        this.syncs++;
        if (this.syncs >= this.failSyncAt) {
          throw Object.assign(new Error(`EIO: fdatasync ${path}`), { code: 'EIO' });
        }
        inode.sync();
      },
      close: async () => {},
    };
  }

  async truncate(path: string, length: number): Promise<void> {
    const f = this.names.get(path);
    if (!f) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    this.op(`truncate ${path} ${length}`);
    f.truncate(length);
  }

  async rename(from: string, to: string): Promise<void> {
    const f = this.names.get(from);
    if (!f) throw Object.assign(new Error(`ENOENT: ${from}`), { code: 'ENOENT' });
    this.op(`rename ${from} ${to}`);
    this.names.delete(from);
    this.names.set(to, f);
  }

  async unlink(path: string): Promise<void> {
    if (!this.names.has(path)) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    this.op(`unlink ${path}`);
    this.names.delete(path);
  }

  async fsyncDir(dir: string): Promise<void> {
    this.op(`fsyncdir ${dir}`);
    for (const p of [...this.durableNames.keys()]) if (dirname(p) === dir) this.durableNames.delete(p);
    for (const [p, f] of this.names) if (dirname(p) === dir) this.durableNames.set(p, f);
  }

  /**
   * The disk as it would be found after the power came back. 'clean' keeps exactly the synced data;
   * 'torn' lets each unsynced write land intact, vanish (zeros) or turn to garbage, and picks a file
   * size anywhere between the synced and the written length.
   */
  afterCrash(random: () => number, mode: CrashMode = 'torn'): SimDisk {
    const d = new SimDisk();
    d.dirs = new Set(this.dirs);
    const copies = new Map<Inode, Inode>();
    for (const [p, f] of this.durableNames) {
      let c = copies.get(f);
      if (!c) {
        c = new Inode();
        let bytes = f.durable.slice();
        if (mode === 'torn' && f.unsynced.length > 0) {
          const full = f.current.byteLength;
          const size = f.durable.byteLength + Math.floor(random() * (full - f.durable.byteLength + 1));
          bytes = new Uint8Array(size);
          bytes.set(f.durable.subarray(0, Math.min(size, f.durable.byteLength)));
          for (const w of f.unsynced) {
            const r = random();
            const end = Math.min(w.off + w.len, size);
            if (end <= w.off) continue;
            if (r < 0.5) bytes.set(f.current.subarray(w.off, end), w.off);
            else if (r < 0.75) {
              for (let i = w.off; i < end; i++) bytes[i] = Math.floor(random() * 256);
            }
            // else: lost, reads back as zeros
          }
        }
        c.reset(bytes);
        copies.set(f, c);
      }
      d.names.set(p, c);
      d.durableNames.set(p, c);
    }
    return d;
  }

  /** Flips one byte of a file in place (latent corruption, for the refuse-to-start tests). */
  corrupt(path: string, offset: number): void {
    const f = this.names.get(path);
    if (!f) throw new Error(`no file ${path}`);
    f.flip(offset);
  }

  size(path: string): number {
    return this.names.get(path)?.current.byteLength ?? -1;
  }
}
