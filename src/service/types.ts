import type { Codec, Genome } from '../protein/types.js';

/** One method of a service: ids are dense small integers (0..n-1) so servers dispatch by array index. */
export interface MethodDef<I = unknown, O = unknown, IV = I, OV = O> {
  readonly id: number;
  readonly name: string;
  readonly input: Codec<I, IV>;
  readonly output: Codec<O, OV>;
}

/** A cell's contract: imported by both the cell (Membrane) and its callers (Synapse). */
export interface ServiceDef<
  M extends Record<string, MethodDef<any, any, any, any>> = Record<string, MethodDef<any, any, any, any>>,
> {
  readonly name: string;
  /** Methods by name. */
  readonly methods: M;
  /** Methods by id (index = id). */
  readonly byId: ReadonlyArray<MethodDef<any, any, any, any>>;
  readonly genome: Genome;
  /** Fingerprint of the whole service genome (names, ids, input/output shapes). */
  readonly fingerprint: bigint;
}
