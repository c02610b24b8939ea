// The one command-line parser every `cell` command goes through: node:util.parseArgs in strict mode
// (so `--opt=value` and `--opt value` both work), `--help`/`-h` on every command, unknown options
// refused with the nearest known one suggested, and positional counts checked. Usage errors are
// `UsageError`s: the CLI prints them with the command's usage and exits with 2.
import { parseArgs } from 'node:util';
import { nearest } from '../errors/suggest.js';

export class UsageError extends Error {
  constructor(
    message: string,
    readonly usage: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
}

export interface CommandSpec<O extends Record<string, OptionSpec>> {
  /** The command's help text, starting with `usage: cell …`. */
  usage: string;
  options: O;
  /** How many positional arguments the command takes: [min, max] (max Infinity for "any"). */
  positionals: readonly [number, number];
  /** What the positionals are, for the message when the count is wrong ("a cell name"). */
  expects?: string;
}

export type Values<O extends Record<string, OptionSpec>> = {
  [K in keyof O]?: O[K]['type'] extends 'string'
    ? O[K]['multiple'] extends true
      ? string[]
      : string
    : O[K]['multiple'] extends true
      ? boolean[]
      : boolean;
};

export type Parsed<O extends Record<string, OptionSpec>> =
  | { help: true }
  | { help: false; values: Values<O>; positionals: string[] };

export { editDistance, nearest } from '../errors/suggest.js';

/** ` (did you mean --x?)` or nothing. */
export function suggestion(word: string, candidates: readonly string[], prefix = ''): string {
  const n = nearest(word, candidates);
  return n === undefined ? '' : `; did you mean ${prefix}${n}?`;
}

/** Parses one command's arguments (everything after the command name). */
export function parseCommand<O extends Record<string, OptionSpec>>(args: string[], spec: CommandSpec<O>): Parsed<O> {
  const options = { ...spec.options, help: { type: 'boolean', short: 'h' } } as Record<string, OptionSpec>;
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (err) {
    throw usageFromParseArgs(err as NodeJS.ErrnoException, options, spec.usage);
  }
  if (parsed.values.help === true) return { help: true };
  const [min, max] = spec.positionals;
  const n = parsed.positionals.length;
  if (n < min || n > max) {
    const what = spec.expects ?? (max === 0 ? 'no arguments' : `${min === max ? min : `${min} to ${max}`} argument(s)`);
    const extra = n > max ? ` (unexpected: ${parsed.positionals.slice(max).join(' ')})` : '';
    throw new UsageError(`expected ${what}${extra}`, spec.usage);
  }
  const { help: _, ...values } = parsed.values;
  return { help: false, values: values as Values<O>, positionals: parsed.positionals };
}

function usageFromParseArgs(err: NodeJS.ErrnoException, options: Record<string, OptionSpec>, usage: string): Error {
  const longs = Object.keys(options).map((k) => `--${k}`);
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      const option = /'([^']+)'/.exec(err.message)?.[1] ?? '?';
      const bare = option.split('=')[0] as string;
      return new UsageError(`unknown option ${bare}${suggestion(bare, longs)}`, usage);
    }
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      // "Option '-n, --lines <value>' argument missing" / "Option '--json' does not take an argument"
      const name = /--[A-Za-z0-9-]+/.exec(err.message)?.[0] ?? /'(-[^' ,]+)/.exec(err.message)?.[1] ?? 'an option';
      return new UsageError(
        err.message.includes('does not take') ? `${name} takes no value` : `${name} needs a value`,
        usage,
      );
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return new UsageError(err.message, usage);
    default:
      return err;
  }
}

/** A whole number option within bounds; undefined when absent. */
export function intOption(
  value: string | undefined,
  name: string,
  usage: string,
  bounds: { min?: number; max?: number } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  const min = bounds.min ?? 0;
  const max = bounds.max ?? Number.MAX_SAFE_INTEGER;
  if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `a whole number ≥ ${min}` : `a whole number from ${min} to ${max}`;
    throw new UsageError(`${name} takes ${range}, not '${value}'`, usage);
  }
  return n;
}

/** A positive number option (fractions allowed); undefined when absent. */
export function positiveOption(value: string | undefined, name: string, usage: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) {
    throw new UsageError(`${name} takes a positive number, not '${value}'`, usage);
  }
  return n;
}
