import { isUtf8 } from 'node:buffer';
import { CellError } from '../errors/index.js';

/**
 * Helpers the generated encoders and readers call. They are passed into every compiled function as
 * one `rt` object, so generated code stays free of imports and V8 sees the same call targets everywhere.
 */

// Buffer's native UTF-8 routines accept any Uint8Array and skip TextEncoder's subarray allocation.
const nativeUtf8Write = (Buffer.prototype as unknown as { utf8Write: (s: string, o: number, n: number) => number })
  .utf8Write;
const nativeUtf8Slice = (Buffer.prototype as unknown as { utf8Slice: (s: number, e: number) => string }).utf8Slice;

/** Thrown by generated encoders on an invalid value; the entry point turns it into E_ENCODE with a path. */
export class InvalidValue extends Error {}
const INVALID = new InvalidValue('invalid value');

export function invalid(): never {
  throw INVALID;
}

export function decodeError(what: string): never {
  throw new CellError('E_DECODE', `malformed message: ${what}.`, {
    fix: 'check that both sides use the same schema (compare fingerprints) and that the bytes are not truncated.',
  });
}

/** A DataView over a whole ArrayBuffer, cached by buffer identity: messages arrive as subarrays of a few big buffers. */
let lastBuffer: ArrayBufferLike | undefined;
let lastView: DataView = new DataView(new ArrayBuffer(0));
let lastBytes: Uint8Array = new Uint8Array(0);

export function dataViewOf(buffer: ArrayBufferLike): DataView {
  if (buffer !== lastBuffer) {
    lastBuffer = buffer;
    lastView = new DataView(buffer);
    lastBytes = new Uint8Array(buffer);
  }
  return lastView;
}

/** The Uint8Array over the same whole buffer as the last `dataViewOf` call. */
export function bytesOfLast(): Uint8Array {
  return lastBytes;
}

/** Writes `s` as UTF-8 at `pos`; returns the end. The caller has reserved 3 bytes per UTF-16 unit. */
export function writeString(s: string, u8: Uint8Array, pos: number): number {
  const n = s.length;
  if (n < 48) {
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      u8[pos + i] = c;
    }
    if (i === n) return pos + n;
    return pos + i + nativeUtf8Write.call(u8, s.slice(i), pos + i, u8.length - pos - i);
  }
  return pos + nativeUtf8Write.call(u8, s, pos, u8.length - pos);
}

/** Exact UTF-8 length of `s` (lone surrogates count as the 3-byte U+FFFD they are encoded as). */
export function utf8Length(s: string): number {
  const n = s.length;
  if (n < 48) {
    let len = 0;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x80) len += 1;
      else if (c < 0x800) len += 2;
      else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          len += 4;
          i++;
        } else len += 3;
      } else len += 3;
    }
    return len;
  }
  return Buffer.byteLength(s, 'utf8');
}

/** Decodes `u8[start, start+len)` as strict UTF-8; invalid sequences are E_DECODE, never replaced. */
export function readString(u8: Uint8Array, start: number, len: number): string {
  if (len < 24) {
    let out = '';
    let i = start;
    const end = start + len;
    for (; i < end; i++) {
      const c = u8[i];
      if (c >= 0x80) break;
      out += String.fromCharCode(c);
    }
    if (i === end) return out;
  }
  const sub = u8.subarray(start, start + len);
  if (!isUtf8(sub)) decodeError('string is not valid UTF-8');
  return nativeUtf8Slice.call(u8, start, start + len);
}

export const MAX_SAFE = Number.MAX_SAFE_INTEGER;
export const U64_MAX = 0xffff_ffff_ffff_ffffn;
export const I64_MIN = -0x8000_0000_0000_0000n;
export const I64_MAX = 0x7fff_ffff_ffff_ffffn;

export function readBool(b: number): boolean {
  if (b === 0) return false;
  if (b === 1) return true;
  return decodeError('bool byte is not 0 or 1');
}

export function readUint(dv: DataView, p: number): number {
  const hi = dv.getUint32(p + 4, true);
  if (hi > 0x1fffff) decodeError('uint exceeds the safe-integer range');
  return hi * 4294967296 + dv.getUint32(p, true);
}

export function readInt(dv: DataView, p: number): number {
  const v = dv.getInt32(p + 4, true) * 4294967296 + dv.getUint32(p, true);
  if (!Number.isSafeInteger(v)) decodeError('int exceeds the safe-integer range');
  return v;
}

export const rt = {
  invalid,
  readBool,
  readUint,
  readInt,
  decodeError,
  writeString,
  utf8Length,
  readString,
  MAX_SAFE,
  U64_MAX,
  I64_MIN,
  I64_MAX,
};
export type Runtime = typeof rt;
