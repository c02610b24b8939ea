import { isUtf8 } from 'node:buffer';
import { CellError } from '../errors/index.js';

/**
 * Helpers the generated encoders and readers call. They are passed into every compiled function as
 * one `rt` object, so generated code stays free of imports and V8 sees the same call targets everywhere.
 */

// Buffer's native UTF-8 routines accept any Uint8Array and skip TextEncoder's subarray allocation.
const nativeUtf8Write = (Buffer.prototype as unknown as { utf8Write: (s: string, o: number, n: number) => number })
  .utf8Write;
const nativeLatin1Slice = (Buffer.prototype as unknown as { latin1Slice: (s: number, e: number) => string })
  .latin1Slice;
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

import { endianness } from 'node:os';

// Multi-byte values are assembled from bytes of the caller's own Uint8Array: no DataView, and no
// `.buffer` access (which costs more than the whole read on a Buffer). Floats and 64-bit integers go
// through one 8-byte scratch shared with typed-array views of it; those views use the host's byte
// order, so the codec refuses to load on a big-endian host rather than write wrong bytes.
if (endianness() !== 'LE') throw new Error('the protein codec requires a little-endian host');
const scratch8 = new Uint8Array(8);
const scratchF32 = new Float32Array(scratch8.buffer);
const scratchF64 = new Float64Array(scratch8.buffer);
const scratchU64 = new BigUint64Array(scratch8.buffer);
const scratchI64 = new BigInt64Array(scratch8.buffer);

export function w32(u8: Uint8Array, p: number, v: number): void {
  u8[p] = v;
  u8[p + 1] = v >>> 8;
  u8[p + 2] = v >>> 16;
  u8[p + 3] = v >>> 24;
}

export function r32(u8: Uint8Array, p: number): number {
  return (u8[p] | (u8[p + 1] << 8) | (u8[p + 2] << 16) | (u8[p + 3] << 24)) >>> 0;
}

export function ri32(u8: Uint8Array, p: number): number {
  return u8[p] | (u8[p + 1] << 8) | (u8[p + 2] << 16) | (u8[p + 3] << 24);
}

function put8(u8: Uint8Array, p: number): void {
  u8[p] = scratch8[0];
  u8[p + 1] = scratch8[1];
  u8[p + 2] = scratch8[2];
  u8[p + 3] = scratch8[3];
  u8[p + 4] = scratch8[4];
  u8[p + 5] = scratch8[5];
  u8[p + 6] = scratch8[6];
  u8[p + 7] = scratch8[7];
}

function get8(u8: Uint8Array, p: number): void {
  scratch8[0] = u8[p];
  scratch8[1] = u8[p + 1];
  scratch8[2] = u8[p + 2];
  scratch8[3] = u8[p + 3];
  scratch8[4] = u8[p + 4];
  scratch8[5] = u8[p + 5];
  scratch8[6] = u8[p + 6];
  scratch8[7] = u8[p + 7];
}

export function wf32(u8: Uint8Array, p: number, v: number): void {
  scratchF32[0] = v;
  u8[p] = scratch8[0];
  u8[p + 1] = scratch8[1];
  u8[p + 2] = scratch8[2];
  u8[p + 3] = scratch8[3];
}

export function rf32(u8: Uint8Array, p: number): number {
  scratch8[0] = u8[p];
  scratch8[1] = u8[p + 1];
  scratch8[2] = u8[p + 2];
  scratch8[3] = u8[p + 3];
  return scratchF32[0];
}

export function wf64(u8: Uint8Array, p: number, v: number): void {
  scratchF64[0] = v;
  put8(u8, p);
}

export function rf64(u8: Uint8Array, p: number): number {
  get8(u8, p);
  return scratchF64[0];
}

export function wu64(u8: Uint8Array, p: number, v: bigint): void {
  scratchU64[0] = v;
  put8(u8, p);
}

export function ru64(u8: Uint8Array, p: number): bigint {
  get8(u8, p);
  return scratchU64[0];
}

export function wi64(u8: Uint8Array, p: number, v: bigint): void {
  scratchI64[0] = v;
  put8(u8, p);
}

