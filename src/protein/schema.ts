import { CellError } from '../errors/index.js';
import { CompiledCodec, Ctx, compileFns, fixedFns, type Node } from './compile.js';
import { rt } from './runtime.js';
import type {
  AnyCodec,
  Codec,
  EnumCodec,
  Fields,
  Infer,
  InferView,
  OptionMarker,
  SeqView,
  StructCodec,
  Variants,
} from './types.js';

/** Largest fixed array length; keeps generated code and per-message loops bounded. */
const MAX_ARRAY_LENGTH = 1 << 20;
const NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const RESERVED = new Set(['constructor', '__proto__', 'prototype', 'toJSON']);

function schemaError(message: string, fix: string): CellError {
  return new CellError('E_SCHEMA_INVALID', message, { fix });
}

function checkName(what: string, name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name) || RESERVED.has(name)) {
    throw schemaError(
      `invalid ${what} name ${JSON.stringify(name)}.`,
      'use 1-64 letters, digits or "_", starting with a letter or "_" (not constructor, __proto__, prototype, toJSON).',
    );
  }
  return name;
}

function nodeOf(codec: unknown, where: string): Node {
  if (codec instanceof CompiledCodec) return codec.node;
  throw schemaError(`${where} is not a protein type.`, 'use a type from `t` or a struct made with protein().');
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value instanceof Uint8Array) return `bytes of length ${value.length}`;
  if (typeof value === 'string')
    return `string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  if (typeof value === 'bigint') return `bigint ${value}n`;
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
}

// ---------------------------------------------------------------------------------------------
// Scalars

interface ScalarSpec {
  kind: string;
  width: number;
  check: (x: string) => string;
  write: (x: string, p: string) => string;
  read: (p: string) => string;
  valid: (v: unknown) => boolean;
  expect: string;
}

function scalar<T>(spec: ScalarSpec): Codec<T, T> {
  const partial = {
    genome: { kind: spec.kind },
    width: spec.width,
    check: (_: Ctx, x: string) => spec.check(x),
    write: (_: Ctx, x: string, p: string) => spec.write(x, p),
    read: (_: Ctx, p: string) => spec.read(p),
    view: (_: Ctx, p: string) => spec.read(p),
    explain: (v: unknown, path: string) =>
      spec.valid(v) ? undefined : `${path}: expected ${spec.expect}, got ${describe(v)}`,
  };
  const node: Node = { ...partial, fns: fixedFns(partial, spec.kind) };
  return new CompiledCodec<T, T>(node);
}

const isInt = (v: unknown, lo: number, hi: number) =>
  typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;
const isBig = (v: unknown, lo: bigint, hi: bigint) => typeof v === 'bigint' && v >= lo && v <= hi;

const bool = scalar<boolean>({
  kind: 'bool',
  width: 1,
  check: (x) => `typeof ${x} !== 'boolean'`,
  write: (x, p) => `u8[${p}] = ${x} ? 1 : 0;`,
  read: (p) => `rt.readBool(u8[${p}])`,
  valid: (v) => typeof v === 'boolean',
  expect: 'a boolean',
});
const u8 = scalar<number>({
  kind: 'u8',
  width: 1,
  check: (x) => `(${x} & 255) !== ${x}`,
  write: (x, p) => `u8[${p}] = ${x};`,
  read: (p) => `u8[${p}]`,
  valid: (v) => isInt(v, 0, 255),
  expect: 'an integer in 0..255',
});
const i8 = scalar<number>({
  kind: 'i8',
  width: 1,
  check: (x) => `((${x} << 24) >> 24) !== ${x}`,
  write: (x, p) => `u8[${p}] = ${x};`,
  read: (p) => `((u8[${p}] << 24) >> 24)`,
  valid: (v) => isInt(v, -128, 127),
  expect: 'an integer in -128..127',
});
const u16 = scalar<number>({
  kind: 'u16',
  width: 2,
  check: (x) => `(${x} & 65535) !== ${x}`,
  write: (x, p) => `u8[${p}] = ${x}; u8[${p} + 1] = ${x} >>> 8;`,
  read: (p) => `(u8[${p}] | (u8[${p} + 1] << 8))`,
  valid: (v) => isInt(v, 0, 65535),
  expect: 'an integer in 0..65535',
});
const i16 = scalar<number>({
  kind: 'i16',
  width: 2,
  check: (x) => `((${x} << 16) >> 16) !== ${x}`,
  write: (x, p) => `u8[${p}] = ${x}; u8[${p} + 1] = ${x} >>> 8;`,
  read: (p) => `(((u8[${p}] | (u8[${p} + 1] << 8)) << 16) >> 16)`,
  valid: (v) => isInt(v, -32768, 32767),
  expect: 'an integer in -32768..32767',
});
const u32 = scalar<number>({
  kind: 'u32',
  width: 4,
  check: (x) => `(${x} >>> 0) !== ${x}`,
  write: (x, p) => `rt.w32(u8, ${p}, ${x});`,
  read: (p) => `rt.r32(u8, ${p})`,
  valid: (v) => isInt(v, 0, 0xffffffff),
  expect: 'an integer in 0..4294967295',
});
const i32 = scalar<number>({
  kind: 'i32',
  width: 4,
  check: (x) => `(${x} | 0) !== ${x}`,
  write: (x, p) => `rt.w32(u8, ${p}, ${x});`,
  read: (p) => `rt.ri32(u8, ${p})`,
  valid: (v) => isInt(v, -0x80000000, 0x7fffffff),
  expect: 'an integer in -2147483648..2147483647',
});
const f32 = scalar<number>({
  kind: 'f32',
  width: 4,
  check: (x) => `typeof ${x} !== 'number'`,
  write: (x, p) => `rt.wf32(u8, ${p}, ${x});`,
  read: (p) => `rt.rf32(u8, ${p})`,
  valid: (v) => typeof v === 'number',
  expect: 'a number',
});
const f64 = scalar<number>({
  kind: 'f64',
  width: 8,
  check: (x) => `typeof ${x} !== 'number'`,
  write: (x, p) => `rt.wf64(u8, ${p}, ${x});`,
  read: (p) => `rt.rf64(u8, ${p})`,
  valid: (v) => typeof v === 'number',
  expect: 'a number',
});
const u64 = scalar<bigint>({
  kind: 'u64',
  width: 8,
  check: (x) => `typeof ${x} !== 'bigint' || ${x} < 0n || ${x} > rt.U64_MAX`,
  write: (x, p) => `rt.wu64(u8, ${p}, ${x});`,
  read: (p) => `rt.ru64(u8, ${p})`,
  valid: (v) => isBig(v, 0n, 0xffff_ffff_ffff_ffffn),
  expect: 'a bigint in 0..2^64-1',
});
const i64 = scalar<bigint>({
  kind: 'i64',
  width: 8,
  check: (x) => `typeof ${x} !== 'bigint' || ${x} < rt.I64_MIN || ${x} > rt.I64_MAX`,
  write: (x, p) => `rt.wi64(u8, ${p}, ${x});`,
  read: (p) => `rt.ri64(u8, ${p})`,
  valid: (v) => isBig(v, -(2n ** 63n), 2n ** 63n - 1n),
  expect: 'a bigint in -2^63..2^63-1',
});
// uint / int: JS numbers in the safe-integer range, stored as 8-byte little-endian two's complement,
// so they are wire-identical to u64 / i64 and readers reject anything outside the safe range.
const uint = scalar<number>({
  kind: 'uint',
  width: 8,
  check: (x) => `!(Number.isSafeInteger(${x}) && ${x} >= 0)`,
  write: (x, p) => `rt.w32(u8, ${p}, ${x} >>> 0); rt.w32(u8, ${p} + 4, (${x} / 4294967296) >>> 0);`,
  read: (p) => `rt.readUint(u8, ${p})`,
  valid: (v) => Number.isSafeInteger(v) && (v as number) >= 0,
  expect: 'a safe integer >= 0',
});
const int = scalar<number>({
  kind: 'int',
  width: 8,
  check: (x) => `!Number.isSafeInteger(${x})`,
  write: (x, p) => `rt.w32(u8, ${p}, ${x} >>> 0); rt.w32(u8, ${p} + 4, Math.floor(${x} / 4294967296) | 0);`,
  read: (p) => `rt.readInt(u8, ${p})`,
  valid: (v) => Number.isSafeInteger(v),
  expect: 'a safe integer',
});
const unit = scalar<undefined>({
  kind: 'unit',
  width: 0,
  check: (x) => `${x} !== undefined && ${x} !== null`,
  write: () => '',
  read: () => 'undefined',
  valid: (v) => v === undefined || v === null,
  expect: 'undefined',
});

// ---------------------------------------------------------------------------------------------
// Strings and bytes

function stringCodec(): Codec<string, string> {
  const ctx = new Ctx();
  const node: Node = {
    genome: { kind: 'string' },
    width: -1,
    fns: compileFns(
      ctx,
      `
