import { CellError } from '../errors/index.js';

/**
 * A log-linear latency histogram in the HDR style, over integer nanoseconds.
 *
 * Values below 2^p land in exact unit buckets; above that, every power-of-two range [2^e, 2^(e+1))
 * is split into 2^p equal sub-buckets, so any recorded value is known to within 1/2^p of itself
 * (p = 5: 3.1 %). Recording is a couple of integer operations and one array increment: no
 * allocation, no branches on the data beyond the range checks, which keeps it cheap enough for the
 * Membrane's per-request hot path.
 */

/** Largest recordable value (2^42 ns, about 73 minutes); larger values are clamped into the top bucket. */
export const HISTOGRAM_MAX_EXPONENT = 42;
const TWO_POW_32 = 4294967296;

export interface HistogramSnapshot {
  /** Sub-bucket precision: each power-of-two range is split into 2^precision buckets. */
  readonly precision: number;
  readonly count: number;
  /** Sum of recorded values in ns (exact up to 2^53). */
  readonly sum: number;
  readonly min: number;
  readonly max: number;
  /** Sparse bucket counts as a flat list: index, count, index, count, … (indices ascending). */
  readonly buckets: number[];
}

export class Histogram {
  readonly precision: number;
  private readonly subBuckets: number;
  private readonly counts: Float64Array;
  count = 0;
  sum = 0;
  min = Number.POSITIVE_INFINITY;
  max = 0;

  constructor(precision = 5) {
    if (!Number.isInteger(precision) || precision < 1 || precision > 10) {
      throw new CellError('E_INVALID_ARGUMENT', `histogram precision must be an integer 1..10, got ${precision}.`);
    }
    this.precision = precision;
    this.subBuckets = 1 << precision;
    this.counts = new Float64Array(bucketCount(precision));
  }

  /** Records one value in nanoseconds. Negative and non-finite values count as 0. */
  record(ns: number): void {
    const v = ns > 0 ? Math.floor(ns) : 0;
    this.counts[bucketIndex(v, this.precision, this.subBuckets)]++;
    this.count++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  /** Records `n` occurrences of the same value (used when merging and in tests). */
  recordMany(ns: number, n: number): void {
    if (n <= 0) return;
    const v = ns > 0 ? Math.floor(ns) : 0;
    this.counts[bucketIndex(v, this.precision, this.subBuckets)] += n;
    this.count += n;
    this.sum += v * n;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.sum = 0;
    this.min = Number.POSITIVE_INFINITY;
    this.max = 0;
  }

