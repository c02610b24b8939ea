// protein: schema builder, compiled codecs, lazy views, genome and fingerprint.

export { isCodec } from './compile.js';
export { canonicalJson, fingerprintOf, wireCompatible } from './genome.js';
export { setBigBytes } from './runtime.js';
export { protein, t } from './schema.js';
export type {
  AnyCodec,
  Codec,
  EnumCodec,
  EnumValue,
  EnumView,
  Genome,
  Infer,
  InferView,
  SeqView,
  StructCodec,
  StructValue,
  StructView,
} from './types.js';
