/**
 * The protein contract: what every schema type offers. The compiler in this folder generates the
 * code behind these methods once per schema; transports (Membrane, Synapse, shm, Axon) depend only
 * on this interface.
 */

/** A compiled codec for one wire type. `T` is the plain JavaScript value; `V` its lazy view. */
export interface Codec<T, V = T> {
  /** Canonical description of the wire shape (plain JSON-able data). */
  readonly genome: Genome;
  /** 64-bit FNV-1a style fingerprint of the canonical genome JSON; changes iff the wire shape changes. */
  readonly fingerprint: bigint;
  /** Exact number of bytes `encodeInto` will write for `value`. */
  sizeOf(value: T): number;
  /** Encodes into a new buffer of exactly the encoded size. */
  encode(value: T): Uint8Array;
  /** Encodes at `offset`; returns the offset just past the value. Throws E_ENCODE if it does not fit. */
  encodeInto(value: T, target: Uint8Array, offset: number): number;
  /**
   * A lazy accessor over `bytes[offset, offset+length)`: struct fields are getters reading straight from
   * the bytes, strings decode on access, `bytes` fields are subarrays (no copy). Validates the outer
   * framing eagerly and throws CellError('E_DECODE') on malformed input; never reads out of bounds.
   * Scalars view as their value.
   */
  view(bytes: Uint8Array, offset?: number, length?: number): V;
  /** Materialises a plain value; throws CellError('E_DECODE') on malformed input. */
  decode(bytes: Uint8Array, offset?: number, length?: number): T;
}

/** JSON-able canonical schema description. */
export type Genome = { readonly kind: string } & { readonly [key: string]: unknown };

/** Any codec, for constraints. */
// biome-ignore lint/suspicious/noExplicitAny: a constraint over every codec needs `any` in both positions
export type AnyCodec = Codec<any, any>;

/** The plain value type of a codec: `type Order = Infer<typeof Order>`. */
export type Infer<C> = C extends Codec<infer T, unknown> ? T : never;

/** The lazy view type of a codec. */
// biome-ignore lint/suspicious/noExplicitAny: V is inferred
export type InferView<C> = C extends Codec<any, infer V> ? V : never;

/** Marks `t.option(...)` codecs so struct fields of that type become optional properties. */
export interface OptionMarker {
  readonly optional: true;
}

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type OptionalKeys<F> = { [K in keyof F]: F[K] extends OptionMarker ? K : never }[keyof F];
type RequiredKeys<F> = Exclude<keyof F, OptionalKeys<F>>;

/** Field name → codec. */
export type Fields = Record<string, AnyCodec>;

/** The plain value of a struct: option fields are optional properties. */
export type StructValue<F extends Fields> = Simplify<
  { [K in RequiredKeys<F>]: Infer<F[K]> } & { [K in OptionalKeys<F>]?: Infer<F[K]> }
>;

/** The view of a struct: read-only getters over the bytes. */
export type StructView<F extends Fields> = Simplify<
  { readonly [K in RequiredKeys<F>]: InferView<F[K]> } & { readonly [K in OptionalKeys<F>]?: InferView<F[K]> }
>;

/** A lazy sequence over encoded elements (vec and fixed array views). */
export interface SeqView<V> extends Iterable<V> {
  readonly length: number;
  /**
   * Element `i`; throws RangeError when `i` is not an index below `length`, and CellError('E_DECODE')
   * when its slot breaks decode's ordering rule: it leaves the range or overlaps the slot before it
   * (or, read out of order, the slot after it). O(1); see docs/PROTOCOL.md § 1.4.
   */
  get(i: number): V;
  /** Materialises every element view into an array; all of them, or CellError('E_DECODE') like decode. */
  toArray(): V[];
  /** Same as toArray(), so JSON.stringify and console.log show the elements, not the buffer. */
  toJSON(): V[];
}

/** Variant name → payload codec, or `null` for a variant without payload. */
export type Variants = Record<string, AnyCodec | null>;

/** A tagged union value: `{ tag: 'Ping', value: 42n }`, or `{ tag: 'Stop' }` for a variant without payload. */
export type EnumValue<Vs extends Variants> = {
  [K in keyof Vs & string]: Vs[K] extends AnyCodec
    ? { readonly tag: K; readonly value: Infer<Vs[K]> }
    : { readonly tag: K };
}[keyof Vs & string];

export type EnumView<Vs extends Variants> = {
  [K in keyof Vs & string]: Vs[K] extends AnyCodec
    ? { readonly tag: K; readonly value: InferView<Vs[K]> }
    : { readonly tag: K };
}[keyof Vs & string];

/** A struct codec, usable as a message or as a field type. */
export interface StructCodec<F extends Fields> extends Codec<StructValue<F>, StructView<F>> {
  readonly kind: 'struct';
  readonly name: string;
  readonly fields: F;
}

export interface EnumCodec<Vs extends Variants> extends Codec<EnumValue<Vs>, EnumView<Vs>> {
  readonly kind: 'enum';
  readonly name: string;
  readonly variants: Vs;
}
