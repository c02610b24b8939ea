/**
 * Codec benchmark on the market exchange's message shapes: Cell (protein) against JSON, msgpackr
 * (records), protobufjs (reflection, runtime code generation) and flatbuffers (flatc-style accessors).
 * Prints ns/op medians over several repetitions and ratios peer ÷ Cell (> 1 means Cell is faster).
 *
 *   node dist/bench/codec/index.js [--reps 7] [--ms 40]
 */
import { cpus, release } from 'node:os';
import { Builder, ByteBuffer } from 'flatbuffers';
import { Packr } from 'msgpackr';
import protobuf from 'protobufjs';
import { protein, t } from '../../src/protein/index.js';
import { FbBatch, FbBlob, FbOrder } from './flatbuffers-market.js';

const args = process.argv.slice(2);
const arg = (name: string, def: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const REPS = arg('reps', 31);
const MS = arg('ms', 8);

// ---------------------------------------------------------------------------------------------
// Messages. amount and seq are t.uint (JS numbers, 8 bytes on the wire) so every format returns numbers.

const Order = protein('Order', { symbol: t.string, amount: t.uint, side: t.u8, seq: t.uint });
const Batch = protein('Batch', { orders: t.vec(Order) });
const Blob = protein('Blob', { data: t.bytes, seq: t.uint });

type Order = { symbol: string; amount: number; side: number; seq: number };
const order: Order = { symbol: 'BTC-USD', amount: 123_456_789, side: 1, seq: 42 };
const batch = {
  orders: Array.from({ length: 100 }, (_, i) => ({
    symbol: i % 2 ? 'ETH-EUR' : 'BTC-USD',
    amount: 1_000_000 + i * 37,
    side: i & 1,
    seq: 1000 + i,
  })),
};
const blob = { data: Uint8Array.from({ length: 1024 }, (_, i) => (i * 31) & 255), seq: 7 };

// ---------------------------------------------------------------------------------------------
// Peers

// msgpackr with records: the structure is sent once, later messages refer to it.
const packr = new Packr({ useRecords: true, structures: [] });

// protobufjs: reflection from .proto text; it generates encode/decode functions at runtime.
// Without long.js, 64-bit fields decode to numbers like the other formats.
(protobuf.util as { Long: unknown }).Long = undefined;
protobuf.configure();
const pbRoot = protobuf.parse(`
syntax = "proto3";
message Order { string symbol = 1; uint64 amount = 2; uint32 side = 3; uint64 seq = 4; }
message Batch { repeated Order orders = 1; }
message Blob { bytes data = 1; uint64 seq = 2; }
`).root;
const PbOrder = pbRoot.lookupType('Order');
const PbBatch = pbRoot.lookupType('Batch');
const PbBlob = pbRoot.lookupType('Blob');

const fbb = new Builder(4096);
const fbOrder = new FbOrder();
const fbOrderInner = new FbOrder();
const fbBatch = new FbBatch();
const fbBlob = new FbBlob();
function fbEncodeOrder(o: Order): Uint8Array {
  fbb.clear();
  const s = fbb.createString(o.symbol);
  fbb.finish(FbOrder.create(fbb, s, o.amount, o.side, o.seq));
  return fbb.asUint8Array();
}
function fbEncodeBatch(b: { orders: Order[] }): Uint8Array {
  fbb.clear();
  const offs = new Array<number>(b.orders.length);
  for (let i = 0; i < b.orders.length; i++) {
    const o = b.orders[i];
    const s = fbb.createString(o.symbol);
    offs[i] = FbOrder.create(fbb, s, o.amount, o.side, o.seq);
  }
  fbb.finish(FbBatch.create(fbb, FbBatch.createOrdersVector(fbb, offs)));
  return fbb.asUint8Array();
}
function fbEncodeBlob(b: { data: Uint8Array; seq: number }): Uint8Array {
  fbb.clear();
  const d = FbBlob.createDataVector(fbb, b.data);
  fbb.finish(FbBlob.create(fbb, d, b.seq));
  return fbb.asUint8Array();
}
const fbReadOrder = (o: FbOrder): Order => ({ symbol: o.symbol()!, amount: o.amount(), side: o.side(), seq: o.seq() });

// ---------------------------------------------------------------------------------------------
// Measurement

let sink = 0;
function consume(x: unknown): void {
  if (x === sink) sink++;
}

/** Calibrates an iteration count worth about MS milliseconds. */
function calibrate(fn: () => unknown): number {
  let n = 16;
  for (;;) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) consume(fn());
    const dt = Number(process.hrtime.bigint() - t0) / 1e6;
    if (dt > MS / 4) return Math.max(16, Math.round((n * MS) / dt));
    n *= 4;
  }
}

