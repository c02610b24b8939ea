import { CellError } from '../errors/index.js';

/**
 * The `cell tap` filter language. Small on purpose:
 *
 *   expr    := or
 *   or      := and ( '||' and )*
 *   and     := unary ( '&&' unary )*
 *   unary   := '!' unary | compare
 *   compare := operand ( ( '==' | '!=' | '<' | '<=' | '>' | '>=' | '~' ) operand )?
 *   operand := '(' expr ')' | number | string | 'true' | 'false' | 'null' | path
 *   path    := name ( '.' name | '[' integer ']' )*
 *
 * A path names a tap event property (`method`, `ok`, `error`, `latency_us`, `latency_ms`,
 * `bytes_in`, `bytes_out`, `id`), or a decoded message field: `req.x` / `res.x` explicitly, or a
 * bare `x`, looked up in the request first, then the reply. A bare name that resolves to nothing is
 * the word itself, so `method == place_order` needs no quotes; a filter that is just such a word
 * means `method == word`. `~` is "contains" for strings.
 * Comparisons between different types are false (`!=` true); numbers and 64-bit integers compare
 * by value. A compare with no operator tests truthiness (`ok`, `!req.urgent`).
 */

export interface TapEvent {
  readonly method: string;
  readonly id: number;
  readonly ok: boolean;
  readonly error?: string | undefined;
  readonly latencyNs: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly request?: unknown;
  readonly reply?: unknown;
}

export type TapFilter = (event: TapEvent) => boolean;

type Node =
  | { k: 'lit'; v: unknown }
  | { k: 'path'; root: string; parts: Array<string | number> }
  | { k: 'not'; e: Node }
  | { k: 'and' | 'or'; a: Node; b: Node }
  | { k: 'cmp'; op: string; a: Node; b: Node };

type Token = { t: 'num' | 'str' | 'name' | 'op'; v: string; at: number };

const OPS = ['&&', '||', '==', '!=', '<=', '>=', '<', '>', '~', '!', '(', ')', '.', '[', ']'];

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (c === ' ' || c === '\t' || c === '\n') {
      i++;
      continue;
    }
    if (c === '"' || c === "'") {
      let j = i + 1;
      let s = '';
      while (j < src.length && src[j] !== c) {
        if (src[j] === '\\' && j + 1 < src.length) j++;
        s += src[j];
        j++;
      }
      if (j >= src.length) throw syntax(src, i, 'unterminated string');
      out.push({ t: 'str', v: s, at: i });
      i = j + 1;
      continue;
    }
    const num = /^-?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?/i.exec(src.slice(i));
    if (num && (c !== '-' || !(out.length > 0 && ['num', 'str', 'name'].includes(out[out.length - 1].t)))) {
      out.push({ t: 'num', v: num[0], at: i });
      i += num[0].length;
      continue;
    }
    const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i));
    if (name) {
      out.push({ t: 'name', v: name[0], at: i });
      i += name[0].length;
      continue;
    }
    const op = OPS.find((o) => src.startsWith(o, i));
    if (!op) throw syntax(src, i, `unexpected character ${JSON.stringify(c)}`);
    out.push({ t: 'op', v: op, at: i });
    i += op.length;
  }
  return out;
}

function syntax(src: string, at: number, why: string): CellError {
  return new CellError('E_INVALID_ARGUMENT', `tap filter ${JSON.stringify(src)}: ${why} at column ${at + 1}.`, {
    fix: 'write e.g. method == place_order && amount > 100 (see docs/CLI.md, "cell tap").',
  });
}

