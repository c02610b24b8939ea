import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { isCellError } from '../../src/errors/index.js';
import { KIND_WRAP, RING_HEADER_BYTES, RingBuffer, ringBytesFor } from '../../src/shm/ring.js';

function makeRing(capacity = 4096): { producer: RingBuffer; consumer: RingBuffer; sab: SharedArrayBuffer } {
  const sab = new SharedArrayBuffer(ringBytesFor(capacity));
  RingBuffer.initialize(sab, capacity);
  return { producer: new RingBuffer(sab), consumer: new RingBuffer(sab), sab };
}

function payload(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (seed * 31 + i * 7) & 0xff;
  return b;
}

test('records round-trip with their header fields, every size class', () => {
  const { producer, consumer } = makeRing(1 << 16);
  const sizes = [0, 1, 7, 8, 15, 16, 17, 100, 1000, 4096, producer.maxPayload];
  let id = 1;
  for (const len of sizes) {
    const body = payload(len, id);
    assert.equal(producer.write(3, id, 77, body), true);
    producer.commit();
    const token = consumer.next();
    assert.ok(token >= 0);
    assert.equal(consumer.kind, 3);
    assert.equal(consumer.reqId, id);
    assert.equal(consumer.aux, 77);
    assert.equal(consumer.payloadLength, len);
    assert.deepEqual(consumer.bytes.subarray(consumer.payloadOffset, consumer.payloadOffset + len), body);
    consumer.release(token);
    assert.equal(consumer.next(), -1);
    id++;
  }
});

test('wrap-around: thousands of records of varied sizes through a small ring', () => {
  const { producer, consumer } = makeRing(4096);
  let sent = 0;
  let received = 0;
  const sizes = [1, 33, 200, 700, 1000, 5, 64];
  while (received < 5000) {
    // fill until full
    for (;;) {
      const len = sizes[sent % sizes.length] as number;
      if (!producer.write(1, sent, len, payload(len, sent))) break;
      sent++;
    }
    producer.commit();
    for (let t = consumer.next(); t >= 0; t = consumer.next()) {
      assert.equal(consumer.reqId, received);
      const len = sizes[received % sizes.length] as number;
      assert.equal(consumer.payloadLength, len);
      assert.equal(consumer.aux, len);
      assert.deepEqual(
        consumer.bytes.subarray(consumer.payloadOffset, consumer.payloadOffset + len),
        payload(len, received),
      );
      consumer.release(t);
      received++;
    }
  }
  assert.equal(sent, received);
});

test('a full ring refuses writes until the consumer releases, and out-of-order release frees only the oldest run', () => {
  const { producer, consumer } = makeRing(4096);
  const tokens: number[] = [];
  while (producer.write(1, tokens.length, 0, payload(240, 1))) tokens.push(tokens.length);
  producer.commit();
  assert.equal(tokens.length, 4096 / 256);
  const got: number[] = [];
  for (let t = consumer.next(); t >= 0; t = consumer.next()) got.push(t);
  assert.equal(got.length, tokens.length);
  // Release everything except the oldest: nothing frees.
  for (const t of got.slice(1)) consumer.release(t);
  assert.equal(producer.write(1, 99, 0, payload(240, 1)), false);
  consumer.release(got[0] as number);
  assert.equal(producer.write(1, 99, 0, payload(240, 1)), true);
  consumer.release(got[0] as number); // double release is harmless
  assert.equal(consumer.unreleased, 0);
});

test('messages larger than maxPayload are refused with E_FRAME_TOO_LARGE', () => {
  const { producer } = makeRing(4096);
  assert.throws(
    () => producer.reserve(1, 1, 0, producer.maxPayload + 1),
    (e) => isCellError(e, 'E_FRAME_TOO_LARGE'),
  );
});

