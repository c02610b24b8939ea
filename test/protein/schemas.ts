import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Prng } from '../../src/consensus/sim/prng.js';
import { isCellError } from '../../src/errors/index.js';
import { type AnyCodec, protein, type SeqView, t } from '../../src/protein/index.js';

/**
 * Random schemas, random values for them, and random / mutated bytes. A schema is a plain tree;
 * `build` turns it into a codec, `valueArb` into a fast-check arbitrary of valid values, and
 * `readAll` walks a view reading every field.
 */
export type Schema =
  | { k: 'scalar'; name: ScalarName }
  | { k: 'vec'; of: Schema }
  | { k: 'option'; of: Schema }
  | { k: 'array'; of: Schema; n: number }
  | { k: 'struct'; fields: Schema[] }
  | { k: 'enum'; variants: (Schema | null)[] };

export const SCALARS = [
  'bool',
  'u8',
  'u16',
  'u32',
  'i8',
  'i16',
  'i32',
  'f32',
  'f64',
  'u64',
  'i64',
  'uint',
  'int',
  'string',
  'bytes',
  'unit',
] as const;
export type ScalarName = (typeof SCALARS)[number];

export const schemaArb: fc.Arbitrary<Schema> = fc.letrec<{ node: Schema }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(...SCALARS).map((name): Schema => ({ k: 'scalar', name })),
    tie('node').map((of): Schema => ({ k: 'vec', of })),
    tie('node').map((of): Schema => ({ k: 'option', of })),
    fc.tuple(tie('node'), fc.integer({ min: 0, max: 3 })).map(([of, n]): Schema => ({ k: 'array', of, n })),
    fc.array(tie('node'), { minLength: 0, maxLength: 4 }).map((fields): Schema => ({ k: 'struct', fields })),
    fc
      .array(fc.option(tie('node'), { nil: null }), { minLength: 1, maxLength: 3 })
      .map((variants): Schema => ({ k: 'enum', variants })),
  ),
})).node;

export function zeroWidth(s: Schema): boolean {
  if (s.k === 'scalar') return s.name === 'unit';
  if (s.k === 'array') return s.n === 0;
  return false;
}

/** vec and array of a zero-width type are refused by the schema compiler; such elements get wrapped in an option. */
export function elementOf(s: Schema & { of: Schema }): Schema {
  return zeroWidth(s.of) && (s.k !== 'array' || s.n > 0) ? { k: 'option', of: s.of } : s.of;
}

export function build(s: Schema): AnyCodec {
  switch (s.k) {
    case 'scalar':
      return t[s.name];
    case 'vec':
      // vec of a zero-width type is refused by the schema compiler; wrap it so the tree stays valid
      return t.vec(zeroWidth(s.of) ? t.option(build(s.of)) : build(s.of));
    case 'option':
      return t.option(build(s.of));
    case 'array':
      return t.array(zeroWidth(s.of) && s.n > 0 ? t.option(build(s.of)) : build(s.of), s.n);
    case 'struct':
      return protein('S', Object.fromEntries(s.fields.map((f, i) => [`f${i}`, build(f)])));
    case 'enum':
      return t.enum('E', Object.fromEntries(s.variants.map((v, i) => [`V${i}`, v === null ? null : build(v)])));
  }
}

export function valueArb(s: Schema): fc.Arbitrary<unknown> {
  switch (s.k) {
    case 'scalar':
      switch (s.name) {
        case 'bool':
          return fc.boolean();
        case 'u8':
          return fc.integer({ min: 0, max: 255 });
        case 'u16':
          return fc.integer({ min: 0, max: 65535 });
        case 'u32':
          return fc.integer({ min: 0, max: 0xffffffff });
        case 'i8':
          return fc.integer({ min: -128, max: 127 });
        case 'i16':
          return fc.integer({ min: -32768, max: 32767 });
        case 'i32':
          return fc.integer();
        case 'f32':
          return fc.float();
        case 'f64':
          return fc.double();
        case 'u64':
          return fc.bigInt(0n, 2n ** 64n - 1n);
        case 'i64':
          return fc.bigInt(-(2n ** 63n), 2n ** 63n - 1n);
        case 'uint':
          return fc.maxSafeNat();
        case 'int':
          return fc.maxSafeInteger();
        case 'string':
          return fc.oneof(fc.string({ unit: 'binary', maxLength: 60 }), fc.string({ maxLength: 30 }));
        case 'bytes':
          return fc.uint8Array({ maxLength: 40 });
        case 'unit':
          return fc.constant(undefined);
      }
      throw new Error('unreachable');
    case 'vec': {
      const of = zeroWidth(s.of) ? ({ k: 'option', of: s.of } as Schema) : s.of;
      return fc.array(valueArb(of), { maxLength: 4 });
    }
    case 'option':
      return fc.option(valueArb(s.of), { nil: undefined });
    case 'array':
      return fc.array(valueArb(elementOf(s)), { minLength: s.n, maxLength: s.n });
    case 'struct':
      return fc.record(Object.fromEntries(s.fields.map((f, i) => [`f${i}`, valueArb(f)])));
    case 'enum':
      return fc.oneof(
        ...s.variants.map((v, i) =>
          v === null ? fc.constant({ tag: `V${i}` }) : valueArb(v).map((value) => ({ tag: `V${i}`, value })),
        ),
      );
  }
}

