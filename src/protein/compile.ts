import { CellError } from '../errors/index.js';
import { fingerprintOf } from './genome.js';
import { InvalidValue, rt } from './runtime.js';
import type { Codec, Genome } from './types.js';

/**
 * The schema compiler. Every wire type is a `Node`; fixed-width nodes also hand their parents code
 * snippets so scalars are read and written inline, at offsets known when the schema is compiled.
 * Each node compiles (with `new Function`, once) five functions over its standalone encoding:
 *   w(value, u8, pos) → end         write (validates, throws InvalidValue)
 *   m(value) → bytes                upper bound of the size (3 bytes per UTF-16 unit of strings)
 *   s(value) → bytes                exact size
 *   r(u8, pos, len) → value         decode (validates, throws E_DECODE)
 *   v(u8, pos, len) → view          lazy view (validates framing, throws E_DECODE)
 * Positions are indexes into the caller's Uint8Array; multi-byte values are assembled from bytes.
 */

type WriteFn = (value: unknown, u8: Uint8Array, pos: number) => number;
type SizeFn = (value: unknown) => number;
type ReadFn = (u8: Uint8Array, pos: number, len: number) => unknown;

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
function w(x, u8, p) { if (${node.check!(ctx, 'x')}) rt.invalid(); ${node.write!(ctx, 'x', 'p')} return p + ${W}; }
function m(x) { return ${W}; }
function s(x) { return ${W}; }
function r(u8, p, len) { if (len !== ${W}) rt.decodeError(${JSON.stringify(`${label} must be ${W} bytes`)}); return ${node.read!(ctx, 'p')}; }
function v(u8, p, len) { if (len !== ${W}) rt.decodeError(${JSON.stringify(`${label} must be ${W} bytes`)}); return ${node.view!(ctx, 'p')}; }`;
  return compileFns(ctx, body);
}

/** The public face of a node: entry points that validate arguments and translate failures. */
export class CompiledCodec<T, V> implements Codec<T, V> {
  readonly genome: Genome;
  readonly fingerprint: bigint;
  /** @internal */
  readonly node: Node;
  readonly encode: (value: T) => Uint8Array;
  readonly encodeInto: (value: T, target: Uint8Array, offset: number) => number;
  readonly view: (bytes: Uint8Array, offset?: number, length?: number) => V;
  readonly decode: (bytes: Uint8Array, offset?: number, length?: number) => T;
  private readonly s: SizeFn;

  constructor(node: Node) {
    this.node = node;
    this.genome = node.genome;
    this.fingerprint = fingerprintOf(node.genome);
    this.s = node.fns.s;
    // The entry points are generated per codec too, so each one calls its own w/m/r/v directly and
    // V8 can inline the whole path instead of dispatching through a shared, megamorphic method.
    const entries = new Function(
      'w',
      'm',
      's',
      'r',
      'v',
      'checkRange',
      'slab',
      'fail',
      'tooSmall',
      `'use strict';
return {
  view(bytes, offset, length) {
    if (offset === undefined) offset = 0;
    return v(bytes, offset, checkRange(bytes, offset, length));
  },
  decode(bytes, offset, length) {
    if (offset === undefined) offset = 0;
    return r(bytes, offset, checkRange(bytes, offset, length));
  },
  encode(value) {
    let u8, start, end;
    try {
      const max = m(value);
      u8 = slab.u8;
      start = slab.pos;
      if (max > u8.length - start) { slab.renew(max); u8 = slab.u8; start = 0; }
      end = w(value, u8, start);
    } catch (err) {
      throw fail(value, err);
    }
    slab.pos = end;
    return u8.subarray(start, end);
  },
  encodeInto(value, target, offset) {
    if (!(target instanceof Uint8Array) || !(offset >= 0 && offset <= target.length) || Math.floor(offset) !== offset) {
      tooSmall(value, target, offset);
    }
    try {
      if (!(m(value) <= target.length - offset)) tooSmall(value, target, offset);
      return w(value, target, offset);
    } catch (err) {
      throw fail(value, err);
    }
  },
};`,
    )(
      node.fns.w,
      node.fns.m,
      node.fns.s,
      node.fns.r,
      node.fns.v,
      checkRange,
      slab,
      (value: unknown, err: unknown) => (err instanceof CellError ? err : this.encodeFailure(value, err)),
      (value: unknown, target: unknown, offset: unknown) => this.checkRoom(value, target, offset),
    ) as Pick<CompiledCodec<T, V>, 'view' | 'decode' | 'encode' | 'encodeInto'>;
    this.view = entries.view;
    this.decode = entries.decode;
    this.encode = entries.encode;
    this.encodeInto = entries.encodeInto;
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

  /** Slow path of encodeInto: bad arguments, or the 3-bytes-per-character estimate did not fit. */
  private checkRoom(value: unknown, target: unknown, offset: unknown): void {
    if (!(target instanceof Uint8Array)) {
      throw new CellError('E_ENCODE', 'encodeInto target must be a Uint8Array.');
    }
    if (typeof offset !== 'number' || !Number.isInteger(offset) || offset < 0 || offset > target.length) {
      throw new CellError('E_ENCODE', `encodeInto offset ${offset} is outside the target (length ${target.length}).`);
    }
    const room = target.length - offset;
    const exact = this.sizeOf(value as T);
    if (exact > room) {
      throw new CellError('E_ENCODE', `value needs ${exact} bytes but only ${room} remain in the target.`, {
        fix: 'use sizeOf() to size the buffer before encodeInto().',
        details: { needed: exact, room },
      });
    }
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
  const avail = bytes.length - offset;
  if (!(offset >= 0 && avail >= 0) || Math.floor(offset) !== offset) rt.decodeError('offset outside the input');
  if (length === undefined) return avail;
  if (!(length >= 0 && length <= avail) || Math.floor(length) !== length) rt.decodeError('length outside the input');
  return length;
}

/**
 * encode() writes into a shared slab and returns a subarray of it, like Node's Buffer pool: no copy
 * and no second pass to size strings exactly. A value larger than the slab gets a slab of its own
 * size. Messages keep their slab alive until all of them are collected.
 */
const SLAB_SIZE = 64 * 1024;
const slab = {
  u8: new Uint8Array(SLAB_SIZE),
  pos: 0,
  renew(max: number): void {
    slab.u8 = new Uint8Array(Math.max(max, SLAB_SIZE));
    slab.pos = 0;
  },
};

/** True for every codec made by `t`, `protein` or `t.enum` (what `rpc()` and struct fields accept). */
export function isCodec(value: unknown): value is CompiledCodec<unknown, unknown> {
  return value instanceof CompiledCodec;
}