function sample(fn: () => unknown, n: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) consume(fn());
  return Number(process.hrtime.bigint() - t0) / n;
}

const OPS = ['encode', 'decode', 'readOne', 'readAll'] as const;
type OpName = (typeof OPS)[number];
type Ops = { bytes: number } & { [K in OpName]?: () => unknown };
type Row = { name: string; bytes: number } & Record<OpName, number>;
type Shape = { title: string; formats: { name: string; ops: Ops }[] };

/**
 * Every (shape, format, operation) is calibrated once, then the repetitions go round-robin over all
 * of them, so background load on a shared machine spreads over every row instead of hitting a few.
 */
function runAll(shapes: Shape[]): Row[][] {
  const jobs: { fn: () => unknown; n: number; samples: number[] }[] = [];
  const cells: { row: Row; op: OpName; job: number }[] = [];
  const tables = shapes.map((sh) =>
    sh.formats.map((fmt) => {
      const row: Row = {
        name: fmt.name,
        bytes: fmt.ops.bytes,
        encode: Number.NaN,
        decode: Number.NaN,
        readOne: Number.NaN,
        readAll: Number.NaN,
      };
      for (const op of OPS) {
        const fn = fmt.ops[op];
        if (fn === undefined) continue;
        cells.push({ row, op, job: jobs.length });
        jobs.push({ fn, n: calibrate(fn), samples: [] });
      }
      return row;
    }),
  );
  for (let r = 0; r < REPS; r++) for (const job of jobs) job.samples.push(sample(job.fn, job.n));
  for (const c of cells) {
    const s = jobs[c.job].samples.sort((a, b) => a - b);
    c.row[c.op] = s[s.length >> 1];
  }
  return tables;
}

const f = (x: number) => (Number.isNaN(x) ? '—' : x < 100 ? x.toFixed(1) : x.toFixed(0));
const r = (x: number) => (Number.isNaN(x) ? '—' : `${x.toFixed(2)}×`);
const markdown: string[] = [];

function print(title: string, rows: Row[]): void {
  const cell = rows[0];
  const lines = [
    `### ${title}`,
    '',
    '| format | bytes | encode ns | decode ns | encode+decode ns | view+read one ns | view+read all ns |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of rows) {
    lines.push(
      `| ${row.name} | ${row.bytes} | ${f(row.encode)} | ${f(row.decode)} | ${f(row.encode + row.decode)} | ${f(row.readOne)} | ${f(row.readAll)} |`,
    );
  }
  lines.push(
    '',
    '| peer ÷ cell | encode | decode | encode+decode | read one (peer) vs cell view+read one | read all |',
  );
  lines.push('|---|---:|---:|---:|---:|---:|');
  for (const row of rows.slice(2)) {
    lines.push(
      `| ${row.name} | ${r(row.encode / cell.encode)} | ${r(row.decode / cell.decode)} | ${r((row.encode + row.decode) / (cell.encode + cell.decode))} | ${r(row.readOne / cell.readOne)} | ${r(row.readAll / cell.readAll)} |`,
    );
  }
  lines.push('');
  console.log(lines.join('\n'));
  markdown.push(...lines);
}

// ---------------------------------------------------------------------------------------------

const cpu = cpus()[0]?.model ?? 'unknown CPU';
console.log(`codec benchmark: ${cpu}, Linux ${release()}, node ${process.version}, ${REPS} reps × ~${MS} ms\n`);

// JSON: stringify → Buffer (UTF-8) on encode, Buffer → string → parse on decode; bytes travel as base64.
const jsonOrder = Buffer.from(JSON.stringify(order));
const jsonBatch = Buffer.from(JSON.stringify(batch));
const blobToJson = (b: typeof blob) =>
  Buffer.from(JSON.stringify({ data: Buffer.from(b.data).toString('base64'), seq: b.seq }));
const jsonToBlob = (buf: Buffer) => {
  const o = JSON.parse(buf.toString());
  return { data: Buffer.from(o.data, 'base64'), seq: o.seq as number };
};
const jsonBlob = blobToJson(blob);

const mpOrder = packr.pack(order);
const mpBatch = packr.pack(batch);
const mpBlob = packr.pack(blob);
const pbOrder = PbOrder.encode(order).finish();
const pbBatch = PbBatch.encode(batch).finish();
const pbBlob = PbBlob.encode(blob).finish();
const fbOrderBytes = fbEncodeOrder(order).slice();
const fbBatchBytes = fbEncodeBatch(batch).slice();
const fbBlobBytes = fbEncodeBlob(blob).slice();