/** A nested option whose inner value is absent collapses to absent: that is the JS value model. */
export function normalise(s: Schema, v: unknown): unknown {
  switch (s.k) {
    case 'scalar':
      return v;
    case 'vec': {
      const of = zeroWidth(s.of) ? ({ k: 'option', of: s.of } as Schema) : s.of;
      return (v as unknown[]).map((x) => normalise(of, x));
    }
    case 'array':
      return (v as unknown[]).map((x) => normalise(elementOf(s), x));
    case 'option':
      return v === undefined ? undefined : normalise(s.of, v);
    case 'struct':
      return Object.fromEntries(
        s.fields.map((f, i) => [`f${i}`, normalise(f, (v as Record<string, unknown>)[`f${i}`])]),
      );
    case 'enum': {
      const e = v as { tag: string; value?: unknown };
      const variant = s.variants[Number(e.tag.slice(1))];
      return variant === null ? { tag: e.tag } : { tag: e.tag, value: normalise(variant, e.value) };
    }
  }
}

/**
 * Reads every part of a view into a plain value (the same shape decode returns). A view offers
 * several ways to read a container — struct getters or `toJSON()`; for sequences `get(i)` in any
 * order, iteration or `toArray()` — and each must agree with decode on its own, so `ways` picks one
 * at every container (and a random order for `get`): trying them all at every level would cost
 * ways^depth, and over many cases each is exercised at every depth.
 */
export function readAll(s: Schema, v: unknown, ways: Prng = new Prng(0)): unknown {
  switch (s.k) {
    case 'scalar':
      return v;
    case 'vec':
    case 'array': {
      const of = elementOf(s);
      const seq = v as SeqView<unknown>;
      const n = seq.length;
      if (s.k === 'array') assert.equal(n, s.n);
      assert.throws(() => seq.get(n), RangeError);
      switch (ways.int(0, 2)) {
        case 0: {
          const order = Array.from({ length: n }, (_, i) => i);
          for (let i = n - 1; i > 0; i--) {
            const j = ways.int(0, i);
            [order[i], order[j]] = [order[j], order[i]];
          }
          const out = new Array<unknown>(n);
          for (const i of order) out[i] = readAll(of, seq.get(i), ways);
          return out;
        }
        case 1:
          return Array.from(seq, (x) => readAll(of, x, ways));
        default:
          return seq.toArray().map((x) => readAll(of, x, ways));
      }
    }
    case 'option':
      return v === undefined ? undefined : readAll(s.of, v, ways);
    case 'struct': {
      const view = v as Record<string, unknown> & { toJSON(): Record<string, unknown> };
      const from = ways.chance(0.5) ? view : view.toJSON();
      return Object.fromEntries(s.fields.map((f, i) => [`f${i}`, readAll(f, from[`f${i}`], ways)]));
    }
    case 'enum': {
      const e = v as { tag: string; value?: unknown };
      const variant = s.variants[Number(e.tag.slice(1))];
      return variant === null ? { tag: e.tag } : { tag: e.tag, value: readAll(variant, e.value, ways) };
    }
  }
}

/** Runs `fn`; returns its result, or the marker 'E_DECODE'. Any other error fails the property. */
export function decodeOrReject(fn: () => unknown): unknown {
  try {
    return fn();
  } catch (err) {
    if (isCellError(err, 'E_DECODE')) return 'E_DECODE';
    throw err;
  }
}

/** Inline width of a schema's codec (−1 for variable-size types, which take an 8-byte slot). */
export function widthOf(s: Schema): number {
  switch (s.k) {
    case 'scalar':
      return SCALAR_WIDTH[s.name];
    case 'array': {
      const w = widthOf(elementOf(s));
      return w < 0 ? -1 : w * s.n;
    }
    default:
      return -1;
  }
}

const SCALAR_WIDTH: Record<ScalarName, number> = {
  bool: 1,
  u8: 1,
  i8: 1,
  u16: 2,
  i16: 2,
  u32: 4,
  i32: 4,
  f32: 4,
  f64: 8,
  u64: 8,
  i64: 8,
  uint: 8,
  int: 8,
  unit: 0,
  string: -1,
  bytes: -1,
};

const r32 = (u8: Uint8Array, p: number) => (u8[p] | (u8[p + 1] << 8) | (u8[p + 2] << 16) | (u8[p + 3] << 24)) >>> 0;

/**
 * The slots of a valid encoding of `s` in `u8[p, p+len)`, one group per container (a struct's
 * variable fields, a sequence's variable elements), each group listing the byte positions of its
 * 8-byte slots (u32 offset + u32 length, relative to the container) in order. Mutations rewrite,
 * duplicate and reorder slots inside one group, where the offsets share their base.
 */
export function slotGroups(s: Schema, u8: Uint8Array, p: number, len: number, out: number[][] = []): number[][] {
  switch (s.k) {
    case 'scalar':
      return out;
    case 'vec':
    case 'array': {
      const of = elementOf(s);
      if (widthOf(of) >= 0) return out;
      const H = s.k === 'vec' ? 4 : 0;
      const n = s.k === 'vec' ? r32(u8, p) : s.n;
      const group = Array.from({ length: n }, (_, i) => p + H + i * 8);
      if (n > 0) out.push(group);
      for (const sl of group) slotGroups(of, u8, p + r32(u8, sl), r32(u8, sl + 4), out);
      return out;
    }
    case 'option':
      return len === 0 ? out : slotGroups(s.of, u8, p + 1, len - 1, out);
    case 'struct': {
      const group: number[] = [];
      const children: Schema[] = [];
      let off = p + 4;
      for (const f of s.fields) {
        const w = widthOf(f);
        if (w < 0) {
          group.push(off);
          children.push(f);
        }
        off += w < 0 ? 8 : w;
      }
      if (group.length > 0) out.push(group);
      for (let i = 0; i < group.length; i++) {
        slotGroups(children[i], u8, p + r32(u8, group[i]), r32(u8, group[i] + 4), out);
      }
      return out;
    }
    case 'enum': {
      const variant = s.variants[r32(u8, p)];
      return variant === null ? out : slotGroups(variant, u8, p + 4, len - 4, out);
    }
  }
}
