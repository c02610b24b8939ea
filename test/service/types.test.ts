import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Infer, type InferView, protein, t } from '../../src/protein/index.js';
import {
  type MethodInput,
  type MethodInputView,
  type MethodOutput,
  type MethodOutputView,
  rpc,
  service,
} from '../../src/service/index.js';

type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2 ? true : false;
function expectType<_T extends true>(): void {}

const Side = t.enum('Side', { Buy: null, Sell: null });
const Order = protein('Order', {
  symbol: t.string,
  amount: t.u64,
  side: Side,
  seq: t.uint,
  note: t.option(t.string),
  legs: t.vec(protein('Leg', { price: t.f64 })),
});
type Order = Infer<typeof Order>;
const Exchange = service('exchange', {
  place: rpc(Order, t.u64),
  ping: rpc(t.unit, t.unit),
});

test('static types follow the schema', () => {
  expectType<Equal<Order['symbol'], string>>();
  expectType<Equal<Order['amount'], bigint>>();
  expectType<Equal<Order['seq'], number>>();
  expectType<Equal<Order['side'], { readonly tag: 'Buy' } | { readonly tag: 'Sell' }>>();
  expectType<Equal<Order['note'], string | undefined>>();
  expectType<Equal<Order['legs'], { price: number }[]>>();
  type OrderView = InferView<typeof Order>;
  expectType<Equal<ReturnType<OrderView['legs']['get']>['price'], number>>();
  type Place = (typeof Exchange.methods)['place'];
  expectType<Equal<MethodInput<Place>, Order>>();
  expectType<Equal<MethodOutput<Place>, bigint>>();
  expectType<Equal<MethodInputView<Place>, OrderView>>();
  expectType<Equal<MethodOutputView<Place>, bigint>>();
  expectType<Equal<MethodInput<(typeof Exchange.methods)['ping']>, undefined>>();
  // @ts-expect-error a missing required field does not type-check
  const bad: Order = { symbol: 'x', amount: 1n, side: { tag: 'Buy' }, legs: [] };
  assert.ok(bad);
  assert.equal(Exchange.methods.place.id, 0);
  assert.equal(Exchange.methods.ping.id, 1);
});
