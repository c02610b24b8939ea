/**
 * IEEE CRC-32 (the polynomial of node:zlib's crc32) over a range of a buffer, table-driven eight
 * bytes at a time. For the WAL's entry records (~100 bytes each, one per entry on every node):
 * node:zlib's crc32 takes whole views only, so a record cost a view or two native calls, and each
 * call's argument checks cost more than the ~100 bytes of checksum work. Large ranges (a batch, a
 * snapshot) stay with node:zlib, which is faster per byte.
 */

const T = new Int32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++) {
  let c = T[n];
  for (let k = 1; k < 8; k++) {
    c = T[c & 0xff] ^ (c >>> 8);
    T[k * 256 + n] = c;
  }
}

/** CRC-32 of `b[start, end)`, equal to node:zlib's `crc32(b.subarray(start, end))`. */
export function crc32Range(b: Uint8Array, start: number, end: number): number {
  let c = -1;
  let p = start;
  while (end - p >= 8) {
    const a = c ^ (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24));
    c =
      T[1792 + (a & 0xff)] ^
      T[1536 + ((a >>> 8) & 0xff)] ^
      T[1280 + ((a >>> 16) & 0xff)] ^
      T[1024 + (a >>> 24)] ^
      T[768 + b[p + 4]] ^
      T[512 + b[p + 5]] ^
      T[256 + b[p + 6]] ^
      T[b[p + 7]];
    p += 8;
  }
  while (p < end) c = T[(c ^ b[p++]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