type OrderView = { symbol: string; amount: number; side: number; seq: number };
type BatchView = { orders: { length: number; get(i: number): OrderView } };
type BlobView = { data: Uint8Array; seq: number };
const readOrderAll = (o: OrderView) => o.symbol.length + o.amount + o.side + o.seq;

const cellOrder = Order.encode(order);
const cellBatch = Batch.encode(batch);
const cellBlob = Blob.encode(blob);
const into = new Uint8Array(64 * 1024);

const shapes: Shape[] = [
  {
    title: 'Small order {symbol: string, amount: uint, side: u8, seq: uint}',
    formats: [
      {
        name: 'cell',
        ops: {
          bytes: cellOrder.length,
          encode: () => Order.encode(order),
          decode: () => Order.decode(cellOrder),
          readOne: () => (Order.view(cellOrder) as OrderView).seq,
          readAll: () => readOrderAll(Order.view(cellOrder) as OrderView),
        },
      },
      { name: 'cell encodeInto', ops: { bytes: cellOrder.length, encode: () => Order.encodeInto(order, into, 0) } },
      {
        name: 'JSON',
        ops: {
          bytes: jsonOrder.length,
          encode: () => Buffer.from(JSON.stringify(order)),
          decode: () => JSON.parse(jsonOrder.toString()),
          readOne: () => JSON.parse(jsonOrder.toString()).seq,
        },
      },
      {
        name: 'msgpackr (records)',
        ops: {
          bytes: mpOrder.length,
          encode: () => packr.pack(order),
          decode: () => packr.unpack(mpOrder),
          readOne: () => packr.unpack(mpOrder).seq,
        },
      },
      {
        name: 'protobufjs',
        ops: {
          bytes: pbOrder.length,
          encode: () => PbOrder.encode(order).finish(),
          decode: () => PbOrder.decode(pbOrder),
          readOne: () => (PbOrder.decode(pbOrder) as unknown as Order).seq,
        },
      },
      {
        name: 'flatbuffers',
        ops: {
          bytes: fbOrderBytes.length,
          encode: () => fbEncodeOrder(order),
          decode: () => fbReadOrder(FbOrder.getRoot(new ByteBuffer(fbOrderBytes), fbOrder)),
          readOne: () => FbOrder.getRoot(new ByteBuffer(fbOrderBytes), fbOrder).seq(),
          readAll: () => {
            const o = FbOrder.getRoot(new ByteBuffer(fbOrderBytes), fbOrder);
            return o.symbol()!.length + o.amount() + o.side() + o.seq();
          },
        },
      },
    ],
  },
  {
    title: 'Batch of 100 orders {orders: vec<Order>}',
    formats: [
      {
        name: 'cell',
        ops: {
          bytes: cellBatch.length,
          encode: () => Batch.encode(batch),
          decode: () => Batch.decode(cellBatch),
          readOne: () => (Batch.view(cellBatch) as BatchView).orders.get(99).seq,
          readAll: () => {
            const orders = (Batch.view(cellBatch) as BatchView).orders;
            let s = 0;
            for (let i = 0; i < orders.length; i++) s += readOrderAll(orders.get(i));
            return s;
          },
        },
      },
      { name: 'cell encodeInto', ops: { bytes: cellBatch.length, encode: () => Batch.encodeInto(batch, into, 0) } },
      {
        name: 'JSON',
        ops: {
          bytes: jsonBatch.length,
          encode: () => Buffer.from(JSON.stringify(batch)),
          decode: () => JSON.parse(jsonBatch.toString()),
          readOne: () => JSON.parse(jsonBatch.toString()).orders[99].seq,
        },
      },
      {
        name: 'msgpackr (records)',
        ops: {
          bytes: mpBatch.length,
          encode: () => packr.pack(batch),
          decode: () => packr.unpack(mpBatch),
          readOne: () => packr.unpack(mpBatch).orders[99].seq,
        },
      },
      {
        name: 'protobufjs',
        ops: {
          bytes: pbBatch.length,
          encode: () => PbBatch.encode(batch).finish(),
          decode: () => PbBatch.decode(pbBatch),
          readOne: () => (PbBatch.decode(pbBatch) as unknown as { orders: Order[] }).orders[99].seq,
        },
      },
      {
        name: 'flatbuffers',
        ops: {
          bytes: fbBatchBytes.length,
          encode: () => fbEncodeBatch(batch),
          decode: () => {
            const b = FbBatch.getRoot(new ByteBuffer(fbBatchBytes), fbBatch);
            const n = b.ordersLength();
            const orders: Order[] = [];
            for (let i = 0; i < n; i++) orders.push(fbReadOrder(b.orders(i, fbOrderInner)!));
            return { orders };
          },
          readOne: () => FbBatch.getRoot(new ByteBuffer(fbBatchBytes), fbBatch).orders(99, fbOrderInner)!.seq(),
          readAll: () => {
            const b = FbBatch.getRoot(new ByteBuffer(fbBatchBytes), fbBatch);
            const n = b.ordersLength();
            let s = 0;
            for (let i = 0; i < n; i++) {
              const o = b.orders(i, fbOrderInner)!;
              s += o.symbol()!.length + o.amount() + o.side() + o.seq();
            }
            return s;
          },
        },
      },
    ],
  },
  {
    title: '1 KiB payload {data: bytes, seq: uint}',
    formats: [
      {
        name: 'cell',
        ops: {
          bytes: cellBlob.length,
          encode: () => Blob.encode(blob),
          decode: () => Blob.decode(cellBlob),
          readOne: () => (Blob.view(cellBlob) as BlobView).seq,
          readAll: () => {
            const v = Blob.view(cellBlob) as BlobView;
            return v.data.length + v.seq;
          },
        },
      },
      { name: 'cell encodeInto', ops: { bytes: cellBlob.length, encode: () => Blob.encodeInto(blob, into, 0) } },
      {
        name: 'JSON (base64)',
        ops: {
          bytes: jsonBlob.length,
          encode: () => blobToJson(blob),
          decode: () => jsonToBlob(jsonBlob),
          readOne: () => jsonToBlob(jsonBlob).seq,
        },
      },
      {
        name: 'msgpackr (records)',
        ops: {
          bytes: mpBlob.length,
          encode: () => packr.pack(blob),
          decode: () => packr.unpack(mpBlob),
          readOne: () => packr.unpack(mpBlob).seq,
        },
      },
      {
        name: 'protobufjs',
        ops: {
          bytes: pbBlob.length,
          encode: () => PbBlob.encode(blob).finish(),
          decode: () => PbBlob.decode(pbBlob),
          readOne: () => (PbBlob.decode(pbBlob) as unknown as { seq: number }).seq,
        },
      },
      {
        name: 'flatbuffers',
        ops: {
          bytes: fbBlobBytes.length,
          encode: () => fbEncodeBlob(blob),
          decode: () => {
            const b = FbBlob.getRoot(new ByteBuffer(fbBlobBytes), fbBlob);
            return { data: b.dataArray()!.slice(), seq: b.seq() };
          },
          readOne: () => FbBlob.getRoot(new ByteBuffer(fbBlobBytes), fbBlob).seq(),
          readAll: () => {
            const b = FbBlob.getRoot(new ByteBuffer(fbBlobBytes), fbBlob);
            return b.dataArray()!.length + b.seq();
          },
        },
      },
    ],
  },
];

