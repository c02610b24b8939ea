import { CellError } from '../errors/index.js';
import { validateCellName } from '../paths/index.js';
import { CompiledCodec } from '../protein/compile.js';
import { codecFromGenome } from '../protein/from-genome.js';
import { canonicalJson, fingerprintOf, wireCompatible } from '../protein/genome.js';
import type { AnyCodec, Genome } from '../protein/types.js';
import type { MethodDef, MethodsOf, RpcSpec, ServiceDef } from './types.js';

const METHOD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
/** Method names that would shadow properties of the typed client proxy or of plain objects. */
const RESERVED_METHODS = new Set(['constructor', '__proto__', 'prototype', 'then', 'toJSON', 'toString', 'valueOf']);
/** Ids are u16 on the wire of the framing layer; leave room. */
const MAX_METHODS = 4096;

function requireCodec(codec: unknown, where: string): AnyCodec {
  if (codec instanceof CompiledCodec) return codec;
  throw new CellError('E_SCHEMA_INVALID', `${where} is not a protein type.`, {
    fix: 'use a type from `t`, a struct made with protein(), or t.unit for no value.',
  });
}

/** Declares one method: `rpc(input, output)`. Use `t.unit` for "no arguments" or "no result". */
export function rpc<I extends AnyCodec, O extends AnyCodec>(input: I, output: O): RpcSpec<I, O> {
  requireCodec(input, 'rpc input');
  requireCodec(output, 'rpc output');
  return Object.freeze({ kind: 'rpc', input, output });
}

/**
 * Declares a service. Method ids are the declaration order of the methods (0..n-1): appending a
 * method keeps every existing id, and any reordering changes the fingerprint, which covers the
 * service name and every method's name, id and input/output genome.
 */
export function service<S extends Record<string, RpcSpec>>(name: string, methods: S): ServiceDef<MethodsOf<S>> {
  validateCellName(name);
  if (methods === null || typeof methods !== 'object') {
    throw new CellError('E_SCHEMA_INVALID', `service ${name} needs a methods object.`);
  }
  // Method names cannot look like integers, so Object.keys keeps the declaration order.
  const names = Object.keys(methods);
  if (names.length > MAX_METHODS) {
    throw new CellError('E_SCHEMA_INVALID', `service ${name} declares ${names.length} methods (max ${MAX_METHODS}).`);
  }
  const byName: Record<string, MethodDef> = {};
  const byId: MethodDef[] = [];
  const genomes: Genome[] = [];
  for (const [id, method] of names.entries()) {
    if (!METHOD_NAME.test(method) || RESERVED_METHODS.has(method)) {
      throw new CellError('E_NAME_INVALID', `invalid method name ${JSON.stringify(method)} in service ${name}.`, {
        fix: 'use 1-64 letters, digits or "_", starting with a letter or "_" (not then, constructor, toJSON, …).',
      });
    }
    const spec = methods[method] as RpcSpec | undefined;
    if (spec === undefined || spec === null || (spec as RpcSpec).kind !== 'rpc') {
      throw new CellError('E_SCHEMA_INVALID', `method ${name}.${method} must be declared with rpc(input, output).`);
    }
    const input = requireCodec(spec.input, `${name}.${method} input`);
    const output = requireCodec(spec.output, `${name}.${method} output`);
    const def: MethodDef = Object.freeze({ id, name: method, input, output });
    byName[method] = def;
    byId.push(def);
    genomes.push({ kind: 'method', name: method, id, input: input.genome, output: output.genome });
  }
  const genome: Genome = { kind: 'service', name, methods: genomes };
  return Object.freeze({
    name,
    methods: Object.freeze(byName) as unknown as MethodsOf<S>,
    byId: Object.freeze(byId),
    genome,
    fingerprint: fingerprintOf(genome),
  });
}

/** The canonical JSON text of a service genome (what a cell answers to a genome request). */
export function genomeJson(def: ServiceDef): string {
  return canonicalJson(def.genome);
}

/**
 * Can `server` serve callers compiled against `client`? Every client method must exist on the server
 * under the same id, the server must read the client's input and the client must read the server's
 * output (wireCompatible). Used when fingerprints differ, to accept compatible evolution.
 */
export function serviceCompatible(server: ServiceDef, client: ServiceDef): boolean {
  if (server.name !== client.name) return false;
  for (const m of client.byId) {
    const s = server.byId[m.id];
    if (s === undefined || s.name !== m.name) return false;
    if (!wireCompatible(s.input.genome, m.input.genome)) return false;
    if (!wireCompatible(m.output.genome, s.output.genome)) return false;
  }
  return true;
}

/**
 * The service a genome describes (what a cell answers to the built-in genome request): methods with
 * the same ids, names and codecs, hence the same fingerprint. For tools that call a cell without its
 * contract's source (`cell call`).
 */
export function serviceFromGenome(genome: Genome): ServiceDef {
  const methods = genome.methods;
  if (genome.kind !== 'service' || typeof genome.name !== 'string' || !Array.isArray(methods)) {
    throw new CellError('E_SCHEMA_INVALID', 'the genome does not describe a service.', {
      fix: "pass the `genome` field of a cell's genome reply.",
    });
  }
  const sorted = [...(methods as Array<{ name: string; id: number; input: Genome; output: Genome }>)].sort(
    (a, b) => a.id - b.id,
  );
  const specs: Record<string, RpcSpec> = {};
  for (const m of sorted) specs[m.name] = rpc(codecFromGenome(m.input), codecFromGenome(m.output));
  return service(genome.name, specs);
}
