import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Infer, protein, rpc, service, t } from '../../src/index.js';

// The contract example from README.md, kept compiling and true.
test('README contract example', () => {
  const Side = t.enum('Side', { Buy: null, Sell: null });
  const Order = protein('Order', {
    symbol: t.string,
    amount: t.u64,
    side: Side,
    seq: t.uint,
    note: t.option(t.string),
  });
  type Order = Infer<typeof Order>;
  const Exchange = service('exchange', {
    place: rpc(Order, t.u64),
    batch: rpc(t.vec(Order), t.uint),
    ping: rpc(t.unit, t.unit),
  });
  const value: Order = { symbol: 'BTC-USD', amount: 5n, side: { tag: 'Buy' }, seq: 1 };
  const bytes = Order.encode(value);
  const view = Order.view(bytes);
  assert.equal(view.symbol, 'BTC-USD');
  assert.deepStrictEqual(view.side, { tag: 'Buy' });
  assert.deepStrictEqual(Order.decode(bytes), { ...value, note: undefined });
  assert.deepStrictEqual(
    Exchange.byId.map((m) => m.name),
    ['place', 'batch', 'ping'],
  );
  assert.equal(Exchange.methods.place.id, 0);
  assert.equal(typeof Exchange.fingerprint, 'bigint');
});
