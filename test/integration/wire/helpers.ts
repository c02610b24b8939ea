import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  decodeErrorPayload,
  encodeFrame,
  encodeHandshake,
  FrameDecoder,
  FrameType,
  PROTOCOL_VERSION,
} from '../../../src/frame/index.js';

export const ECHO_CELL = fileURLToPath(new URL('./fixtures/echo-cell.js', import.meta.url));

export function tempSocketDir(): string {
  return mkdtempSync(join(tmpdir(), 'cell-wire-'));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface RunningCell {
  child: ChildProcess;
  pid: number;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Starts the echo cell in its own process and waits for its "ready" line. */
export function startCell(socketDir: string, env: Record<string, string> = {}): Promise<RunningCell> {
  const child = spawn(process.execPath, [ECHO_CELL], {
    env: { ...process.env, CELL_SOCKET_DIR: socketDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('ready')) resolve({ child, pid: child.pid!, stderr: () => err, exited });
    });
    exited.then((code) => reject(new Error(`echo cell exited with ${code}: ${err}`)));
  });
}

export async function stopCell(cell: RunningCell | undefined): Promise<void> {
  if (cell === undefined || cell.child.exitCode !== null || cell.child.signalCode !== null) return;
  cell.child.kill('SIGKILL');
  await cell.exited;
}

export interface RawFrame {
  type: number;
  method: number;
  id: number;
  payload: Buffer;
}

export interface HelloOptions {
  /** The largest frame this client accepts (0: the default). */
  maxFrame?: number;
  /** Handshake flag bits (§ 2.3). */
  flags?: number;
  /** Bytes after the service name. */
  trailing?: Uint8Array;
}

/** A HELLO frame as a client would write it, with the knobs the protocol tests turn. */
export function helloFrame(fingerprint: bigint, name = 'echo', options: HelloOptions = {}): Buffer {
  const payload = encodeHandshake({
    version: PROTOCOL_VERSION,
    fingerprint,
    name,
    maxFrame: options.maxFrame ?? 0,
    maxInFlight: 0,
    pid: process.pid,
  });
  payload.writeUInt16LE(options.flags ?? 0, 6);
  return encodeFrame(FrameType.HELLO, 0, 0, Buffer.concat([payload, options.trailing ?? new Uint8Array(0)]));
}

/** A hand-driven client for protocol-abuse tests: raw bytes out, decoded frames in. */
export class RawClient {
  readonly socket: Socket;
  readonly frames: RawFrame[] = [];
  closed = false;
  private waiters: Array<() => void> = [];

  private constructor(socket: Socket) {
    this.socket = socket;
    const decoder = new FrameDecoder({
      onFrame: (type, _f, method, id, bytes, start, end) => {
        this.frames.push({ type, method, id, payload: Buffer.from(bytes.subarray(start, end)) });
        this.wake();
      },
    });
    socket.on('data', (c: Buffer) => decoder.push(c));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static connect(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect(path);
      s.once('error', reject);
      s.once('connect', () => resolve(new RawClient(s)));
    });
  }

  hello(fingerprint: bigint, name = 'echo', options: HelloOptions = {}): void {
    this.socket.write(helloFrame(fingerprint, name, options));
  }

  request(method: number, id: number, payload: Uint8Array): void {
    this.socket.write(encodeFrame(FrameType.REQUEST, method, id, payload));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Waits (bounded) until `pred` holds over what was received. */
  async until(pred: () => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error('timed out waiting for frames');
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  errorOf(id: number): { code: string; message: string } | undefined {
    const f = this.frames.find((x) => x.type === FrameType.ERROR && x.id === id);
    return f === undefined ? undefined : decodeErrorPayload(f.payload, 0, f.payload.length);
  }
}

/** Polls `pred` every 20 ms for up to `timeoutMs`. */
export async function waitFor(pred: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
