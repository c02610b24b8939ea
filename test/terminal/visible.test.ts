import assert from 'node:assert/strict';
import { test } from 'node:test';
import { visible } from '../../src/terminal/visible.js';

test('control characters and escape sequences a cell writes are shown, not obeyed', () => {
  const attacks = [
    '\x1b]52;c;ZWNobyBoaQ==\x07', // OSC 52: write the operator's clipboard
    '\x1b]0;owned\x07', // window title
    '\x1b[2J\x1b[H', // clear screen, cursor home
    'ok\rFAKE', // carriage return over the line's prefix
    '\x1b[1A[stdout 2026-01-01T00:00:00.000Z root] forged', // cursor up over an earlier line
    '\x9b31m', // C1 CSI
    '\x00\x08\x7f',
  ];
  for (const a of attacks) {
    for (const keepColor of [false, true]) {
      const shown = visible(a, { keepColor });
      // biome-ignore lint/suspicious/noControlCharactersInRegex: no control character may remain
      assert.doesNotMatch(shown, /[\x00-\x08\x0b-\x1f\x7f-\x9f]/, JSON.stringify(shown));
    }
  }
  assert.equal(visible('a\x1b[2Jb'), 'a\\x1b[2Jb');
  assert.equal(visible('ok\rFAKE'), 'ok\\x0dFAKE');
});

test('tabs, newlines and ordinary text pass; colour only when kept', () => {
  assert.equal(visible('a\tb\nc — ünïcødé'), 'a\tb\nc — ünïcødé');
  assert.equal(visible('\x1b[31mred\x1b[0m', { keepColor: true }), '\x1b[31mred\x1b[0m');
  assert.equal(visible('\x1b[31mred\x1b[0m'), '\\x1b[31mred\\x1b[0m');
});
