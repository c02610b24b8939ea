// Colour for people, never for pipes: on a terminal unless NO_COLOR is set (https://no-color.org);
// FORCE_COLOR turns it on elsewhere (NO_COLOR still wins).
export function colorEnabled(stream: { isTTY?: boolean } = process.stdout): boolean {
  const env = process.env;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined) return env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false';
  return stream.isTTY === true && env.TERM !== 'dumb';
}

const CODES = { red: 31, green: 32, yellow: 33, gray: 90, bold: 1 } as const;
export type Paint = keyof typeof CODES;

/** `text` in `color` when colour is enabled for `stream`, else unchanged. */
export function paint(text: string, color: Paint, stream: { isTTY?: boolean } = process.stdout): string {
  return colorEnabled(stream) ? `\x1b[${CODES[color]}m${text}\x1b[0m` : text;
}