function w(x, u8, p) { if (typeof x !== 'string') rt.invalid(); return rt.writeString(x, u8, p); }
function m(x) { return 3 * x.length; }
function s(x) { return rt.utf8Length(x); }
function r(u8, p, len) { return rt.readString(u8, p, len); }
const v = r;`,
    ),
    explain: (v, path) => (typeof v === 'string' ? undefined : `${path}: expected a string, got ${describe(v)}`),
  };
  return new CompiledCodec(node);
}

function bytesCodec(): Codec<Uint8Array, Uint8Array> {
  const ctx = new Ctx();
  const node: Node = {
    genome: { kind: 'bytes' },
    width: -1,
    fns: compileFns(
      ctx,
      `
function w(x, u8, p) {
  if (!(x instanceof Uint8Array)) rt.invalid();
  const n = x.length;
  if (n < 32) { for (let i = 0; i < n; i++) u8[p + i] = x[i]; } else rt.writeBytes(x, u8, p);
  return p + n;
}
function m(x) { return x.length; }
const s = m;
function r(u8, p, len) { return rt.copyBytes(u8, p, len); }
function v(u8, p, len) { return rt.viewBytes(u8, p, len); }`,
    ),
    explain: (v, path) => (v instanceof Uint8Array ? undefined : `${path}: expected a Uint8Array, got ${describe(v)}`),
  };
  return new CompiledCodec(node);
}

// ---------------------------------------------------------------------------------------------
// Sequences: vec (u32 count, elements, heap) and array (elements, heap; length fixed by the schema)

function seqView(child: Node, headerBytes: number, label: string): unknown {
  // One generated class per sequence type keeps `get` monomorphic.
  const c = new Ctx();
  const W = child.width;
  const H = headerBytes;
  let src: string;
  if (W >= 0) {
    src = `return class SeqView {
  constructor(u8, p, len, n) { this.$u = u8; this.$p = p; this.$n = len; this.length = n; }
  get(i) {
    if (!(i >= 0 && i < this.length && Math.floor(i) === i)) this.$outside(i);
    const u8 = this.$u; return ${child.view!(c, `this.$p + ${H} + i * ${W}`)};
  }
  toArray() { const out = []; for (let i = 0; i < this.length; i++) out.push(this.get(i)); return out; }`;
  } else {
    // Decode accepts element slots only as a chain: each inside the range, the first starting at or
    // after the heap (H + n × 8), every other at or after the end of the one before it. A view must
    // accept exactly that, or repeated and overlapping slots let a few bytes of input stand for many
    // elements (one order counted twice; 1 000 copies of one 64 KiB string).
    //
    // Reading in order from element 0 (a loop, iteration) follows the chain itself: `$e` is the end
    // of the last slot read, so get(i) with i = `$i` + 1 checks slot i exactly as decode does, for
    // the price of the range check it needs anyway and two stores; the elements read so far are
    // disjoint, and an overlap shows at the element where decode would stop (measured: reading
    // the neighbours on every get costs a vec(string) loop ~35%, and makes get too large for V8
    // to inline into the caller's loop). Any other read would need the chain from slot 0 (O(i)) for
    // that, so it checks slot i against its two neighbours instead: it starts at or after the end of
    // slot i − 1 (the heap start for i = 0) and ends at or before the start of slot i + 1 (the range
    // end for the last). Each comparison is one link of decode's chain, so no read rejects what
    // decode accepts, and reading every index, in any order, checks every link: a full walk fails
    // exactly when decode does, in O(1) per element.
    //
    // Neighbour checks leave unchecked the links no read touches, so a reader taking every third
    // element could be handed the same bytes again and again. `$left` counts down, from the
    // sequence's length, the bytes such reads hand out (an in-order run is charged when it ends);
    // before they would run out, the whole chain is checked once, as decode does, after which the
    // elements are known to be disjoint and the count restarts from 2^30.
    const cv = c.ref(child.fns.v);
    const bad = JSON.stringify(`${label} element slot out of range or overlapping another`);
    src = `return class SeqView {
  constructor(u8, p, len, n) {
    this.$u = u8; this.$p = p; this.$n = len; this.length = n;
    this.$i = -1; this.$e = ${H} + n * 8; this.$left = len;
  }
  get(i) {
    if (!((i >>> 0) === i && i < this.length)) this.$outside(i);
    const u8 = this.$u, p = this.$p, sl = p + ${H} + i * 8;
    const o = r32(u8, sl), l = r32(u8, sl + 4);
    if (i === this.$i + 1 && o >= this.$e && l <= this.$n - o) {
      this.$i = i; this.$e = o + l;
    } else this.$check(i, o, l);
    return ${cv}(u8, p + o, l);
  }
  /** Any read but the next one in order: slot i against both neighbours, then the byte budget. */
  $check(i, o, l) {
    const u8 = this.$u, n = this.length, len = this.$n, sl = this.$p + ${H} + i * 8;
    const lo = i === 0 ? ${H} + n * 8 : r32(u8, sl - 8) + r32(u8, sl - 4);
    const hi = i + 1 < n ? Math.min(r32(u8, sl + 8), len) : len;
    if (o < lo || l > hi - o) rt.decodeError(${bad});
    if (this.$i !== -2) {
      // the in-order run ends here: its elements lie between the heap start and $e
      this.$left -= this.$e - (${H} + n * 8);
      this.$i = -2;
    }
    if (l > this.$left) this.$chain();
    this.$left -= l;
  }
  /** Checks every slot as decode does; the elements are then disjoint and the budget can grow. */
  $chain() {
    const u8 = this.$u, n = this.length, len = this.$n;
    let sl = this.$p + ${H}, h = ${H} + n * 8;
    for (let i = 0; i < n; i++) {
      const o = r32(u8, sl), l = r32(u8, sl + 4);
      if (o < h || o > len || l > len - o) rt.decodeError(${bad});
      h = o + l; sl += 8;
    }
    this.$left = MAX_BUDGET;
  }
  // Reads every slot, so it walks the chain itself while it builds the elements and, like decode,
  // returns all of them or throws.
  toArray() {
    const u8 = this.$u, p = this.$p, n = this.length, len = this.$n;
    const out = [];
    let sl = p + ${H}, h = ${H} + n * 8;
    for (let i = 0; i < n; i++) {
      const o = r32(u8, sl), l = r32(u8, sl + 4);
      if (o < h || o > len || l > len - o) rt.decodeError(${bad});
      out.push(${cv}(u8, p + o, l));
      h = o + l; sl += 8;
    }
    this.$left = MAX_BUDGET;
    return out;
  }`;
  }
  src = `'use strict';\n${c.prelude()}
const r32 = rt.r32;
// after a whole-chain check: the largest small integer, so the count stays one machine word
const MAX_BUDGET = 0x3fffffff;
${src}
  $outside(i) { throw new RangeError('index ' + i + ' is outside 0..' + this.length); }
  toJSON() { return this.toArray(); }
  [Symbol.for('nodejs.util.inspect.custom')]() { return this.toArray(); }
  *[Symbol.iterator]() { for (let i = 0; i < this.length; i++) yield this.get(i); }
};`;
  return new Function('rt', 'deps', src)(rt, c.deps);
}

function seqBody(ctx: Ctx, child: Node, fixedCount: number | undefined, label: string): string {
  const W = child.width;
  const H = fixedCount === undefined ? 4 : 0;
  const View = ctx.ref(seqView(child, H, label));
  const checkArr =
    fixedCount === undefined
      ? `if (!Array.isArray(x)) rt.invalid(); const n = x.length; rt.w32(u8, p, n);`
      : `if (!Array.isArray(x) || x.length !== ${fixedCount}) rt.invalid(); const n = ${fixedCount};`;
  const readCount =
    fixedCount === undefined
      ? `if (len < 4) rt.decodeError(${JSON.stringify(`${label} shorter than its count`)}); const n = rt.r32(u8, p);`
      : `const n = ${fixedCount};`;
  if (W >= 0) {
    const el = ctx.tmp('e');
    return `
function w(x, u8, p) {
  ${checkArr}
  let q = p + ${H};
  for (let i = 0; i < n; i++) { const ${el} = x[i]; if (${child.check!(ctx, el)}) rt.invalid(); ${child.write!(ctx, el, 'q')} q += ${W}; }
  return q;
}
function m(x) { return ${H} + x.length * ${W}; }
const s = m;
function r(u8, p, len) {
  ${readCount}
  if (n * ${W} !== len - ${H}) rt.decodeError(${JSON.stringify(`${label} length does not match its element count`)});
  const out = [];
  let q = p + ${H};
  for (let i = 0; i < n; i++) { out.push(${child.read!(ctx, 'q')}); q += ${W}; }
  return out;
}
function v(u8, p, len) {
  ${readCount}
  if (n * ${W} !== len - ${H}) rt.decodeError(${JSON.stringify(`${label} length does not match its element count`)});
  return new ${View}(u8, p, len, n);
}`;
  }
  const cw = ctx.ref(child.fns.w);
  const cm = ctx.ref(child.fns.m);
  const cs = ctx.ref(child.fns.s);
  const cr = ctx.ref(child.fns.r);
  return `
function w(x, u8, p) {
  ${checkArr}
  let sl = p + ${H};
  let h = sl + n * 8;
  for (let i = 0; i < n; i++) {
    const e = ${cw}(x[i], u8, h);
    rt.w32(u8, sl, h - p); rt.w32(u8, sl + 4, e - h);
    sl += 8; h = e;
  }
  return h;
}
function m(x) { const n = x.length; let t = ${H} + n * 8; for (let i = 0; i < n; i++) t += ${cm}(x[i]); return t; }
function s(x) { const n = x.length; let t = ${H} + n * 8; for (let i = 0; i < n; i++) t += ${cs}(x[i]); return t; }
function r(u8, p, len) {
  ${readCount}
  if (n > (len - ${H}) / 8) rt.decodeError(${JSON.stringify(`${label} element count exceeds its length`)});
  const end = p + len;
  const out = [];
  let sl = p + ${H};
  let h = sl + n * 8;
  for (let i = 0; i < n; i++) {
    const a = p + rt.r32(u8, sl), l = rt.r32(u8, sl + 4);
    if (a < h || a > end || l > end - a) rt.decodeError(${JSON.stringify(`${label} element slot out of range or overlapping another`)});
    out.push(${cr}(u8, a, l));
    h = a + l; sl += 8;
  }
  return out;
}
function v(u8, p, len) {
  ${readCount}
  if (n > (len - ${H}) / 8) rt.decodeError(${JSON.stringify(`${label} element count exceeds its length`)});
  return new ${View}(u8, p, len, n);
}`;
}

function vec<C extends AnyCodec>(of: C): Codec<Infer<C>[], SeqView<InferView<C>>> {
  const child = nodeOf(of, 'vec element');
  if (child.width === 0) {
    throw schemaError(
      'vec of a zero-size type (unit) cannot be bounded by its byte length.',
      'use t.uint for a count.',
    );
  }
  const ctx = new Ctx();
  const node: Node = {
    genome: { kind: 'vec', of: child.genome },
    width: -1,
    fns: compileFns(ctx, seqBody(ctx, child, undefined, 'vec')),
    explain: (v, path) => {
      if (!Array.isArray(v)) return `${path}: expected an array, got ${describe(v)}`;
      if (v.length > 0xffffffff) return `${path}: more than 2^32-1 elements`;
      for (let i = 0; i < v.length; i++) {
        const e = child.explain(v[i], `${path}[${i}]`);
        if (e !== undefined) return e;
      }
      return undefined;
    },
  };
  return new CompiledCodec(node);
}

function array<C extends AnyCodec>(of: C, length: number): Codec<Infer<C>[], SeqView<InferView<C>>> {
  const child = nodeOf(of, 'array element');
  if (!Number.isInteger(length) || length < 0 || length > MAX_ARRAY_LENGTH) {
    throw schemaError(`invalid array length ${length}.`, `use an integer in 0..${MAX_ARRAY_LENGTH}.`);
  }
  if (child.width === 0 && length > 0) {
    // Zero-byte elements would let a few bytes of input decode into arbitrarily many values.
    throw schemaError('array of a zero-size type (unit) carries no data.', 'drop the field or use t.uint for a count.');
  }
  const ctx = new Ctx();
  const fns = compileFns(ctx, seqBody(ctx, child, length, `array[${length}]`));
  const genome = { kind: 'array', of: child.genome, length };
  const explain = (v: unknown, path: string) => {
    if (!Array.isArray(v) || v.length !== length) return `${path}: expected an array of ${length}, got ${describe(v)}`;
    for (let i = 0; i < v.length; i++) {
      const e = child.explain(v[i], `${path}[${i}]`);
      if (e !== undefined) return e;
    }
    return undefined;
  };
  if (child.width >= 0) {
    // Arrays of fixed-width elements are fixed-width themselves and sit inline in their parent.
    const W = child.width * length;
    const node: Node = {
      genome,
      width: W,
      fns,
      check: () => 'false',
      write: (c, x, p) => `${c.ref(fns.w)}(${x}, u8, ${p});`,
      read: (c, p) => `${c.ref(fns.r)}(u8, ${p}, ${W})`,
      view: (c, p) => `${c.ref(fns.v)}(u8, ${p}, ${W})`,
      explain,
    };
    return new CompiledCodec(node);
  }
  return new CompiledCodec({ genome, width: -1, fns, explain });
}

// ---------------------------------------------------------------------------------------------
// Option: absent = zero bytes; present = 0x01 then the value's standalone encoding.

function option<C extends AnyCodec>(of: C): Codec<Infer<C> | undefined, InferView<C> | undefined> & OptionMarker {
  const child = nodeOf(of, 'option payload');
  const ctx = new Ctx();
  const cw = ctx.ref(child.fns.w);
  const cm = ctx.ref(child.fns.m);
  const cs = ctx.ref(child.fns.s);
  const cr = ctx.ref(child.fns.r);
  const cv = ctx.ref(child.fns.v);
  const node: Node = {
    genome: { kind: 'option', of: child.genome },
    width: -1,
    fns: compileFns(
      ctx,
      `
function w(x, u8, p) { if (x === undefined || x === null) return p; u8[p] = 1; return ${cw}(x, u8, p + 1); }
function m(x) { return x === undefined || x === null ? 0 : 1 + ${cm}(x); }
function s(x) { return x === undefined || x === null ? 0 : 1 + ${cs}(x); }
function r(u8, p, len) { if (len === 0) return undefined; if (u8[p] !== 1) rt.decodeError('option marker is not 1'); return ${cr}(u8, p + 1, len - 1); }
function v(u8, p, len) { if (len === 0) return undefined; if (u8[p] !== 1) rt.decodeError('option marker is not 1'); return ${cv}(u8, p + 1, len - 1); }`,
    ),
    explain: (v, path) => (v === undefined || v === null ? undefined : child.explain(v, path)),
  };
  const codec = new CompiledCodec(node) as unknown as Codec<Infer<C> | undefined, InferView<C> | undefined> & {
    optional: true;
  };
  Object.defineProperty(codec, 'optional', { value: true });
  return codec;
}

function isOptionNode(node: Node): boolean {
  return node.genome.kind === 'option';
}

// ---------------------------------------------------------------------------------------------
// Struct: u32 F (size of the fixed section), fixed section (fields in order: fixed-width values
// inline, variable ones as u32 offset + u32 length relative to the struct start), then the heap.

export function protein<F extends Fields>(name: string, fields: F): StructCodec<F> {
  checkName('struct', name);
  if (fields === null || typeof fields !== 'object') throw schemaError(`struct ${name} needs a fields object.`, '');
  const list: { name: string; node: Node; off: number }[] = [];
  let F = 0;
  let minF = 0;
  for (const key of Object.keys(fields)) {
    checkName(`field of ${name}`, key);
    const node = nodeOf(fields[key], `field ${name}.${key}`);
    const width = node.width >= 0 ? node.width : 8;
    list.push({ name: key, node, off: F });
    F += width;
    if (!isOptionNode(node)) minF = F;
  }
  const ctx = new Ctx();
  const wr: string[] = [];
  const mm: string[] = [];
  const ss: string[] = [];
  const rd: string[] = [];
  const vd: string[] = [];
  const obj: string[] = [];
  const getters: string[] = [];
  const vctx = new Ctx();
  let k = 0;
  for (const f of list) {
    const x = `x${k}`;
    const acc = `x.${f.name}`;
    if (f.node.width >= 0) {
      wr.push(
        `const ${x} = ${acc}; if (${f.node.check!(ctx, x)}) rt.invalid(); ${f.node.write!(ctx, x, `f + ${f.off}`)}`,
      );
      obj.push(`${f.name}: ${f.node.read!(ctx, `f + ${f.off}`)}`);
      getters.push(`get ${f.name}() { const u8 = this.$u; return ${f.node.view!(vctx, `this.$p + ${4 + f.off}`)}; }`);
    } else {
      const cw = ctx.ref(f.node.fns.w);
      wr.push(
        `{ const e = ${cw}(${acc}, u8, h); rt.w32(u8, f + ${f.off}, h - p); rt.w32(u8, f + ${f.off + 4}, e - h); h = e; }`,
      );
      mm.push(`${ctx.ref(f.node.fns.m)}(${acc})`);
      ss.push(`${ctx.ref(f.node.fns.s)}(${acc})`);
      const slotRead = `{ const a = p + rt.r32(u8, f + ${f.off}), l = rt.r32(u8, f + ${f.off + 4});
    if (a < h || a > end || l > end - a) rt.decodeError(${JSON.stringify(`struct ${name} field ${f.name} out of range`)});`;
      const present = f.off + 8 <= minF ? '' : `if (F >= ${f.off + 8}) `;
      rd.push(`let ${x}; ${present}${slotRead} ${x} = ${ctx.ref(f.node.fns.r)}(u8, a, l); h = a + l; }`);
      vd.push(`${present}${slotRead} h = a + l; }`);
      obj.push(`${f.name}: ${x}`);
      const absent = f.off + 8 <= minF ? '' : `if (this.$F < ${f.off + 8}) return undefined;`;
      // The slot is read again on access and checked against the view's own range: in shared memory
      // the peer may rewrite it after the view was made, and a read must still stay inside the input.
      getters.push(`get ${f.name}() { ${absent} const u8 = this.$u, p = this.$p;
    const a = rt.r32(u8, p + ${4 + f.off}), l = rt.r32(u8, p + ${4 + f.off + 4});
    if (a > this.$n || l > this.$n - a) rt.decodeError(${JSON.stringify(`struct ${name} field ${f.name} out of range`)});
    return ${vctx.ref(f.node.fns.v)}(u8, p + a, l); }`);
    }
    k++;
  }
  const viewSrc = `'use strict';\n${vctx.prelude()}
