// `cell call <cell> <method> '<json>'` and `cell genome <cell>`: a cell's contract as the cell itself
// describes it. Both fetch the genome over an inspection connection (fingerprint 0, built-in method
// 0xFFFF, docs/PROTOCOL.md § 2.5); `call` rebuilds the codecs from it, encodes the JSON input, calls
// the method over an ordinary connection (the fingerprints match by construction) and prints the
// decoded reply as JSON: 64-bit integers as decimal strings, bytes as base64, absent options as null.
import { CellError } from '../errors/index.js';
import { validateCellName } from '../paths/index.js';
import type { Genome } from '../protein/types.js';
import { serviceFromGenome } from '../service/service.js';
import type { ServiceDef } from '../service/types.js';
import { Synapse } from '../synapse/index.js';
import { intOption, parseCommand, suggestion, UsageError } from '../terminal/args.js';
import { visible } from '../terminal/visible.js';

export const CALL_USAGE = `usage: cell call <cell> <method> ['<json>'] [--timeout <ms>] [--json]

Calls one method of a running (or registered) cell and prints the reply as JSON. The input is the
method's value as JSON: objects for structs, numbers or decimal strings for 64-bit integers, base64
strings (or arrays of bytes) for bytes, null for an absent option, {"tag": "Name", "value": …} (or
just "Name") for an enum. A method without input takes no JSON. The cell's contract comes from the
cell itself (see \`cell genome <cell>\`); a registered cell is started by the Root on demand.
--timeout is the call's deadline (default 30000 ms); --json prints the reply on one line.`;

export const GENOME_USAGE = `usage: cell genome <cell> [--json]

Prints a cell's contract as the cell describes it: its service, the fingerprint callers must match,
and each method's id, input and output types. --json prints the genome reply itself.`;

/** What a Membrane answers to the built-in genome request (docs/PROTOCOL.md § 2.5). */
export interface GenomeReply {
  cell: string;
  service: string;
  protocol: number;
  fingerprint: string;
  genome: Genome;
}

const CALL = {
  usage: CALL_USAGE,
  options: { timeout: { type: 'string' }, json: { type: 'boolean' } },
  positionals: [2, 3],
  expects: 'a cell, a method and (unless the method takes none) its input as JSON: cell call counter add \'{"n": 1}\'',
} as const;

const GENOME = {
  usage: GENOME_USAGE,
  options: { json: { type: 'boolean' } },
  positionals: [1, 1],
  expects: 'exactly one cell name',
} as const;

async function fetchGenome(cell: string, timeoutMs: number): Promise<GenomeReply> {
  const inspector = await Synapse.inspect(cell, { timeoutMs });
  try {
    const reply = (await inspector.genome()) as GenomeReply;
    if (reply === null || typeof reply !== 'object' || typeof reply.genome !== 'object') {
      throw new CellError('E_PROTOCOL', 'the genome reply is not an object with a genome.', { cell });
    }
    return reply;
  } finally {
    await inspector.close().catch(() => {});
  }
}

/** The service the cell described; its fingerprint must be the one the cell announced. */
function rebuild(cell: string, reply: GenomeReply): ServiceDef {
  const svc = serviceFromGenome(reply.genome);
  const fp = `0x${svc.fingerprint.toString(16).padStart(16, '0')}`;
  if (fp !== reply.fingerprint) {
    throw new CellError(
      'E_SCHEMA_MISMATCH',
      `the cell's genome rebuilds to ${fp}, not the ${reply.fingerprint} it announced.`,
      {
        cell,
        fix: 'the cell and this `cell` command use different runtime versions; update the older one.',
      },
    );
  }
  return svc;
}