export function ri64(u8: Uint8Array, p: number): bigint {
  get8(u8, p);
  return scratchI64[0];
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

const fromCharCode = String.fromCharCode;

// Short ASCII strings (symbols, names, ids) repeat from message to message: a direct-mapped cache
// keyed by their bytes returns the same immutable string without allocating.
const CACHE_SIZE = 4096;
const cacheLo = new Int32Array(CACHE_SIZE);
const cacheHi = new Int32Array(CACHE_SIZE);
const cacheLen = new Uint8Array(CACHE_SIZE);
const cacheStr: string[] = new Array<string>(CACHE_SIZE).fill('');

function shortAscii(
  len: number,
  a: number,
  b: number,
  c: number,
  d: number,
  e: number,
  f: number,
  g: number,
  h: number,
): string {
  switch (len) {
    case 1:
      return fromCharCode(a);
    case 2:
      return fromCharCode(a, b);
    case 3:
      return fromCharCode(a, b, c);
    case 4:
      return fromCharCode(a, b, c, d);
    case 5:
      return fromCharCode(a, b, c, d, e);
    case 6:
      return fromCharCode(a, b, c, d, e, f);
    case 7:
      return fromCharCode(a, b, c, d, e, f, g);
    default:
      return fromCharCode(a, b, c, d, e, f, g, h);
  }
}

/** Decodes `u8[start, start+len)` as strict UTF-8; invalid sequences are E_DECODE, never replaced. */
export function readString(u8: Uint8Array, p: number, len: number): string {
  if (len <= 8) {
    if (len === 0) return '';
    const a = u8[p];
    const b = len > 1 ? u8[p + 1] : 0;
    const c = len > 2 ? u8[p + 2] : 0;
    const d = len > 3 ? u8[p + 3] : 0;
    const e = len > 4 ? u8[p + 4] : 0;
    const f = len > 5 ? u8[p + 5] : 0;
    const g = len > 6 ? u8[p + 6] : 0;
    const h = len > 7 ? u8[p + 7] : 0;
    if ((a | b | c | d | e | f | g | h) < 0x80) {
      const lo = a | (b << 8) | (c << 16) | (d << 24);
      const hi = e | (f << 8) | (g << 16) | (h << 24);
      const slot = (Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b) >>> 20) ^ len;
      if (cacheLo[slot] === lo && cacheHi[slot] === hi && cacheLen[slot] === len) return cacheStr[slot];
      const str = shortAscii(len, a, b, c, d, e, f, g, h);
      cacheLo[slot] = lo;
      cacheHi[slot] = hi;
      cacheLen[slot] = len;
      cacheStr[slot] = str;
      return str;
    }
  } else if (len <= 64) {
    let ascii = 0;
    const end = p + len;
    for (let i = p; i < end; i++) ascii |= u8[i];
    // ASCII is Latin-1 too, and latin1Slice skips UTF-8 validation.
    if (ascii < 0x80) return nativeLatin1Slice.call(u8, p, end);
  }
  if (!isUtf8(u8.subarray(p, p + len))) decodeError('string is not valid UTF-8');
  return nativeUtf8Slice.call(u8, p, p + len);
}

// decode() hands out bytes fields as copies so they outlive the input buffer; small copies come from a
// shared slab (like Node's Buffer pool) because allocating an ArrayBuffer per field costs ~1 µs.
const COPY_SLAB = 64 * 1024;
let copySlab = new Uint8Array(COPY_SLAB);
let copyBuffer = copySlab.buffer;
let copyPos = 0;

/**
 * Big `bytes` go through native copies when a native layer installed them (the shm addon):
 * - decode's copies of at least BIG_COPY bytes come from `copy`, in memory it recycles: fresh memory
 *   of that size faults every page in on first touch, which costs far more than the copy;
 * - other writes and copies of at least BIG_WRITE bytes go through `write` (memcpy): V8 copies into
 *   or out of a SharedArrayBuffer (a ring, a big slot) byte by byte when source and target are not
 *   aligned alike, and a frame puts the payload 12 bytes into its slot (7× slower for 1 MiB).
 */