return class ${name}View {
  constructor(u8, p, len, F) { this.$u = u8; this.$p = p; this.$n = len; this.$F = F; }
  ${getters.join('\n  ')}
  toJSON() { return { ${list.map((f) => `${f.name}: this.${f.name}`).join(', ')} }; }
  [Symbol.for('nodejs.util.inspect.custom')]() { return this.toJSON(); }
};`;
  const View = new Function('rt', 'deps', viewSrc)(rt, vctx.deps);
  const V = ctx.ref(View);
  const header = `if (len < 4) rt.decodeError(${JSON.stringify(`struct ${name} shorter than its header`)});
  const F = rt.r32(u8, p);
  if (F > len - 4 || F < ${minF}) rt.decodeError(${JSON.stringify(`struct ${name} fixed section size out of range`)});
  const f = p + 4, end = p + len;
  let h = f + F;`;
  const body = `
function w(x, u8, p) {
  rt.w32(u8, p, ${F});
  const f = p + 4;
  let h = f + ${F};
  ${wr.join('\n  ')}
  return h;
}
function m(x) { return ${[4 + F, ...mm].join(' + ')}; }
function s(x) { return ${[4 + F, ...ss].join(' + ')}; }
function r(u8, p, len) {
  ${header}
  ${rd.join('\n  ')}
  return { ${obj.join(', ')} };
}
function v(u8, p, len) {
  ${header}
  ${vd.join('\n  ')}
  return new ${V}(u8, p, len, F);
}`;
  const node: Node = {
    genome: { kind: 'struct', name, fields: list.map((f) => ({ name: f.name, type: f.node.genome })) },
    width: -1,
    fns: compileFns(ctx, body),
    explain: (v, path) => {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) {
        return `${path}: expected a ${name} object, got ${describe(v)}`;
      }
      for (const f of list) {
        const e = f.node.explain((v as Record<string, unknown>)[f.name], `${path}.${f.name}`);
        if (e !== undefined) return e;
      }
      return undefined;
    },
  };
  const codec = new CompiledCodec(node) as unknown as StructCodec<F>;
  Object.defineProperty(codec, 'name', { value: name });
  Object.defineProperty(codec, 'fields', { value: Object.freeze({ ...fields }) });
  return codec;
}

// ---------------------------------------------------------------------------------------------
// Enum: u32 variant index (declaration order), then the payload's standalone encoding.

function enumType<Vs extends Variants>(name: string, variants: Vs): EnumCodec<Vs> {
  checkName('enum', name);
  if (variants === null || typeof variants !== 'object') throw schemaError(`enum ${name} needs a variants object.`, '');
  const list: { name: string; node: Node | null }[] = [];
  for (const key of Object.keys(variants)) {
    checkName(`variant of ${name}`, key);
    const c = variants[key];
    list.push({ name: key, node: c === null ? null : nodeOf(c, `variant ${name}.${key}`) });
  }
  if (list.length === 0) throw schemaError(`enum ${name} has no variants.`, 'declare at least one variant.');
  const ctx = new Ctx();
  const wc: string[] = [];
  const mc: string[] = [];
  const rc: string[] = [];
  const vc: string[] = [];
  list.forEach((vr, i) => {
    const tag = JSON.stringify(vr.name);
    if (vr.node === null) {
      wc.push(`case ${tag}: rt.w32(u8, p, ${i}); return p + 4;`);
      mc.push(`case ${tag}: return 4;`);
      rc.push(
        `case ${i}: if (len !== 4) rt.decodeError('enum payload where none is declared'); return { tag: ${tag} };`,
      );
      vc.push(rc[rc.length - 1]);
    } else {
      wc.push(`case ${tag}: rt.w32(u8, p, ${i}); return ${ctx.ref(vr.node.fns.w)}(x.value, u8, p + 4);`);
      mc.push(`case ${tag}: return 4 + ${ctx.ref(vr.node.fns.m)}(x.value);`);
      rc.push(`case ${i}: return { tag: ${tag}, value: ${ctx.ref(vr.node.fns.r)}(u8, p + 4, len - 4) };`);
      vc.push(`case ${i}: return { tag: ${tag}, value: ${ctx.ref(vr.node.fns.v)}(u8, p + 4, len - 4) };`);
    }
  });
  const sizeCases = list.map((vr) =>
    vr.node === null
      ? `case ${JSON.stringify(vr.name)}: return 4;`
      : `case ${JSON.stringify(vr.name)}: return 4 + ${ctx.ref(vr.node.fns.s)}(x.value);`,
  );
  const bad = JSON.stringify(`enum ${name} tag out of range`);
  const body = `
