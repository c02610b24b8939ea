import type { Genome } from './types.js';

/**
 * Canonical JSON: object keys sorted, no whitespace, arrays in order. Two genomes that describe the
 * same contract serialise to the same string no matter how the objects were built.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'bigint') return JSON.stringify(value.toString());
    return JSON.stringify(value) ?? 'null';
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK64 = 0xffff_ffff_ffff_ffffn;

/** 64-bit FNV-1a over the UTF-8 bytes of `text`. */
export function fnv1a64(text: string): bigint {
  let hash = FNV_OFFSET;
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= BigInt(byte);
    hash = (hash * FNV_PRIME) & MASK64;
  }
  return hash;
}

/** The fingerprint of a genome: FNV-1a 64 of its canonical JSON. */
export function fingerprintOf(genome: Genome): bigint {
  return fnv1a64(canonicalJson(genome));
}

type G = { readonly kind: string; readonly [key: string]: unknown };
type FieldG = { name: string; type: G };
type VariantG = { name: string; type: G | null };

/**
 * Can a reader compiled from `reader` decode every message written with `writer`? True when the
 * genomes are equal, or differ only by the evolution rules of docs/PROTOCOL.md § 1.6: fields
 * appended to a struct (the reader's extra fields must be options; the writer's extra fields are
 * ignored) and variants appended to an enum on the reader's side.
 */
export function wireCompatible(reader: Genome, writer: Genome): boolean {
  const r = reader as G;
  const w = writer as G;
  if (r.kind !== w.kind) return false;
  switch (r.kind) {
    case 'vec':
    case 'option':
      return wireCompatible(r.of as G, w.of as G);
    case 'array':
      return r.length === w.length && wireCompatible(r.of as G, w.of as G);
    case 'struct': {
      if (r.name !== w.name) return false;
      const rf = r.fields as FieldG[];
      const wf = w.fields as FieldG[];
      for (let i = 0; i < rf.length; i++) {
        if (i >= wf.length) {
          if (rf[i].type.kind !== 'option') return false;
        } else if (rf[i].name !== wf[i].name || !wireCompatible(rf[i].type, wf[i].type)) {
          return false;
        }
      }
      return true;
    }
    case 'enum': {
      if (r.name !== w.name) return false;
      const rv = r.variants as VariantG[];
      const wv = w.variants as VariantG[];
      if (wv.length > rv.length) return false;
      return wv.every((v, i) => {
        const other = rv[i];
        if (other.name !== v.name) return false;
        if (v.type === null || other.type === null) return v.type === other.type;
        return wireCompatible(other.type, v.type);
      });
    }
    default:
      return canonicalJson(r) === canonicalJson(w);
  }
}
