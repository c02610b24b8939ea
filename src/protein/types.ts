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
