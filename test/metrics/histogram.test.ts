import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Histogram } from '../../src/metrics/index.js';

const value = fc.oneof(
  fc.integer({ min: 0, max: 100 }),
  fc.integer({ min: 0, max: 5_000_000 }),
  fc.integer({ min: 0, max: 2 ** 40 }),
);

function exactPercentile(sorted: number[], q: number): number {
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[rank - 1];
}

test('percentiles are within the bucket error bound of the exact sorted value', () => {
  fc.assert(
    fc.property(
      fc.array(value, { minLength: 1, maxLength: 400 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.integer({ min: 2, max: 7 }),
      (values, q, precision) => {
        const h = new Histogram(precision);
        for (const v of values) h.record(v);
        const sorted = [...values].sort((a, b) => a - b);
        const exact = exactPercentile(sorted, q);
        const got = h.percentile(q);
        assert.ok(got >= exact, `p${q} = ${got} below exact ${exact}`);
        // Bucket width is at most value / 2^precision; below 2^precision buckets are exact.
        assert.ok(got - exact <= exact / 2 ** precision, `p${q} = ${got} too far above exact ${exact}`);
      },
    ),
  );
});

test('count, sum, min, max and mean are exact', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 1e12 }), { minLength: 1, maxLength: 200 }), (values) => {
      const h = new Histogram();
      for (const v of values) h.record(v);
      assert.equal(h.count, values.length);
      assert.equal(
        h.sum,
        values.reduce((a, b) => a + b, 0),
      );
      assert.equal(h.min, Math.min(...values));
      assert.equal(h.max, Math.max(...values));
      assert.equal(h.percentile(1), Math.max(...values));
      assert.equal(h.percentile(0), h.percentile(1e-12));
    }),
  );
});

test('merge equals recording everything into one histogram; snapshots round-trip', () => {
  fc.assert(
    fc.property(fc.array(value), fc.array(value), (a, b) => {
      const ha = new Histogram();
      const hb = new Histogram();
      const all = new Histogram();
      for (const v of a) {
        ha.record(v);
        all.record(v);
      }
      for (const v of b) {
        hb.record(v);
        all.record(v);
      }
      const viaSnapshot = Histogram.fromSnapshot(JSON.parse(JSON.stringify(ha.snapshot())));
      viaSnapshot.merge(hb.snapshot());
      ha.merge(hb);
      assert.deepEqual(ha.snapshot(), all.snapshot());
      assert.deepEqual(viaSnapshot.snapshot(), all.snapshot());
    }),
  );
});

test('countAtOrBelow agrees with the exact count to within one bucket', () => {
  fc.assert(
    fc.property(fc.array(value, { minLength: 1 }), fc.integer({ min: 0, max: 2 ** 40 }), (values, bound) => {
      const h = new Histogram();
      for (const v of values) h.record(v);
      const exact = values.filter((v) => v <= bound).length;
      const lower = values.filter((v) => v <= bound - bound / 32).length;
      const got = h.countAtOrBelow(bound);
      assert.ok(got <= exact, `counted ${got} > exact ${exact}`);
      assert.ok(got >= lower, `counted ${got} < ${lower} values clearly below`);
    }),
  );
});

test('edge values: zero, negatives, NaN, huge values clamp into range', () => {
  const h = new Histogram();
  h.record(0);
  h.record(-5);
  h.record(Number.NaN);
  h.record(2 ** 50);
  assert.equal(h.count, 4);
  assert.equal(h.percentile(0.5), 0);
  assert.ok(h.percentile(1) > 2 ** 42);
  const empty = new Histogram();
  assert.equal(empty.percentile(0.99), 0);
  assert.equal(empty.snapshot().min, 0);
  assert.throws(() => new Histogram(0), { code: 'E_INVALID_ARGUMENT' });
  assert.throws(() => new Histogram(5).merge(new Histogram(6)), { code: 'E_INVALID_ARGUMENT' });
  assert.throws(() => new Histogram().merge({ precision: 5, count: 1, sum: 1, min: 1, max: 1, buckets: [1e9, 1] }), {
    code: 'E_DECODE',
  });
});

test('the snapshot is sparse', () => {
  const h = new Histogram();
  for (let i = 0; i < 10_000; i++) h.record(50_000 + (i % 7));
  const s = h.snapshot();
  assert.ok(s.buckets.length <= 4, `expected at most 2 buckets, got ${s.buckets.length / 2}`);
  assert.ok(JSON.stringify(s).length < 200);
});
