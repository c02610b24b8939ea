import { CellError } from '../errors/index.js';
import { fingerprintOf } from './genome.js';
import { bytesOfLast, dataViewOf, InvalidValue, rt } from './runtime.js';
import type { Codec, Genome } from './types.js';

/**
 * The schema compiler. Every wire type is a `Node`; fixed-width nodes also hand their parents code
 * snippets so scalars are read and written inline, at offsets known when the schema is compiled.
 * Each node compiles (with `new Function`, once) five functions over its standalone encoding:
 *   w(value, u8, dv, pos) → end     write (validates, throws InvalidValue)
 *   m(value) → bytes                upper bound of the size (3 bytes per UTF-16 unit of strings)
 *   s(value) → bytes                exact size
 *   r(u8, dv, pos, len) → value     decode (validates, throws E_DECODE)
 *   v(u8, dv, pos, len) → view      lazy view (validates framing, throws E_DECODE)
 * `u8` and `dv` always span a whole ArrayBuffer and positions are absolute, so one cached DataView
 * serves every message carved from the same buffer.
 */

type WriteFn = (value: unknown, u8: Uint8Array, dv: DataView, pos: number) => number;
type SizeFn = (value: unknown) => number;
type ReadFn = (u8: Uint8Array, dv: DataView, pos: number, len: number) => unknown;

export interface Fns {
  w: WriteFn;
  m: SizeFn;
  s: SizeFn;
  r: ReadFn;
  v: ReadFn;
}

/** Collects the values generated code refers to (child functions, classes) as `d0, d1, …`. */
export class Ctx {
  readonly deps: unknown[] = [];
  private n = 0;
  ref(value: unknown): string {
    let i = this.deps.indexOf(value);
    if (i < 0) {
      i = this.deps.length;
      this.deps.push(value);
    }
    return `d${i}`;
  }
  tmp(prefix = 't'): string {
    return `${prefix}${this.n++}`;
  }
  prelude(): string {
    return this.deps.map((_, i) => `const d${i} = deps[${i}];`).join('\n');
  }
}

export interface Node {
  readonly genome: Genome;
  /** Inline width in a parent's fixed section; -1 for variable-size types, which take an 8-byte slot. */
  readonly width: number;
  readonly fns: Fns;
  /** Fixed-width only: JS condition true when `x` is not a valid value. */
  check?(ctx: Ctx, x: string): string;
  /** Fixed-width only: statements writing the (checked) value `x` at `pos`. */
  write?(ctx: Ctx, x: string, pos: string): string;
  /** Fixed-width only: expression reading the value at `pos`. */
  read?(ctx: Ctx, pos: string): string;
  /** Fixed-width only: expression giving the view at `pos`. */
  view?(ctx: Ctx, pos: string): string;
  /** Slow path: a message naming what is wrong with `value`, or undefined when it is valid. */
  explain(value: unknown, path: string): string | undefined;
}

export function compileFns(ctx: Ctx, body: string): Fns {
  const src = `'use strict';\n${ctx.prelude()}\n${body}\nreturn { w, m, s, r, v };`;
  try {
    return new Function('rt', 'deps', src)(rt, ctx.deps) as Fns;
  } catch (err) {
    throw new CellError('E_INTERNAL', `schema compiler produced invalid code: ${(err as Error).message}`, {
      details: { src },
    });
  }
}

/** Standalone functions of a fixed-width node, built from its inline snippets. */
export function fixedFns(node: Omit<Node, 'fns'>, label: string): Fns {
  const ctx = new Ctx();
  const W = node.width;
  const body = `
function w(x, u8, dv, p) { if (${node.check!(ctx, 'x')}) rt.invalid(); ${node.write!(ctx, 'x', 'p')} return p + ${W}; }
function m(x) { return ${W}; }
function s(x) { return ${W}; }
function r(u8, dv, p, len) { if (len !== ${W}) rt.decodeError(${JSON.stringify(`${label} must be ${W} bytes`)}); return ${node.read!(ctx, 'p')}; }
function v(u8, dv, p, len) { if (len !== ${W}) rt.decodeError(${JSON.stringify(`${label} must be ${W} bytes`)}); return ${node.view!(ctx, 'p')}; }`;
  return compileFns(ctx, body);
}

