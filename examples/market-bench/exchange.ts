// The exchange cell: `node dist/examples/market-bench/exchange.js`. Listens on
// <CELL_SOCKET_DIR or ~/.cell/run>/exchange.sock until SIGTERM/SIGINT.
import { crc32 } from 'node:zlib';
import { Membrane } from '../../src/index.js';
import { Exchange } from './contract.js';

let trades = 0;
let batches = 0;
let bytesReceived = 0;

const membrane = await Membrane.bind(Exchange, {
  place_order(order) {
    if (order.amount === 0) throw new Error('an order needs a non-zero amount');
    return ++trades;
  },
  submit_batch(batch) {
    const orders = batch.orders;
    let accepted = 0;
    for (let i = 0; i < orders.length; i++) {
      // Reading the fields from the view is the work: nothing is materialised.
      const o = orders.get(i);
      if (o.amount > 0 && o.price > 0) accepted++;
    }
    trades += accepted;
    batches++;
    return { accepted, totalTrades: trades };
  },
  ingest_data(data) {
    bytesReceived += data.length;
    return { length: data.length, crc32: crc32(data) };
  },
  ping(p) {
    return p.seq;
  },
  snapshot() {
    return { trades, batches, bytesReceived };
  },
});

const fp = Exchange.fingerprint.toString(16).padStart(16, '0');
process.stdout.write(`exchange ready: ${membrane.socketPath} (pid ${process.pid}, contract 0x${fp})\n`);