test('sleep protocol: prepareSleep declines when data is there; commit rings the bell for a sleeper', () => {
  const rings: number[] = [];
  const capacity = 4096;
  const sab = new SharedArrayBuffer(ringBytesFor(capacity));
  RingBuffer.initialize(sab, capacity);
  const producer = new RingBuffer(sab, (_s, index) => rings.push(index));
  const consumer = new RingBuffer(sab);
  const seq = consumer.prepareSleep();
  assert.ok(seq >= 0);
  producer.write(1, 1, 0, payload(4, 1));
  producer.commit();
  assert.equal(rings.length, 1);
  assert.equal(Atomics.load(new Int32Array(sab), rings[0] as number), seq + 1);
  assert.equal(consumer.prepareSleep(), -1); // data is waiting
  producer.write(1, 2, 0, payload(4, 1));
  producer.commit();
  assert.equal(rings.length, 1); // consumer not sleeping: no syscall
});

test('a mapping with a bad header is refused', () => {
  const sab = new SharedArrayBuffer(ringBytesFor(4096));
  assert.throws(
    () => new RingBuffer(sab),
    (e) => isCellError(e, 'E_PROTOCOL'),
  );
  RingBuffer.initialize(sab, 4096);
  new Int32Array(sab)[49] = 1 << 20; // capacity larger than the mapping
  assert.throws(
    () => new RingBuffer(sab),
    (e) => isCellError(e, 'E_PROTOCOL'),
  );
});

/**
 * A hostile producer: scribbles arbitrary words over the header area of records and the tail. The
 * consumer must either return well-formed records that lie inside the ring or throw E_PROTOCOL.
 */
test('fuzz: a hostile writer cannot make the reader leave the ring', () => {
  const capacity = 4096;
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(capacity / 4 + 8), fc.integer({ min: -1, max: 0x7fffffff })), { maxLength: 40 }),
      fc.array(fc.nat(600), { maxLength: 20 }),
      fc.integer({ min: 0, max: 0x7fffffff }),
      (scribbles, honest, tailNoise) => {
        const sab = new SharedArrayBuffer(ringBytesFor(capacity));
        RingBuffer.initialize(sab, capacity);
        const producer = new RingBuffer(sab);
        const consumer = new RingBuffer(sab);
        for (const len of honest) if (!producer.write(1, 1, 0, new Uint8Array(len))) break;
        producer.commit();
        const words = new Uint32Array(sab);
        for (const [index, value] of scribbles) {
          const w = RING_HEADER_BYTES / 4 + (index % (capacity / 4));
          words[w] = value === -1 ? KIND_WRAP : value;
        }
        if (tailNoise % 3 === 0) Atomics.store(new Int32Array(sab), 16, tailNoise);
        try {
          for (let i = 0; i < 1000; i++) {
            const t = consumer.next();
            if (t < 0) break;
            assert.ok(consumer.payloadOffset >= RING_HEADER_BYTES);
            assert.ok(consumer.payloadOffset + consumer.payloadLength <= RING_HEADER_BYTES + capacity);
            if (i % 2 === 0) consumer.release(t);
          }
        } catch (e) {
          if (!isCellError(e, 'E_PROTOCOL')) throw e;
        }
      },
    ),
    { numRuns: 3000, seed: Number(process.env.FC_SEED ?? Date.now() % 1e9), verbose: 1 },
  );
});

test('trimLast shrinks the last reservation and rollbackLast drops an abandoned one', () => {
  const { producer, consumer } = makeRing(4096);
  const off = producer.reserve(1, 7, 0, 500);
  producer.bytes.fill(5, off, off + 40);
  producer.trimLast(40);
  const dropped = producer.reserve(1, 8, 0, 100); // abandoned half-way
  producer.bytes.fill(9, dropped, dropped + 10);
  producer.rollbackLast();
  producer.write(1, 9, 0, payload(3, 1));
  producer.commit();
  assert.ok(consumer.next() >= 0);
  assert.deepEqual([consumer.reqId, consumer.payloadLength], [7, 40]);
  assert.ok(consumer.next() >= 0);
  assert.deepEqual([consumer.reqId, consumer.payloadLength], [9, 3]);
  assert.equal(consumer.next(), -1);
  assert.throws(() => producer.trimLast(10_000), /cannot grow/);
});

