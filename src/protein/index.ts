// protein: schema builder, compiled codecs, lazy views, genome and fingerprint.

export { CompiledCodec, isCodec } from './compile.js';
export { canonicalJson, fingerprintOf, wireCompatible } from './genome.js';
export { protein, t } from './schema.js';
export type {
  AnyCodec,
  Codec,
  EnumCodec,
  EnumValue,
  EnumView,
  Fields,
  Genome,
  Infer,
  InferView,
  OptionMarker,
  SeqView,
  StructCodec,
  StructValue,
  StructView,
  Variants,
} from './types.js';
