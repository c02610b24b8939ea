// Codecs rebuilt from a genome (§ 1.7): a tool that knows a cell only by its genome reply (`cell call`,
// `cell genome`) gets the same wire shape, and so the same fingerprint, as the cell's own codecs.
import { CellError } from '../errors/index.js';
import { protein, t } from './schema.js';
import type { AnyCodec, Genome } from './types.js';

const SCALARS: Readonly<Record<string, AnyCodec>> = {
  bool: t.bool,
  u8: t.u8,
  u16: t.u16,
  u32: t.u32,
  i8: t.i8,
  i16: t.i16,
  i32: t.i32,
  f32: t.f32,
  f64: t.f64,
  u64: t.u64,
  i64: t.i64,
  uint: t.uint,
  int: t.int,
  string: t.string,
  bytes: t.bytes,
  unit: t.unit,
};

const MAX_DEPTH = 64;

function unreadable(what: string): CellError {
  return new CellError('E_SCHEMA_INVALID', `the genome cannot be read: ${what}.`, {
    fix: 'the cell and this tool may speak different protocol versions; update the older one.',
  });
}

function child(genome: Genome, key: string): Genome {
  const g = genome[key] as Genome | null | undefined;
  if (g === null || typeof g !== 'object' || typeof g.kind !== 'string')
    throw unreadable(`${genome.kind} without '${key}'`);
  return g;
}

/** The codec a genome describes. Throws E_SCHEMA_INVALID for a genome this version does not know. */
export function codecFromGenome(genome: Genome, depth = 0): AnyCodec {
  if (depth > MAX_DEPTH) throw unreadable(`nested deeper than ${MAX_DEPTH}`);
  const scalar = SCALARS[genome.kind];
  if (scalar !== undefined) return scalar;
  switch (genome.kind) {
    case 'vec':
      return t.vec(codecFromGenome(child(genome, 'of'), depth + 1));
    case 'option':
      return t.option(codecFromGenome(child(genome, 'of'), depth + 1));
    case 'array':
      return t.array(codecFromGenome(child(genome, 'of'), depth + 1), Number(genome.length));
    case 'struct': {
      if (!Array.isArray(genome.fields)) throw unreadable(`struct ${String(genome.name)} without fields`);
      const fields = (genome.fields as Array<{ name: string; type: Genome }>).map(
        (f) => [f.name, codecFromGenome(f.type, depth + 1)] as const,
      );
      return protein(String(genome.name), Object.fromEntries(fields));
    }
    case 'enum': {
      if (!Array.isArray(genome.variants)) throw unreadable(`enum ${String(genome.name)} without variants`);
      const variants = (genome.variants as Array<{ name: string; type: Genome | null }>).map(
        (v) => [v.name, v.type === null ? null : codecFromGenome(v.type, depth + 1)] as const,
      );
      return t.enum(String(genome.name), Object.fromEntries(variants));
    }
    default:
      throw unreadable(`unknown kind '${genome.kind}'`);
  }
}
