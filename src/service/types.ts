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
  // biome-ignore lint/suspicious/noExplicitAny: any method shape: each method keeps its own precise types in M
  M extends Record<string, MethodDef<any, any, any, any>> = Record<string, MethodDef<any, any, any, any>>,
> {
  readonly name: string;
  /** Methods by name. */
  readonly methods: M;
  /** Methods by id (index = id). */
  // biome-ignore lint/suspicious/noExplicitAny: the wire dispatch table holds methods of every shape
  readonly byId: ReadonlyArray<MethodDef<any, any, any, any>>;
  readonly genome: Genome;
  /** Fingerprint of the whole service genome (names, ids, input/output shapes). */
  readonly fingerprint: bigint;
}

/** What `rpc(input, output)` returns: a method before `service()` gives it a name and an id. */
// biome-ignore lint/suspicious/noExplicitAny: constraint over every codec
export interface RpcSpec<I extends Codec<any, any> = Codec<any, any>, O extends Codec<any, any> = Codec<any, any>> {
  readonly kind: 'rpc';
  readonly input: I;
  readonly output: O;
}

/** The typed methods a `service()` call produces from its rpc specs. */
export type MethodsOf<S extends Record<string, RpcSpec>> = {
  readonly [K in keyof S]: S[K] extends RpcSpec<infer I, infer O>
    ? I extends Codec<infer IT, infer IV>
      ? O extends Codec<infer OT, infer OV>
        ? MethodDef<IT, OT, IV, OV>
        : never
      : never
    : never;
};

/** Plain input value of a method. */
export type MethodInput<M> = M extends MethodDef<infer I, unknown, unknown, unknown> ? I : never;
/** Plain output value of a method. */
// biome-ignore lint/suspicious/noExplicitAny: inference position
export type MethodOutput<M> = M extends MethodDef<any, infer O, any, any> ? O : never;
/** Lazy view of a method's input (what a handler receives). */
// biome-ignore lint/suspicious/noExplicitAny: inference position
export type MethodInputView<M> = M extends MethodDef<any, any, infer IV, any> ? IV : never;
/** Lazy view of a method's output. */
// biome-ignore lint/suspicious/noExplicitAny: inference position
export type MethodOutputView<M> = M extends MethodDef<any, any, any, infer OV> ? OV : never;
/** The methods record of a service. */
export type ServiceMethods<S> = S extends ServiceDef<infer M> ? M : never;
/** Method names of a service. */
export type MethodName<S> = keyof ServiceMethods<S> & string;