export function parseFilter(src: string): Node {
  const tokens = tokenize(src);
  let pos = 0;
  const peek = () => tokens[pos];
  const isOp = (v: string) => peek()?.t === 'op' && peek().v === v;
  const expect = (v: string) => {
    if (!isOp(v)) throw syntax(src, peek()?.at ?? src.length, `expected '${v}'`);
    pos++;
  };

  const orExpr = (): Node => {
    let a = andExpr();
    while (isOp('||')) {
      pos++;
      a = { k: 'or', a, b: andExpr() };
    }
    return a;
  };
  const andExpr = (): Node => {
    let a = unary();
    while (isOp('&&')) {
      pos++;
      a = { k: 'and', a, b: unary() };
    }
    return a;
  };
  const unary = (): Node => {
    if (isOp('!')) {
      pos++;
      return { k: 'not', e: unary() };
    }
    const a = operand();
    const t = peek();
    if (t?.t === 'op' && ['==', '!=', '<', '<=', '>', '>=', '~'].includes(t.v)) {
      pos++;
      return { k: 'cmp', op: t.v, a, b: operand() };
    }
    return a;
  };
  const operand = (): Node => {
    const t = peek();
    if (t === undefined) throw syntax(src, src.length, 'unexpected end');
    if (t.t === 'op' && t.v === '(') {
      pos++;
      const e = orExpr();
      expect(')');
      return e;
    }
    pos++;
    if (t.t === 'num') return { k: 'lit', v: Number(t.v) };
    if (t.t === 'str') return { k: 'lit', v: t.v };
    if (t.t === 'name') {
      if (t.v === 'true') return { k: 'lit', v: true };
      if (t.v === 'false') return { k: 'lit', v: false };
      if (t.v === 'null') return { k: 'lit', v: null };
      const parts: Array<string | number> = [];
      for (;;) {
        if (isOp('.')) {
          pos++;
          const n = peek();
          if (n?.t !== 'name') throw syntax(src, n?.at ?? src.length, 'expected a field name after "."');
          parts.push(n.v);
          pos++;
        } else if (isOp('[')) {
          pos++;
          const n = peek();
          if (n?.t !== 'num' || !Number.isInteger(Number(n.v))) {
            throw syntax(src, n?.at ?? src.length, 'expected an index');
          }
          parts.push(Number(n.v));
          pos++;
          expect(']');
        } else break;
      }
      return { k: 'path', root: t.v, parts };
    }
    throw syntax(src, t.at, `unexpected '${t.v}'`);
  };

  if (tokens.length === 0) return { k: 'lit', v: true };
  const e = orExpr();
  if (pos < tokens.length) throw syntax(src, tokens[pos].at, `unexpected '${tokens[pos].v}'`);
  return e;
}

const MISSING = Symbol('missing');

function dig(value: unknown, parts: ReadonlyArray<string | number>): unknown {
  let v = value;
  for (const p of parts) {
    if (v === null || v === undefined || typeof v !== 'object') return MISSING;
    if (!(p in (v as object))) return MISSING;
    v = (v as Record<string | number, unknown>)[p];
  }
  return v;
}

function resolve(n: Extract<Node, { k: 'path' }>, e: TapEvent): unknown {
  if (n.root === 'req') return dig(e.request, n.parts);
  if (n.root === 'res') return dig(e.reply, n.parts);
  if (n.parts.length === 0) {
    switch (n.root) {
      case 'method':
        return e.method;
      case 'id':
        return e.id;
      case 'ok':
        return e.ok;
      case 'error':
        return e.error ?? null;
      case 'latency_us':
        return e.latencyNs / 1e3;
      case 'latency_ms':
        return e.latencyNs / 1e6;
      case 'latency_ns':
        return e.latencyNs;
      case 'bytes_in':
        return e.bytesIn;
      case 'bytes_out':
        return e.bytesOut;
    }
  }
  const path = [n.root, ...n.parts];
  const fromReq = dig(e.request, path);
  if (fromReq !== MISSING) return fromReq;
  const fromRes = dig(e.reply, path);
  if (fromRes !== MISSING) return fromRes;
  // A bare word stands for itself: `method == place_order`.
  return n.parts.length === 0 ? n.root : undefined;
}

const isNumeric = (v: unknown): v is number | bigint => typeof v === 'number' || typeof v === 'bigint';

function compare(op: string, a: unknown, b: unknown): boolean {
  if (op === '~') return typeof a === 'string' && typeof b === 'string' && a.includes(b);
  let c: number;
  if (isNumeric(a) && isNumeric(b)) {
    // Loose equality compares a bigint and a number by value; relational operators already do.
    // biome-ignore lint/suspicious/noDoubleEquals: bigint vs number by value
    c = a == b ? 0 : a < b ? -1 : 1;
  } else if (typeof a === 'string' && typeof b === 'string') {
    c = a === b ? 0 : a < b ? -1 : 1;
  } else if (typeof a === typeof b || a === null || b === null) {
    if (op === '==') return a === b;
    if (op === '!=') return a !== b;
    return false;
  } else {
    return op === '!=';
  }
  switch (op) {
    case '==':
      return c === 0;
    case '!=':
      return c !== 0;
    case '<':
      return c < 0;
    case '<=':
      return c <= 0;
    case '>':
      return c > 0;
    default:
      return c >= 0;
  }
}

function truthy(v: unknown): boolean {
  return v !== MISSING && Boolean(v);
}