  /**
   * The value at quantile q (0..1): the upper bound of the bucket holding the rank-⌈q·count⌉ value,
   * clamped to the observed min and max. The true value lies in the same bucket, so the answer is
   * never below it and exceeds it by less than 1/2^precision of it.
   */
  percentile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(Math.min(1, Math.max(0, q)) * this.count));
    let seen = 0;
    const counts = this.counts;
    for (let i = 0; i < counts.length; i++) {
      seen += counts[i];
      if (seen >= rank) {
        const upper = bucketUpperBound(i, this.precision);
        return Math.min(Math.max(upper, this.min), this.max);
      }
    }
    return this.max;
  }

  mean(): number {
    return this.count === 0 ? 0 : this.sum / this.count;
  }

  /** Number of recorded values ≤ `ns`, counting a bucket when its upper bound is ≤ `ns`. */
  countAtOrBelow(ns: number): number {
    if (ns >= this.max) return this.count;
    const last = bucketIndex(Math.max(0, Math.floor(ns)), this.precision, this.subBuckets);
    let total = 0;
    // The bucket containing `ns` is included only if `ns` reaches its upper bound.
    const end = bucketUpperBound(last, this.precision) <= ns ? last : last - 1;
    for (let i = 0; i <= end; i++) total += this.counts[i];
    return total;
  }

  /** Adds another histogram's counts (same precision) into this one. */
  merge(other: Histogram | HistogramSnapshot): void {
    if (other.precision !== this.precision) {
      throw new CellError(
        'E_INVALID_ARGUMENT',
        `cannot merge histograms of precision ${other.precision} into ${this.precision}.`,
      );
    }
    if (other instanceof Histogram) {
      const src = other.counts;
      for (let i = 0; i < src.length; i++) if (src[i] !== 0) this.counts[i] += src[i];
    } else {
      const b = other.buckets;
      for (let i = 0; i + 1 < b.length; i += 2) {
        const idx = b[i];
        if (!Number.isInteger(idx) || idx < 0 || idx >= this.counts.length) {
          throw new CellError('E_DECODE', `histogram snapshot has bucket index ${idx} out of range.`);
        }
        this.counts[idx] += b[i + 1];
      }
    }
    if (other.count === 0) return;
    this.count += other.count;
    this.sum += other.sum;
    if (other.min < this.min) this.min = other.min;
    if (other.max > this.max) this.max = other.max;
  }

  /**
   * Removes an earlier state of the same series (counts only ever grow), leaving what was recorded
   * in between, e.g. the last dashboard interval. min and max stay the cumulative bounds, which only
   * loosens the clamp in `percentile`. Returns false, leaving this histogram unusable, if `earlier`
   * is not a prefix (the counters were reset).
   */
  subtract(earlier: Histogram): boolean {
    if (earlier.precision !== this.precision) return false;
    const a = this.counts;
    const b = earlier.counts;
    for (let i = 0; i < a.length; i++) {
      a[i] -= b[i];
      if (a[i] < 0) return false;
    }
    this.count -= earlier.count;
    this.sum -= earlier.sum;
    return true;
  }

  snapshot(): HistogramSnapshot {
    const buckets: number[] = [];
    const counts = this.counts;
    for (let i = 0; i < counts.length; i++) if (counts[i] !== 0) buckets.push(i, counts[i]);
    return {
      precision: this.precision,
      count: this.count,
      sum: this.sum,
      min: this.count === 0 ? 0 : this.min,
      max: this.max,
      buckets,
    };
  }

  static fromSnapshot(s: HistogramSnapshot): Histogram {
    const h = new Histogram(s.precision);
    h.merge(s);
    return h;
  }

  /** Iterates non-empty buckets as [upper bound ns, count], ascending. */
  *nonEmptyBuckets(): IterableIterator<[number, number]> {
    const counts = this.counts;
    for (let i = 0; i < counts.length; i++) if (counts[i] !== 0) yield [bucketUpperBound(i, this.precision), counts[i]];
  }
}

function bucketCount(precision: number): number {
  const sub = 1 << precision;
  return sub + (HISTOGRAM_MAX_EXPONENT - precision + 1) * sub;
}

/** Floor of log2 for a non-negative integer up to 2^53. */
function log2Floor(v: number): number {
  if (v < TWO_POW_32) return 31 - Math.clz32(v);
  return 63 - Math.clz32(Math.floor(v / TWO_POW_32));
}

export function bucketIndex(v: number, precision: number, subBuckets: number): number {
  if (v < subBuckets) return v;
  let e = log2Floor(v);
  if (e > HISTOGRAM_MAX_EXPONENT) {
    e = HISTOGRAM_MAX_EXPONENT;
    v = 2 ** (HISTOGRAM_MAX_EXPONENT + 1) - 1;
  }
  const shift = e - precision;
  // Values past 32 bits cannot use the shift operators.
  const sub = (v < TWO_POW_32 ? v >>> shift : Math.floor(v / 2 ** shift)) - subBuckets;
  return subBuckets + shift * subBuckets + sub;
}

/** Largest value that falls in bucket `i`. */
export function bucketUpperBound(i: number, precision: number): number {
  const sub = 1 << precision;
  if (i < sub) return i;
  const shift = Math.floor((i - sub) / sub);
  const s = (i - sub) % sub;
  return (sub + s + 1) * 2 ** shift - 1;
}
