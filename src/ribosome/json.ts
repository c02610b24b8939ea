/**
 * JSON read from files (cell.json, tsconfig.json) with errors that say where, never what: V8's
 * JSON.parse message quotes the text it failed on, and the file may hold a secret (a manifest
 * pointed at the wrong file, a tsconfig that `extends` one).
 */

/** A syntax error at a position; the message carries no part of the text. */
export class JsonPositionError extends Error {
  constructor(
    what: string,
    readonly byte: number,
    readonly line: number,
    readonly column: number,
  ) {
    super(
      byte < 0
        ? `${what} is not valid JSON`
        : `${what} is not valid JSON near byte ${byte} (line ${line}, column ${column})`,
    );
    this.name = 'JsonPositionError';
  }
}

/**
 * Parses `text` as JSON; with `comments`, as tsconfig's dialect (`//` and `/* *\/` comments,
 * trailing commas). A leading byte-order mark is ignored. Throws JsonPositionError.
 */
export function parseJsonText(text: string, what: string, opts: { comments?: boolean } = {}): unknown {
  let s = text.charCodeAt(0) === 0xfeff ? ` ${text.slice(1)}` : text;
  if (opts.comments) s = blankComments(s);
  try {
    return JSON.parse(s);
  } catch {
    const at = syntaxErrorIndex(s);
    if (at < 0) throw new JsonPositionError(what, -1, 0, 0);
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < at; i++) {
      if (s.charCodeAt(i) === 10) {
        line++;
        lineStart = i + 1;
      }
    }
    throw new JsonPositionError(what, Buffer.byteLength(s.slice(0, at), 'utf8'), line, at - lineStart + 1);
  }
}

/**
 * Replaces comments and trailing commas with spaces (newlines kept), so offsets in the result are
 * offsets in the original text.
 */
function blankComments(s: string): string {
  const out = s.split('');
  let i = 0;
  let lastComma = -1; // index of a comma not yet followed by anything but blanks
  while (i < s.length) {
    const c = s[i];
    if (c === '"') {
      lastComma = -1;
      i++;
      while (i < s.length && s[i] !== '"') i += s[i] === '\\' ? 2 : 1;
      i++;
    } else if (c === '/' && s[i + 1] === '/') {
      while (i < s.length && s[i] !== '\n') out[i++] = ' ';
    } else if (c === '/' && s[i + 1] === '*') {
      const end = s.indexOf('*/', i + 2);
      const stop = end < 0 ? s.length : end + 2;
      for (; i < stop; i++) if (s[i] !== '\n') out[i] = ' ';
    } else if (c === ',') {
      lastComma = i++;
    } else if (c === '}' || c === ']') {
      if (lastComma >= 0) out[lastComma] = ' ';
      lastComma = -1;
      i++;
    } else {
      if (c !== ' ' && c !== '\t' && c !== '\n' && c !== '\r') lastComma = -1;
      i++;
    }
  }
  return out.join('');
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const HEX4 = /^[0-9a-fA-F]{4}$/;

/** The index of the first character that makes `s` invalid JSON, or -1 when it is valid. */
export function syntaxErrorIndex(s: string): number {
  let i = 0;
  const blank = (): void => {
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 32 || c === 9 || c === 10 || c === 13) i++;
      else return;
    }
  };
  const string = (): boolean => {
    i++; // the opening quote
    while (i < s.length) {
      const c = s.charCodeAt(i);
      if (c === 34) {
        i++;
        return true;
      }
      if (c < 0x20) return false;
      if (c === 92) {
        const e = s[i + 1];
        if (e === 'u') {
          if (!HEX4.test(s.slice(i + 2, i + 6))) return false;
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2;
        else {
          i++;
          return false;
        }
      } else i++;
    }
    return false;
  };
  const value = (depth: number): boolean => {
    blank();
    if (depth > 1000) return false;
    const c = s[i];
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      i++;
      blank();
      if (s[i] === close) {
        i++;
        return true;
      }
      for (;;) {
        if (c === '{') {
          blank();
          if (s[i] !== '"' || !string()) return false;
          blank();
          if (s[i] !== ':') return false;
          i++;
        }
        if (!value(depth + 1)) return false;
        blank();
        if (s[i] === ',') i++;
        else if (s[i] === close) {
          i++;
          return true;
        } else return false;
      }
    }
    if (c === '"') return string();
    for (const word of ['true', 'false', 'null']) {
      if (s.startsWith(word, i)) {
        i += word.length;
        return true;
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(s);
    if (m === null) return false;
    i += m[0].length;
    return true;
  };
  if (!value(0)) return Math.min(i, s.length);
  blank();
  return i < s.length ? i : -1;
}
