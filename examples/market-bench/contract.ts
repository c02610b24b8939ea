// The exchange's contract, imported by the exchange cell and by every trader.
import { protein, t } from '../../src/protein/index.js';
import { rpc, service } from '../../src/service/index.js';

export const Side = t.enum('Side', { Buy: null, Sell: null });

export const Order = protein('Order', {
  symbol: t.string,
  /** Quantity in lots. */
  amount: t.uint,
  /** Limit price in ticks. */
  price: t.uint,
  side: Side,
});

export const Batch = protein('Batch', { orders: t.vec(Order) });
export const BatchAck = protein('BatchAck', { accepted: t.uint, totalTrades: t.uint });
export const Ping = protein('Ping', { seq: t.uint });
export const Ingested = protein('Ingested', { length: t.uint, crc32: t.u32 });
export const Snapshot = protein('Snapshot', { trades: t.uint, batches: t.uint, bytesReceived: t.uint });

export const Exchange = service('exchange', {
  /** Places one order; returns its trade number. */
  place_order: rpc(Order, t.uint),
  /** Places every order of the batch; returns how many were accepted and the running total. */
  submit_batch: rpc(Batch, BatchAck),
  /** Takes a market-data blob; returns its length and CRC-32 so the sender can check integrity. */
  ingest_data: rpc(t.bytes, Ingested),
  /** Echoes the sequence number. */
  ping: rpc(Ping, t.uint),
  snapshot: rpc(t.unit, Snapshot),
});