export async function runCallCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(args, CALL);
  if (parsed.help) {
    process.stdout.write(`${CALL_USAGE}\n`);
    return 0;
  }
  const [cellArg, methodName, inputText] = parsed.positionals as [string, string, string | undefined];
  const cell = validateCellName(cellArg);
  const timeoutMs = intOption(parsed.values.timeout, '--timeout', CALL_USAGE, { min: 1 }) ?? 30_000;
  let input: unknown;
  if (inputText !== undefined) {
    try {
      input = JSON.parse(inputText);
    } catch (err) {
      throw new UsageError(`the input is not JSON: ${(err as Error).message}`, CALL_USAGE);
    }
  }

  const reply = await fetchGenome(cell, timeoutMs);
  const svc = rebuild(cell, reply);
  const def = svc.methods[methodName];
  if (def === undefined) {
    const names = svc.byId.map((m) => m.name);
    throw new UsageError(
      `cell '${cell}' has no method '${methodName}'${suggestion(methodName, names)} (it has: ${names.join(', ')})`,
      CALL_USAGE,
    );
  }
  const inputGenome = def.input.genome;
  if (inputText === undefined && inputGenome.kind !== 'unit') {
    throw new UsageError(`${methodName} takes ${describeGenome(inputGenome)}; pass it as JSON`, CALL_USAGE);
  }
  let value: unknown;
  try {
    value = fromJson(inputGenome, input, '$');
  } catch (err) {
    if (err instanceof InputError) {
      throw new UsageError(`${err.message} (${methodName} takes ${describeGenome(inputGenome)})`, CALL_USAGE);
    }
    throw err;
  }

  const client = await Synapse.grow(svc, { name: cell, timeoutMs });
  try {
    const caller = client[methodName] as (input: unknown) => Promise<unknown>;
    const result = toJson(def.output.genome, await caller(value));
    process.stdout.write(`${parsed.values.json === true ? JSON.stringify(result) : JSON.stringify(result, null, 2)}\n`);
  } finally {
    await client.$close().catch(() => {});
  }
  return 0;
}

export async function runGenomeCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(args, GENOME);
  if (parsed.help) {
    process.stdout.write(`${GENOME_USAGE}\n`);
    return 0;
  }
  const cell = validateCellName(parsed.positionals[0] as string);
  const reply = await fetchGenome(cell, 30_000);
  if (parsed.values.json === true) {
    process.stdout.write(`${JSON.stringify(reply)}\n`);
    return 0;
  }
  const svc = rebuild(cell, reply);
  const lines = [`${cell}: service '${reply.service}', fingerprint ${reply.fingerprint}, protocol ${reply.protocol}`];
  for (const m of svc.byId) {
    lines.push(`  ${m.id}  ${m.name}(${describeGenome(m.input.genome)}) → ${describeGenome(m.output.genome)}`);
  }
  // Names come from the cell's genome reply: shown, never obeyed by the terminal.
  process.stdout.write(`${visible(lines.join('\n'))}\n`);
  return 0;
}

// ---- genome text ------------------------------------------------------------------------------

type Field = { name: string; type: Genome };
type Variant = { name: string; type: Genome | null };

/** A genome as one line of TypeScript-like text: `Pair { a: uint, note?: string }`, `vec<u8>`. */
export function describeGenome(g: Genome): string {
  switch (g.kind) {
    case 'vec':
      return `vec<${describeGenome(g.of as Genome)}>`;
    case 'array':
      return `${describeGenome(g.of as Genome)}[${String(g.length)}]`;
    case 'option':
      return `option<${describeGenome(g.of as Genome)}>`;
    case 'struct': {
      const fields = (g.fields as Field[]).map((f) =>
        f.type.kind === 'option'
          ? `${f.name}?: ${describeGenome(f.type.of as Genome)}`
          : `${f.name}: ${describeGenome(f.type)}`,
      );
      return `${String(g.name)} { ${fields.join(', ')} }`;
    }
    case 'enum': {
      const variants = (g.variants as Variant[]).map((v) =>
        v.type === null ? v.name : `${v.name}(${describeGenome(v.type)})`,
      );
      return `${String(g.name)}(${variants.join(' | ')})`;
    }
    case 'unit':
      return 'nothing';
    default:
      return g.kind;
  }
}

// ---- JSON ⇄ values ----------------------------------------------------------------------------

class InputError extends Error {}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  const text = JSON.stringify(v);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