function evaluate(n: Node, e: TapEvent): unknown {
  switch (n.k) {
    case 'lit':
      return n.v;
    case 'path':
      return resolve(n, e);
    case 'not':
      return !truthy(evaluate(n.e, e));
    case 'and':
      return truthy(evaluate(n.a, e)) && truthy(evaluate(n.b, e));
    case 'or':
      return truthy(evaluate(n.a, e)) || truthy(evaluate(n.b, e));
    case 'cmp':
      return compare(n.op, evaluate(n.a, e), evaluate(n.b, e));
  }
}

/** Compiles a filter expression; throws E_INVALID_ARGUMENT with the column of a syntax error. */
export function compileFilter(src: string): TapFilter {
  const ast = parseFilter(src);
  if (ast.k === 'path' && ast.parts.length === 0) {
    // A lone word that is no field is a method name: `cell tap market place_order`.
    const word = ast.root;
    return (e) => {
      const v = resolve(ast, e);
      return v === word ? e.method === word : truthy(v);
    };
  }
  return (e) => truthy(evaluate(ast, e));
}

// ------------------------------------------------------------------ which methods a filter can match

const UNKNOWN = Symbol('unknown');
const EVENT_NAMES = new Set(['id', 'ok', 'error', 'latency_us', 'latency_ms', 'latency_ns', 'bytes_in', 'bytes_out']);

/** What a method's events can hold: the top-level field names of its request and reply (undefined: not a struct). */
export interface MethodShape {
  readonly name: string;
  readonly requestFields: ReadonlySet<string> | undefined;
  readonly replyFields: ReadonlySet<string> | undefined;
}

/** Could a bare word be found in this method's request or reply (and so not stand for itself)? */
function mayBeField(word: string, m: MethodShape): boolean {
  if (m.requestFields === undefined || m.replyFields === undefined) return true;
  return m.requestFields.has(word) || m.replyFields.has(word) || word in Object.prototype;
}

/** Evaluates with only the method known: a value, or UNKNOWN when it depends on the call itself. */
function evaluateKnowing(n: Node, m: MethodShape): unknown {
  switch (n.k) {
    case 'lit':
      return n.v;
    case 'path': {
      if (n.root === 'req' || n.root === 'res') return UNKNOWN;
      if (n.parts.length === 0 && n.root === 'method') return m.name;
      if (n.parts.length === 0 && EVENT_NAMES.has(n.root)) return UNKNOWN;
      if (mayBeField(n.root, m)) return UNKNOWN;
      return n.parts.length === 0 ? n.root : undefined;
    }
    case 'not': {
      const v = evaluateKnowing(n.e, m);
      return v === UNKNOWN ? UNKNOWN : !truthy(v);
    }
    case 'and': {
      const a = evaluateKnowing(n.a, m);
      if (a !== UNKNOWN && !truthy(a)) return false;
      const b = evaluateKnowing(n.b, m);
      if (b !== UNKNOWN && !truthy(b)) return false;
      return a === UNKNOWN || b === UNKNOWN ? UNKNOWN : true;
    }
    case 'or': {
      const a = evaluateKnowing(n.a, m);
      if (a !== UNKNOWN && truthy(a)) return true;
      const b = evaluateKnowing(n.b, m);
      if (b !== UNKNOWN && truthy(b)) return true;
      return a === UNKNOWN || b === UNKNOWN ? UNKNOWN : false;
    }
    case 'cmp': {
      const a = evaluateKnowing(n.a, m);
      const b = evaluateKnowing(n.b, m);
      return a === UNKNOWN || b === UNKNOWN ? UNKNOWN : compare(n.op, a, b);
    }
  }
}

/**
 * For each method, whether some call of it could pass the filter. Conservative: false only when the
 * method alone decides (`method == place_order && …` rules out every other method), so a tap
 * attached with such a filter costs the other methods nothing (no decoding, no event).
 */
export function methodsFilterCanMatch(src: string, methods: readonly MethodShape[]): boolean[] {
  const ast = parseFilter(src);
  return methods.map((m) => {
    if (ast.k === 'path' && ast.parts.length === 0 && !EVENT_NAMES.has(ast.root) && ast.root !== 'method') {
      // The lone-word form (see compileFilter): a field's truthiness, or else the method's name.
      return mayBeField(ast.root, m) || ast.root === m.name;
    }
    const v = evaluateKnowing(ast, m);
    return v === UNKNOWN || truthy(v);
  });
}

/** The top-level field names of a struct genome, undefined for any other kind. */
export function structFieldNames(
  genome: { readonly kind: string } & { readonly [key: string]: unknown },
): ReadonlySet<string> | undefined {
  if (genome.kind !== 'struct' || !Array.isArray(genome.fields)) return undefined;
  return new Set((genome.fields as Array<{ name: string }>).map((f) => f.name));
}
