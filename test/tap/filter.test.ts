import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { compileFilter, methodsFilterCanMatch, type TapEvent } from '../../src/tap/filter.js';

const order: TapEvent = {
  method: 'place_order',
  id: 7,
  ok: true,
  latencyNs: 42_000,
  bytesIn: 40,
  bytesOut: 8,
  request: { symbol: 'ACME', amount: 150, side: 'buy', price: 12_000_000_000n, legs: [{ qty: 3 }], tags: ['x'] },
  reply: { accepted: true, orderId: 99n },
};
const ping: TapEvent = {
  method: 'ping',
  id: 8,
  ok: false,
  error: 'E_TIMEOUT',
  latencyNs: 5_000,
  bytesIn: 0,
  bytesOut: 0,
};

function matches(expr: string, e: TapEvent): boolean {
  return compileFilter(expr)(e);
}

test('the documented example and the grammar', () => {
  assert.equal(matches('method == place_order && amount > 100', order), true);
  assert.equal(matches('method == place_order && amount > 200', order), false);
  assert.equal(matches('method == place_order && amount > 100', ping), false);
  assert.equal(matches('', ping), true);
  assert.equal(matches('place_order', order), true);
  assert.equal(matches('place_order', ping), false);
  assert.equal(matches('ok', ping), false);
  assert.equal(matches('!ok && error == "E_TIMEOUT"', ping), true);
  assert.equal(matches('latency_us >= 42 && latency_ms < 1', order), true);
  assert.equal(matches('req.side == "buy" || res.accepted == false', order), true);
  assert.equal(matches('(method == ping || method == place_order) && !(amount < 100)', order), true);
  assert.equal(matches('symbol ~ "CM"', order), true);
  assert.equal(matches('legs[0].qty == 3 && tags[0] == x', order), true);
  assert.equal(matches('legs[1].qty == 3', order), false);
  // 64-bit fields compare with plain numbers by value.
  assert.equal(matches('price > 11000000000 && orderId == 99', order), true);
  assert.equal(matches('amount > -1 && amount != 150.5', order), true);
  // Different types never order, and are unequal.
  assert.equal(matches('symbol > 3', order), false);
  assert.equal(matches('symbol != 3', order), true);
  assert.equal(matches("side == 'buy'", order), true);
});

test('syntax errors name the column', () => {
  assert.throws(() => compileFilter('method == '), { code: 'E_INVALID_ARGUMENT', message: /unexpected end/ });
  assert.throws(() => compileFilter('amount > 1 )'), { message: /column 12/ });
  assert.throws(() => compileFilter('a # b'), { message: /unexpected character "#" at column 3/ });
  assert.throws(() => compileFilter('"open'), { message: /unterminated string/ });
  assert.throws(() => compileFilter('a[x]'), { message: /expected an index/ });
});

test('numeric comparisons agree with JavaScript', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: -1e6, max: 1e6 }),
      fc.integer({ min: -1e6, max: 1e6 }),
      fc.constantFrom('==', '!=', '<', '<=', '>', '>='),
      (a, b, op) => {
        const e: TapEvent = { ...order, request: { a } };
        const expected = { '==': a === b, '!=': a !== b, '<': a < b, '<=': a <= b, '>': a > b, '>=': a >= b }[op];
        assert.equal(matches(`a ${op} ${b}`, e), expected);
        assert.equal(matches(`!(a ${op} ${b})`, e), !expected);
      },
    ),
  );
});

test('which methods a filter can match, knowing only the method (and its field names)', () => {
  const shapes = [
    { name: 'place_order', requestFields: new Set(['symbol', 'amount']), replyFields: new Set(['accepted']) },
    { name: 'cancel', requestFields: new Set(['order']), replyFields: new Set(['done']) },
    { name: 'raw', requestFields: undefined, replyFields: undefined },
  ];
  const can = (src: string) => methodsFilterCanMatch(src, shapes);
  assert.deepEqual(can(''), [true, true, true]);
  // `raw` has no struct fields we know of, so a bare word might be a field there: kept.
  assert.deepEqual(can('method == place_order && amount > 100'), [true, false, true]);
  assert.deepEqual(can('place_order'), [true, false, true]);
  assert.deepEqual(can('method == cancel || method == "raw"'), [false, true, true]);
  assert.deepEqual(can('!(method == cancel)'), [true, false, true]);
  assert.deepEqual(can('method ~ "order"'), [true, false, false]);
  // Anything that depends on the call itself keeps the method; a word that is no field of a method
  // stands for itself there (`amount` is not a field of cancel, and "amount" > 100 never holds).
  assert.deepEqual(can('amount > 100'), [true, false, true]);
  assert.deepEqual(can('!ok'), [true, true, true]);
  assert.deepEqual(can('latency_ms > 5 && method != cancel'), [true, false, true]);
  assert.deepEqual(can('method == order'), [false, true, true]);
  assert.deepEqual(can('order'), [false, true, true]);
  // A method a filter rules out has no call that passes it (checked against the real evaluation).
  const calls: Record<string, unknown[]> = {
    place_order: [
      { symbol: 'X', amount: 500 },
      { symbol: 'order', amount: 0 },
    ],
    cancel: [{ order: 1 }, { order: 0 }],
    raw: ['x', 7],
  };
  const filters = [
    'method == cancel',
    'place_order',
    '!(method == cancel)',
    'method ~ "order"',
    'amount > 100',
    'order',
  ];
  for (const src of filters) {
    const f = compileFilter(src);
    can(src).forEach((possible, i) => {
      if (possible) return;
      const method = shapes[i]!.name;
      for (const request of calls[method]!) {
        for (const ok of [true, false]) {
          assert.equal(
            f({ method, id: 1, ok, latencyNs: 9e6, bytesIn: 1, bytesOut: 1, request }),
            false,
            `${src} on ${method}`,
          );
        }
      }
    });
  }
});
