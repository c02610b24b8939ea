/**
 * Text a cell controls (its log lines, error messages, tap records, genome names) shown on the
 * operator's terminal: control characters and escape sequences would let a cell move the cursor,
 * rewrite earlier lines, set the window title or write the clipboard (OSC 52). They are shown as
 * `\xNN` instead. Colour (SGR: `ESC [ … m`) is kept where asked, since cells colour their logs.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters it neutralises
const CONTROL = /\x1b\[[0-9;:]*m|[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;

export function visible(text: string, options: { keepColor?: boolean } = {}): string {
  const keepColor = options.keepColor === true;
  return text.replace(CONTROL, (m) => {
    if (m.length > 1) return keepColor ? m : escaped(m.charCodeAt(0)) + m.slice(1);
    return escaped(m.charCodeAt(0));
  });
}

function escaped(code: number): string {
  return `\\x${code.toString(16).padStart(2, '0')}`;
}