function w(x, u8, p) { switch (x.tag) { ${wc.join(' ')} default: rt.invalid(); } }
function m(x) { switch (x.tag) { ${mc.join(' ')} default: return NaN; } }
function s(x) { switch (x.tag) { ${sizeCases.join(' ')} default: return NaN; } }
function r(u8, p, len) {
  if (len < 4) rt.decodeError(${JSON.stringify(`enum ${name} shorter than its tag`)});
  switch (rt.r32(u8, p)) { ${rc.join(' ')} default: rt.decodeError(${bad}); }
}
function v(u8, p, len) {
  if (len < 4) rt.decodeError(${JSON.stringify(`enum ${name} shorter than its tag`)});
  switch (rt.r32(u8, p)) { ${vc.join(' ')} default: rt.decodeError(${bad}); }
}`;
  const node: Node = {
    genome: {
      kind: 'enum',
      name,
      variants: list.map((vr) => ({ name: vr.name, type: vr.node === null ? null : vr.node.genome })),
    },
    width: -1,
    fns: compileFns(ctx, body),
    explain: (v, path) => {
      if (v === null || typeof v !== 'object') return `${path}: expected a ${name} variant object, got ${describe(v)}`;
      const tag = (v as { tag?: unknown }).tag;
      const vr = list.find((x) => x.name === tag);
      if (vr === undefined) {
        return `${path}.tag: expected one of ${list.map((x) => x.name).join(', ')}, got ${describe(tag)}`;
      }
      return vr.node === null ? undefined : vr.node.explain((v as { value?: unknown }).value, `${path}.value`);
    },
  };
  const codec = new CompiledCodec(node) as unknown as EnumCodec<Vs>;
  Object.defineProperty(codec, 'name', { value: name });
  Object.defineProperty(codec, 'variants', { value: Object.freeze({ ...variants }) });
  return codec;
}

/** The wire types. */
export const t = {
  bool,
  u8,
  u16,
  u32,
  i8,
  i16,
  i32,
  f32,
  f64,
  u64,
  i64,
  /** A non-negative safe integer kept as a JS number (8 bytes, wire-identical to u64). */
  uint,
  /** A safe integer kept as a JS number (8 bytes, wire-identical to i64). */
  int,
  string: stringCodec(),
  bytes: bytesCodec(),
  unit,
  vec,
  option,
  array,
  struct: protein,
  enum: enumType,
};