test('the consumer reads up to the tail it loaded, then looks again; later commits are not missed', () => {
  const { producer, consumer } = makeRing(4096);
  assert.ok(producer.write(1, 1, 0, payload(8, 1)));
  assert.ok(producer.write(1, 2, 0, payload(8, 2)));
  producer.commit();
  const first = consumer.next();
  assert.equal(consumer.reqId, 1);
  // Committed after the consumer loaded the tail: found once the records it knew of are read.
  assert.ok(producer.write(1, 3, 0, payload(8, 3)));
  producer.commit();
  const seen: number[] = [];
  for (let t = consumer.next(); t >= 0; t = consumer.next()) {
    seen.push(consumer.reqId);
    consumer.release(t);
  }
  consumer.release(first);
  assert.deepEqual(seen, [2, 3]);
  assert.equal(consumer.hasData(), false);
  assert.ok(producer.write(1, 4, 0, payload(8, 4)));
  assert.equal(consumer.hasData(), false, 'an uncommitted record is invisible');
  producer.commit();
  assert.equal(consumer.hasData(), true);
});

test('holdHead: space released during a drain reaches the producer at publishHead, in one store', () => {
  const { producer, consumer, sab } = makeRing(4096);
  while (producer.write(1, 0, 0, payload(240, 1))) {}
  producer.commit();
  const head = () => new Int32Array(sab, 0, 1)[0];
  consumer.holdHead();
  for (let t = consumer.next(); t >= 0; t = consumer.next()) consumer.release(t);
  assert.equal(consumer.unreleased, 0);
  assert.equal(head(), 0, 'nothing handed back yet');
  assert.equal(producer.write(1, 0, 0, payload(240, 1)), false, 'the producer still sees a full ring');
  consumer.publishHead();
  assert.equal(head(), 4096);
  assert.equal(producer.write(1, 0, 0, payload(240, 1)), true);
  // Outside a hold, a release is handed back at once.
  producer.commit();
  const t = consumer.next();
  consumer.release(t);
  assert.equal(head(), 4096 + 256);
});

test('the consumer’s bookkeeping grows with the records held, up to a full ring, and head stays exact', () => {
  // 4096 empty records fill a 64 KiB ring: far more than the 64 slots a consumer starts with.
  const { producer, consumer } = makeRing(1 << 16);
  const n = (1 << 16) / 16;
  for (let i = 0; i < n; i++) assert.equal(producer.write(1, i + 1, 0, new Uint8Array(0)), true, `record ${i}`);
  assert.equal(producer.write(1, 0, 0, new Uint8Array(0)), false, 'the ring is full');
  producer.commit();
  const tokens: number[] = [];
  for (let t = consumer.next(); t >= 0; t = consumer.next()) {
    assert.equal(consumer.reqId, tokens.length + 1);
    tokens.push(t);
  }
  assert.equal(tokens.length, n);
  assert.equal(consumer.unreleased, n);
  // Release every odd record first: head cannot move past the still-held first one.
  for (let i = 1; i < n; i += 2) consumer.release(tokens[i] as number);
  assert.equal(producer.producerIdle(), false);
  assert.equal(producer.write(1, 0, 0, new Uint8Array(0)), false);
  for (let i = 0; i < n; i += 2) consumer.release(tokens[i] as number);
  assert.equal(consumer.unreleased, 0);
  assert.equal(producer.producerIdle(), true, 'every record released: the producer may trim');
  assert.equal(producer.write(1, 9, 0, new Uint8Array(0)), true);
  assert.equal(producer.producerIdle(), false, 'an unpublished reservation');
});