/** The public face of a node: entry points that validate arguments and translate failures. */
export class CompiledCodec<T, V> implements Codec<T, V> {
  readonly genome: Genome;
  readonly fingerprint: bigint;
  /** @internal */
  readonly node: Node;
  private readonly w: WriteFn;
  private readonly m: SizeFn;
  private readonly s: SizeFn;
  private readonly r: ReadFn;
  private readonly v: ReadFn;

  constructor(node: Node) {
    this.node = node;
    this.genome = node.genome;
    this.fingerprint = fingerprintOf(node.genome);
    this.w = node.fns.w;
    this.m = node.fns.m;
    this.s = node.fns.s;
    this.r = node.fns.r;
    this.v = node.fns.v;
  }

  get kind(): string {
    return this.genome.kind;
  }

  sizeOf(value: T): number {
    let size: number;
    try {
      size = this.s(value);
    } catch (err) {
      throw this.encodeFailure(value, err);
    }
    if (!(size >= 0)) throw this.encodeFailure(value, undefined);
    return size;
  }

  encode(value: T): Uint8Array {
    let end: number;
    try {
      const max = this.m(value);
      if (max > scratch.length) growScratch(max);
      end = this.w(value, scratch, scratchView, 0);
    } catch (err) {
      throw this.encodeFailure(value, err);
    }
    const out = Buffer.allocUnsafe(end);
    out.set(scratch.subarray(0, end));
    return out;
  }

  encodeInto(value: T, target: Uint8Array, offset: number): number {
    if (!(target instanceof Uint8Array)) {
      throw new CellError('E_ENCODE', 'encodeInto target must be a Uint8Array.');
    }
    if (!Number.isInteger(offset) || offset < 0 || offset > target.length) {
      throw new CellError('E_ENCODE', `encodeInto offset ${offset} is outside the target (length ${target.length}).`);
    }
    let end: number;
    try {
      const room = target.length - offset;
      if (!(this.m(value) <= room)) {
        const exact = this.s(value);
        if (exact > room) {
          throw new CellError('E_ENCODE', `value needs ${exact} bytes but only ${room} remain in the target.`, {
            fix: 'use sizeOf() to size the buffer before encodeInto().',
            details: { needed: exact, room },
          });
        }
      }
      const dv = dataViewOf(target.buffer);
      const base = target.byteOffset;
      end = this.w(value, bytesOfLast(), dv, base + offset) - base;
    } catch (err) {
      if (err instanceof CellError) throw err;
      throw this.encodeFailure(value, err);
    }
    return end;
  }

  view(bytes: Uint8Array, offset = 0, length?: number): V {
    const len = checkRange(bytes, offset, length);
    const dv = dataViewOf(bytes.buffer);
    return this.v(bytesOfLast(), dv, bytes.byteOffset + offset, len) as V;
  }

  decode(bytes: Uint8Array, offset = 0, length?: number): T {
    const len = checkRange(bytes, offset, length);
    const dv = dataViewOf(bytes.buffer);
    return this.r(bytesOfLast(), dv, bytes.byteOffset + offset, len) as T;
  }

  private encodeFailure(value: unknown, err: unknown): CellError {
    const what = this.node.explain(value, '$');
    if (what !== undefined) {
      return new CellError('E_ENCODE', `cannot encode ${what}.`, {
        fix: 'pass a value matching the schema.',
        cause: err instanceof InvalidValue ? undefined : err,
      });
    }
    return new CellError(
      'E_ENCODE',
      `cannot encode value: ${(err as Error | undefined)?.message ?? 'size is not a number'}.`,
      {
        cause: err,
      },
    );
  }
}

function checkRange(bytes: Uint8Array, offset: number, length: number | undefined): number {
  if (!(bytes instanceof Uint8Array)) rt.decodeError('input is not a Uint8Array');
  if (!Number.isInteger(offset) || offset < 0 || offset > bytes.length) rt.decodeError('offset outside the input');
  const len = length === undefined ? bytes.length - offset : length;
  if (!Number.isInteger(len) || len < 0 || len > bytes.length - offset) rt.decodeError('length outside the input');
  return len;
}

let scratch = new Uint8Array(64 * 1024);
let scratchView = new DataView(scratch.buffer);
function growScratch(max: number): void {
  let size = scratch.length;
  while (size < max) size *= 2;
  scratch = new Uint8Array(size);
  scratchView = new DataView(scratch.buffer);
}
