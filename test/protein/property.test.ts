import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { isCellError } from '../../src/errors/index.js';
import { type AnyCodec, protein, type SeqView, t } from '../../src/protein/index.js';

/**
 * Random schemas, random values for them, and random / mutated bytes. A schema is a plain tree;
 * `build` turns it into a codec, `valueArb` into a fast-check arbitrary of valid values, and
 * `readAll` walks a view reading every field.
 */
type Schema =
  | { k: 'scalar'; name: ScalarName }
  | { k: 'vec'; of: Schema }
  | { k: 'option'; of: Schema }
  | { k: 'array'; of: Schema; n: number }
  | { k: 'struct'; fields: Schema[] }
  | { k: 'enum'; variants: (Schema | null)[] };

const SCALARS = [
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
type ScalarName = (typeof SCALARS)[number];

const schemaArb: fc.Arbitrary<Schema> = fc.letrec<{ node: Schema }>((tie) => ({
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

function zeroWidth(s: Schema): boolean {
  if (s.k === 'scalar') return s.name === 'unit';
  if (s.k === 'array') return s.n === 0;
  return false;
}

/** vec and array of a zero-width type are refused by the schema compiler; such elements get wrapped in an option. */
function elementOf(s: Schema & { of: Schema }): Schema {
  return zeroWidth(s.of) && (s.k !== 'array' || s.n > 0) ? { k: 'option', of: s.of } : s.of;
}

function build(s: Schema): AnyCodec {
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

function valueArb(s: Schema): fc.Arbitrary<unknown> {
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
function normalise(s: Schema, v: unknown): unknown {
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

/** Reads every field of a view into a plain value (the same shape decode returns). */
function readAll(s: Schema, v: unknown): unknown {
  switch (s.k) {
    case 'scalar':
      return v;
    case 'vec': {
      const of = zeroWidth(s.of) ? ({ k: 'option', of: s.of } as Schema) : s.of;
      const seq = v as SeqView<unknown>;
      const out: unknown[] = [];
      for (let i = 0; i < seq.length; i++) out.push(readAll(of, seq.get(i)));
      assert.equal([...seq].length, seq.length);
      return out;
    }
    case 'array':
      return (v as SeqView<unknown>).toArray().map((x) => readAll(elementOf(s), x));
    case 'option':
      return v === undefined ? undefined : readAll(s.of, v);
    case 'struct':
      return Object.fromEntries(s.fields.map((f, i) => [`f${i}`, readAll(f, (v as Record<string, unknown>)[`f${i}`])]));
    case 'enum': {
      const e = v as { tag: string; value?: unknown };
      const variant = s.variants[Number(e.tag.slice(1))];
      return variant === null ? { tag: e.tag } : { tag: e.tag, value: readAll(variant, e.value) };
    }
  }
}

/** Runs `fn`; returns its result, or the marker 'E_DECODE'. Any other error fails the property. */
function decodeOrReject(fn: () => unknown): unknown {
  try {
    return fn();
  } catch (err) {
    if (isCellError(err, 'E_DECODE')) return 'E_DECODE';
    throw err;
  }
}

const schemaAndValue = schemaArb.chain((s) => fc.tuple(fc.constant(s), valueArb(s)));
const SEED = Number(process.env.CELL_PROPERTY_SEED ?? Date.now() % 2 ** 31);
// CELL_PROPERTY_SCALE=20 runs twenty times as many cases (a longer local fuzzing session).
const SCALE = Number(process.env.CELL_PROPERTY_SCALE ?? 1);
const params = (numRuns: number): fc.Parameters<unknown> => ({ numRuns: Math.ceil(numRuns * SCALE), seed: SEED });

describe(`protein properties (seed ${SEED})`, () => {
  test('decode(encode(v)) equals v; view read-all equals v; sizeOf is exact; encodeInto at an offset', () => {
    fc.assert(
      fc.property(schemaAndValue, fc.nat(37), ([s, value], offset) => {
        const codec = build(s);
        const expected = normalise(s, value);
        const bytes = codec.encode(value);
        assert.equal(codec.sizeOf(value), bytes.length);
        assert.deepStrictEqual(codec.decode(bytes), expected);
        assert.deepStrictEqual(readAll(s, codec.view(bytes)), expected);
        const target = new Uint8Array(offset + bytes.length + 5).fill(0xa5);
        assert.equal(codec.encodeInto(value, target, offset), offset + bytes.length);
        assert.deepStrictEqual(target.subarray(offset, offset + bytes.length), new Uint8Array(bytes));
        assert.deepStrictEqual(readAll(s, codec.view(target, offset, bytes.length)), expected);
        assert.deepStrictEqual(codec.decode(target.subarray(offset, offset + bytes.length)), expected);
      }),
      params(300),
    );
  });

  // The input sits inside a larger buffer; running twice with different surrounding bytes shows that
  // nothing outside [offset, offset+length) was read.
  function fuzzOnce(s: Schema, input: Uint8Array): void {
    const codec = build(s);
    const outcomes = [0x00, 0xff].map((pad) => {
      const big = new Uint8Array(input.length + 16).fill(pad);
      big.set(input, 8);
      return [
        decodeOrReject(() => codec.decode(big, 8, input.length)),
        decodeOrReject(() => readAll(s, codec.view(big, 8, input.length))),
      ];
    });
    assert.ok(isDeepStrictEqual(outcomes[0], outcomes[1]), 'result depends on bytes outside the input');
    const [decoded, viewed] = outcomes[0];
    if (decoded !== 'E_DECODE' && viewed !== 'E_DECODE') assert.deepStrictEqual(viewed, decoded);
  }

  test('random bytes: view (reading every field) and decode succeed or throw E_DECODE', () => {
    fc.assert(
      fc.property(schemaArb, fc.uint8Array({ maxLength: 64 }), (s, input) => fuzzOnce(s, input)),
      params(400),
    );
  });

  test('mutated valid encodings (flip, truncate, extend, overwrite u32): only E_DECODE', () => {
    const mutation = fc.oneof(
      fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }),
      fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ op: fc.constant('extend' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
      fc.record({
        op: fc.constant('u32' as const),
        at: fc.nat(),
        value: fc.constantFrom(0, 1, 3, 4, 8, 0x7fffffff, 0x80000000, 0xffffffff),
      }),
    );
    fc.assert(
      fc.property(schemaAndValue, fc.array(mutation, { minLength: 1, maxLength: 3 }), ([s, value], mutations) => {
        let bytes = new Uint8Array(build(s).encode(value));
        for (const m of mutations) {
          if (m.op === 'extend') {
            const grown = new Uint8Array(bytes.length + m.extra.length);
            grown.set(bytes);
            grown.set(m.extra, bytes.length);
            bytes = grown;
          } else if (bytes.length === 0) {
          } else if (m.op === 'flip') {
            bytes[m.at % bytes.length] ^= 1 << m.bit;
          } else if (m.op === 'truncate') {
            bytes = bytes.slice(0, m.at % bytes.length);
          } else if (bytes.length >= 4) {
            new DataView(bytes.buffer).setUint32(m.at % (bytes.length - 3), m.value, true);
          }
        }
        fuzzOnce(s, bytes);
      }),
      params(400),
    );
  });
});