// Sanity: every format round-trips the same values before anything is timed.
const check = (ok: boolean, what: string) => {
  if (!ok) throw new Error(`benchmark set-up: ${what} does not round-trip`);
};
check((Order.decode(cellOrder) as Order).seq === order.seq, 'cell order');
check((Batch.view(cellBatch) as BatchView).orders.get(99).seq === batch.orders[99].seq, 'cell batch');
check(packr.unpack(mpBatch).orders[99].seq === batch.orders[99].seq, 'msgpackr batch');
check(
  (PbBatch.decode(pbBatch) as unknown as { orders: Order[] }).orders[99].amount === batch.orders[99].amount,
  'protobufjs batch',
);
check(
  FbBatch.getRoot(new ByteBuffer(fbBatchBytes), fbBatch).orders(99, fbOrderInner)!.seq() === batch.orders[99].seq,
  'flatbuffers batch',
);
check(jsonToBlob(jsonBlob).data.equals(Buffer.from(blob.data)), 'JSON blob');

const tables = runAll(shapes);
for (const [i, sh] of shapes.entries()) print(sh.title, tables[i]);
const summary = [
  'Targets:',
  `  encode+decode vs msgpackr (records): ${tables.map((t, i) => `${shapes[i].title.split(' {')[0]} ${r((t[3].encode + t[3].decode) / (t[0].encode + t[0].decode))}`).join(', ')}`,
  `  view+read one vs msgpackr full decode: ${tables.map((t, i) => `${shapes[i].title.split(' {')[0]} ${r(t[3].decode / t[0].readOne)}`).join(', ')}`,
];
console.log(summary.join('\n'));
if (args.includes('--markdown')) console.log(markdown.join('\n'));
if (sink === -1) console.log(sink);
