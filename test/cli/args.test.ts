import assert from 'node:assert/strict';
import { test } from 'node:test';
import { editDistance, intOption, nearest, parseCommand, positiveOption, UsageError } from '../../src/terminal/args.js';

const SPEC = {
  usage: 'usage: cell demo <name> [--lines <n>] [--follow] [--json]',
  options: {
    lines: { type: 'string', short: 'n' },
    follow: { type: 'boolean', short: 'f' },
    json: { type: 'boolean' },
  },
  positionals: [1, 1],
  expects: 'exactly one cell name',
} as const;

const usageError = (re: RegExp) => (err: unknown) => err instanceof UsageError && re.test(err.message);

test('--opt=value and --opt value parse alike; short forms too', () => {
  for (const args of [
    ['x', '--lines=5'],
    ['x', '--lines', '5'],
    ['-n', '5', 'x'],
    ['x', '-n5'],
  ]) {
    const p = parseCommand(args, SPEC);
    assert.equal(p.help, false);
    if (!p.help) {
      assert.equal(p.values.lines, '5', args.join(' '));
      assert.deepEqual(p.positionals, ['x']);
    }
  }
  const p = parseCommand(['x', '-f', '--json'], SPEC);
  assert.ok(!p.help && p.values.follow === true && p.values.json === true);
});

test('--help and -h on any command, whatever else is on the line', () => {
  assert.deepEqual(parseCommand(['--help'], SPEC), { help: true });
  assert.deepEqual(parseCommand(['x', 'y', '-h'], SPEC), { help: true });
});

test('unknown options are refused with the nearest known one', () => {
  assert.throws(() => parseCommand(['x', '--jsn'], SPEC), usageError(/^unknown option --jsn; did you mean --json\?$/));
  assert.throws(
    () => parseCommand(['x', '--folow=1'], SPEC),
    usageError(/^unknown option --folow; did you mean --follow\?$/),
  );
  assert.throws(() => parseCommand(['x', '--zzzzzz'], SPEC), usageError(/^unknown option --zzzzzz$/));
  assert.throws(() => parseCommand(['x', '-q'], SPEC), usageError(/^unknown option -q/));
});

test('missing values, values for flags, and positional counts are usage errors', () => {
  assert.throws(() => parseCommand(['x', '--lines'], SPEC), usageError(/^--lines needs a value$/));
  assert.throws(() => parseCommand(['x', '-n'], SPEC), usageError(/^--lines needs a value$/));
  assert.throws(() => parseCommand(['x', '--json=yes'], SPEC), usageError(/^--json takes no value$/));
  assert.throws(() => parseCommand([], SPEC), usageError(/^expected exactly one cell name$/));
  assert.throws(() => parseCommand(['x', 'y'], SPEC), usageError(/^expected exactly one cell name \(unexpected: y\)$/));
  // The usage travels with the error, for the message the CLI prints.
  try {
    parseCommand([], SPEC);
  } catch (err) {
    assert.equal((err as UsageError).usage, SPEC.usage);
  }
});

test('number options name the option, the expected range and the bad value', () => {
  assert.equal(intOption(undefined, '--count', ''), undefined);
  assert.equal(intOption('7', '--count', '', { min: 1 }), 7);
  assert.throws(
    () => intOption('abc', '--count', '', { min: 1 }),
    usageError(/--count takes a whole number ≥ 1, not 'abc'/),
  );
  assert.throws(() => intOption('70000', '--port', '', { max: 65535 }), usageError(/from 0 to 65535/));
  assert.throws(() => intOption('', '--count', ''), usageError(/not ''/));
  assert.equal(positiveOption('0.5', '--interval', ''), 0.5);
  assert.throws(
    () => positiveOption('abc', '--interval', ''),
    usageError(/--interval takes a positive number, not 'abc'/),
  );
  assert.throws(() => positiveOption('0', '--interval', ''), usageError(/positive/));
});

test('nearest match: small edit distances only', () => {
  assert.equal(editDistance('status', 'stauts'), 2);
  assert.equal(editDistance('', 'abc'), 3);
  assert.equal(nearest('stauts', ['status', 'stop', 'spawn']), 'status');
  assert.equal(nearest('--jsno', ['--json', '--help']), '--json');
  assert.equal(nearest('frobnicate', ['status', 'stop']), undefined);
});