const INT_RANGES: Readonly<Record<string, readonly [number, number]>> = {
  u8: [0, 0xff],
  u16: [0, 0xffff],
  u32: [0, 0xffff_ffff],
  i8: [-0x80, 0x7f],
  i16: [-0x8000, 0x7fff],
  i32: [-0x8000_0000, 0x7fff_ffff],
  uint: [0, Number.MAX_SAFE_INTEGER],
  int: [-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

/** The codec's value for a JSON value, or an InputError naming the path. */
export function fromJson(g: Genome, v: unknown, path: string): unknown {
  const fail = (expected: string): never => {
    throw new InputError(`input ${path}: expected ${expected}, got ${describe(v)}`);
  };
  const range = INT_RANGES[g.kind];
  if (range !== undefined) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < range[0] || v > range[1]) {
      fail(`an integer in ${range[0]}..${range[1]}`);
    }
    return v;
  }
  switch (g.kind) {
    case 'bool':
      return typeof v === 'boolean' ? v : fail('true or false');
    case 'f32':
    case 'f64':
      return typeof v === 'number' ? v : fail('a number');
    case 'u64':
    case 'i64': {
      let big: bigint | undefined;
      if (typeof v === 'number' && Number.isSafeInteger(v)) big = BigInt(v);
      else if (typeof v === 'string' && /^-?(\d+|0x[0-9a-fA-F]+)$/.test(v.trim())) {
        const s = v.trim();
        big = s.startsWith('-') ? -BigInt(s.slice(1)) : BigInt(s);
      }
      const [lo, hi] = g.kind === 'u64' ? [0n, 2n ** 64n - 1n] : [-(2n ** 63n), 2n ** 63n - 1n];
      if (big === undefined || big < lo || big > hi) {
        fail(`a ${g.kind === 'u64' ? 'non-negative ' : ''}64-bit integer (a number, or a decimal string beyond 2^53)`);
      }
      return big;
    }
    case 'string':
      return typeof v === 'string' ? v : fail('a string');
    case 'bytes':
      if (typeof v === 'string') return new Uint8Array(Buffer.from(v, 'base64'));
      if (Array.isArray(v) && v.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)) return Uint8Array.from(v);
      return fail('bytes as a base64 string or an array of 0..255');
    case 'unit':
      return v === undefined || v === null ? undefined : fail('nothing (null)');
    case 'option':
      return v === undefined || v === null ? undefined : fromJson(g.of as Genome, v, path);
    case 'vec':
    case 'array': {
      if (!Array.isArray(v)) return fail('an array');
      if (g.kind === 'array' && v.length !== g.length) fail(`an array of ${String(g.length)} elements`);
      return v.map((x, i) => fromJson(g.of as Genome, x, `${path}[${i}]`));
    }
    case 'struct': {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) return fail(`an object (${describeGenome(g)})`);
      const fields = g.fields as Field[];
      const names = fields.map((f) => f.name);
      for (const key of Object.keys(v)) {
        if (!names.includes(key)) {
          throw new InputError(`input ${path}: ${String(g.name)} has no field '${key}'${suggestion(key, names)}`);
        }
      }
      const out: Record<string, unknown> = {};
      for (const f of fields) {
        const x = (v as Record<string, unknown>)[f.name];
        if (x === undefined && f.type.kind !== 'option' && f.type.kind !== 'unit') {
          throw new InputError(`input ${path}: missing field '${f.name}' (${describeGenome(f.type)})`);
        }
        out[f.name] = fromJson(f.type, x, `${path}.${f.name}`);
      }
      return out;
    }
    case 'enum': {
      const variants = g.variants as Variant[];
      const tag = typeof v === 'string' ? v : (v as { tag?: unknown } | null)?.tag;
      const variant = variants.find((x) => x.name === tag);
      if (variant === undefined) {
        const names = variants.map((x) => x.name);
        return fail(`one of ${names.join(', ')} (as "Name" or {"tag": "Name", "value": …})`);
      }
      if (variant.type === null) return { tag: variant.name };
      return { tag: variant.name, value: fromJson(variant.type, (v as { value?: unknown }).value, `${path}.value`) };
    }
    default:
      throw new InputError(`input ${path}: this version cannot encode ${g.kind}`);
  }
}

/** A decoded value as JSON: bigints as decimal strings, bytes as base64, absent options as null. */
export function toJson(g: Genome, v: unknown): unknown {
  switch (g.kind) {
    case 'u64':
    case 'i64':
      return typeof v === 'bigint' ? v.toString() : v;
    case 'bytes':
      return v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : v;
    case 'unit':
      return null;
    case 'option':
      return v === undefined || v === null ? null : toJson(g.of as Genome, v);
    case 'vec':
    case 'array':
      return Array.isArray(v) ? v.map((x) => toJson(g.of as Genome, x)) : v;
    case 'struct': {
      const out: Record<string, unknown> = {};
      for (const f of g.fields as Field[]) out[f.name] = toJson(f.type, (v as Record<string, unknown>)[f.name]);
      return out;
    }
    case 'enum': {
      const e = v as { tag: string; value?: unknown };
      const variant = (g.variants as Variant[]).find((x) => x.name === e.tag);
      return variant?.type == null ? { tag: e.tag } : { tag: e.tag, value: toJson(variant.type, e.value) };
    }
    default:
      return v;
  }
}