const BIG_COPY = 64 * 1024;
const BIG_WRITE = 16 * 1024;
let bigCopy: ((u8: Uint8Array, p: number, len: number) => Uint8Array) | null = null;
let bigWrite: ((target: Uint8Array, p: number, source: Uint8Array) => void) | null = null;

/** Installs (or with null removes) the native copies; `copy` must return memory of its own. */
export function setBigBytes(
  hooks: {
    copy: (u8: Uint8Array, p: number, len: number) => Uint8Array;
    write: (target: Uint8Array, p: number, source: Uint8Array) => void;
  } | null,
): void {
  bigCopy = hooks?.copy ?? null;
  bigWrite = hooks?.write ?? null;
}

/** Writes `x` at `u8[p]` (a bytes field's body, 32 bytes or more). */
function writeBytes(x: Uint8Array, u8: Uint8Array, p: number): void {
  if (bigWrite !== null && x.length >= BIG_WRITE) bigWrite(u8, p, x);
  else u8.set(x, p);
}

export function copyBytes(u8: Uint8Array, p: number, len: number): Uint8Array {
  if (len > COPY_SLAB / 16) {
    if (len >= BIG_COPY && bigCopy !== null) return bigCopy(u8, p, len);
    // A real copy, never Buffer#slice (a view: a decoded field of a ring record or socket chunk would
    // change when that memory is reused); set() between plain Uint8Arrays is a memcpy, where
    // Uint8Array#slice called on a Buffer takes the species path (25× slower for 1 MiB).
    const out = new Uint8Array(len);
    const from = new Uint8Array(u8.buffer, u8.byteOffset + p, len);
    if (bigWrite !== null && len >= BIG_WRITE) bigWrite(out, 0, from);
    else out.set(from);
    return out;
  }
  if (len > COPY_SLAB - copyPos) {
    copySlab = new Uint8Array(COPY_SLAB);
    copyBuffer = copySlab.buffer;
    copyPos = 0;
  }
  const start = copyPos;
  if (len < 32) {
    for (let i = 0; i < len; i++) copySlab[start + i] = u8[p + i];
  } else {
    copySlab.set(u8.subarray(p, p + len), start);
  }
  copyPos = (start + len + 7) & ~7;
  // The constructor, not subarray(): subarray looks up a species constructor and costs ~1.6× as much.
  return new Uint8Array(copyBuffer, start, len);
}

// The memory behind the last source viewed: consecutive views mostly come from one socket chunk or
// one shared ring, and a Buffer's `buffer` getter costs more than building the view itself.
let viewSource: Uint8Array | null = null;
let viewMemory: ArrayBufferLike = new ArrayBuffer(0);
let viewBase = 0;

/**
 * A view of `u8[p, p + len)` sharing its memory, built with the Uint8Array constructor: a Buffer's
 * subarray() (its own method plus a species lookup) costs about twice as much per field.
 */
export function viewBytes(u8: Uint8Array, p: number, len: number): Uint8Array {
  if (u8 !== viewSource) {
    viewSource = u8;
    viewMemory = u8.buffer;
    viewBase = u8.byteOffset;
  }
  return new Uint8Array(viewMemory, viewBase + p, len);
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

export function readUint(u8: Uint8Array, p: number): number {
  const hi = r32(u8, p + 4);
  if (hi > 0x1fffff) decodeError('uint exceeds the safe-integer range');
  return hi * 4294967296 + r32(u8, p);
}

export function readInt(u8: Uint8Array, p: number): number {
  const v = ri32(u8, p + 4) * 4294967296 + r32(u8, p);
  if (!Number.isSafeInteger(v)) decodeError('int exceeds the safe-integer range');
  return v;
}

export const rt = {
  invalid,
  w32,
  r32,
  ri32,
  wf32,
  rf32,
  wf64,
  rf64,
  wu64,
  ru64,
  wi64,
  ri64,
  readBool,
  readUint,
  readInt,
  decodeError,
  writeString,
  utf8Length,
  readString,
  copyBytes,
  writeBytes,
  viewBytes,
  MAX_SAFE,
  U64_MAX,
  I64_MIN,
  I64_MAX,
};
