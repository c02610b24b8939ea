import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { Prng } from '../../src/consensus/sim/prng.js';
import { build, decodeOrReject, normalise, readAll, type Schema, schemaArb, slotGroups, valueArb } from './schemas.js';

const schemaAndValue = schemaArb.chain((s) => fc.tuple(fc.constant(s), valueArb(s)));
const SEED = Number(process.env.CELL_PROPERTY_SEED ?? Date.now() % 2 ** 31);
// CELL_PROPERTY_SCALE=20 runs twenty times as many cases (a longer local fuzzing session).
const SCALE = Number(process.env.CELL_PROPERTY_SCALE ?? 1);
const params = (numRuns: number): fc.Parameters<unknown> => ({ numRuns: Math.ceil(numRuns * SCALE), seed: SEED });

describe(`protein properties (seed ${SEED})`, () => {
  test('decode(encode(v)) equals v; view read-all equals v; sizeOf is exact; encodeInto at an offset', () => {
    fc.assert(
      fc.property(schemaAndValue, fc.nat(37), fc.nat(), ([s, value], offset, ways) => {
        const codec = build(s);
        const expected = normalise(s, value);
        const bytes = codec.encode(value);
        assert.equal(codec.sizeOf(value), bytes.length);
        assert.deepStrictEqual(codec.decode(bytes), expected);
        assert.deepStrictEqual(readAll(s, codec.view(bytes), new Prng(ways)), expected);
        const target = new Uint8Array(offset + bytes.length + 5).fill(0xa5);
        assert.equal(codec.encodeInto(value, target, offset), offset + bytes.length);
        assert.deepStrictEqual(target.subarray(offset, offset + bytes.length), new Uint8Array(bytes));
        assert.deepStrictEqual(readAll(s, codec.view(target, offset, bytes.length), new Prng(ways + 1)), expected);
        assert.deepStrictEqual(codec.decode(target.subarray(offset, offset + bytes.length)), expected);
      }),
      params(300),
    );
  });

  // The input sits inside a larger buffer; running twice with different surrounding bytes shows that
  // nothing outside [offset, offset+length) was read. A view read in full (readAll) must agree with
  // decode: the same value, or E_DECODE from both; `ways` seeds its choice of ways to read.
  function fuzzOnce(s: Schema, input: Uint8Array, ways: number, codec = build(s)): void {
    const outcomes = [0x00, 0xff].map((pad) => {
      const big = new Uint8Array(input.length + 16).fill(pad);
      big.set(input, 8);
      return [
        decodeOrReject(() => codec.decode(big, 8, input.length)),
        decodeOrReject(() => readAll(s, codec.view(big, 8, input.length), new Prng(ways))),
      ];
    });
    assert.ok(isDeepStrictEqual(outcomes[0], outcomes[1]), 'result depends on bytes outside the input');
    const [decoded, viewed] = outcomes[0];
    assert.deepStrictEqual(viewed, decoded, `view and decode disagree on ${Buffer.from(input).toString('hex')}`);
  }

  test('random bytes: view (reading every field) and decode agree', () => {
    fc.assert(
      fc.property(schemaArb, fc.uint8Array({ maxLength: 64 }), fc.nat(), (s, input, ways) => fuzzOnce(s, input, ways)),
      params(400),
    );
  });

  // Slot mutations pick a container (`group`) and slots in it (`i`, `j`) modulo what the encoding has.
  const slot = { group: fc.nat(), i: fc.nat(), j: fc.nat() };
  const mutation = fc.oneof(
    fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }),
    fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({ op: fc.constant('extend' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
    fc.record({
      op: fc.constant('u32' as const),
      at: fc.nat(),
      value: fc.constantFrom(0, 1, 3, 4, 8, 0x7fffffff, 0x80000000, 0xffffffff),
    }),
    // slot i's offset or length becomes slot j's offset, end or length, 0, ±1 of itself, or huge
    fc.record({
      op: fc.constant('rewrite' as const),
      ...slot,
      field: fc.constantFrom(0, 4),
      to: fc.constantFrom('offset', 'end', 'length', 'zero', 'plus', 'minus', 'max'),
    }),
    fc.record({ op: fc.constant('duplicate' as const), ...slot }),
    fc.record({ op: fc.constant('swap' as const), ...slot }),
  );
  // Half the cases wrap the random schema in a vec of structs with a string, like a batch of orders,
  // so most encodings have slots to rewrite at two levels.
  const slotRich = schemaArb
    .map((s): Schema => ({ k: 'vec', of: { k: 'struct', fields: [{ k: 'scalar', name: 'string' }, s] } }))
    .chain((s) => fc.tuple(fc.constant(s), valueArb(s)));
  type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

  function mutate(bytes: Uint8Array, groups: number[][], m: Mutation): Uint8Array {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    if (m.op === 'extend') {
      const grown = new Uint8Array(bytes.length + m.extra.length);
      grown.set(bytes);
      grown.set(m.extra, bytes.length);
      return grown;
    }
    if (m.op === 'flip' || m.op === 'truncate' || m.op === 'u32') {
      if (bytes.length === 0) return bytes;
      if (m.op === 'flip') bytes[m.at % bytes.length] ^= 1 << m.bit;
      else if (m.op === 'truncate') return bytes.slice(0, m.at % bytes.length);
      else if (bytes.length >= 4) dv.setUint32(m.at % (bytes.length - 3), m.value, true);
      return bytes;
    }
    if (groups.length === 0) return bytes;
    const group = groups[m.group % groups.length];
    const a = group[m.i % group.length];
    const b = group[m.j % group.length];
    if (a + 8 > bytes.length || b + 8 > bytes.length) return bytes; // cut off by an earlier truncation
    const [ao, al, bo, bl] = [
      dv.getUint32(a, true),
      dv.getUint32(a + 4, true),
      dv.getUint32(b, true),
      dv.getUint32(b + 4, true),
    ];
    if (m.op === 'duplicate') {
      bytes.copyWithin(a, b, b + 8);
    } else if (m.op === 'swap') {
      dv.setUint32(a, bo, true);
      dv.setUint32(a + 4, bl, true);
      dv.setUint32(b, ao, true);
      dv.setUint32(b + 4, al, true);
    } else {
      const own = m.field === 0 ? ao : al;
      const to = { offset: bo, end: bo + bl, length: bl, zero: 0, plus: own + 1, minus: own - 1, max: 0xffffffff }[
        m.to
      ];
      dv.setUint32(a + m.field, to >>> 0, true);
    }
    return bytes;
  }

  test('mutated valid encodings (flips, slot rewrites, duplicated and reordered slots, truncation, extension): view and decode agree', () => {
    fc.assert(
      fc.property(
        fc.oneof(schemaAndValue, slotRich),
        fc.array(mutation, { minLength: 1, maxLength: 3 }),
        fc.nat(),
        ([s, value], mutations, ways) => {
          const codec = build(s);
          let bytes: Uint8Array = new Uint8Array(codec.encode(value));
          const groups = slotGroups(s, bytes, 0, bytes.length);
          for (const m of mutations) bytes = mutate(bytes, groups, m);
          fuzzOnce(s, bytes, ways, codec);
        },
      ),
      params(1000),
    );
  });
});
