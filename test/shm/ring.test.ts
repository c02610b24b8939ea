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

test('extendLast grows the open record only: same record, same kind, unpublished, within the limit and the ring', () => {
  const { producer, consumer } = makeRing(4096);
  const a = producer.reserve(1, 7, 0, 16);
  producer.bytes.set(payload(16, 1), a);
  const b = producer.extendLast(1, a, 20, 1000);
  assert.equal(b, a + 16, 'the new bytes follow the record’s payload');
  producer.bytes.set(payload(20, 2), b);
  assert.equal(producer.extendLast(2, a, 4, 1000), -1, 'another kind');
  assert.equal(producer.extendLast(1, a + 16, 4, 1000), -1, 'not the open record');
  assert.equal(producer.extendLast(1, a, 1000, 1000), -1, 'past the limit');
  assert.equal(producer.extendLast(1, a, producer.maxPayload, 1 << 20), -1, 'past the ring’s record limit');
  producer.commit();
  assert.equal(producer.extendLast(1, a, 4, 1000), -1, 'published');
  assert.ok(consumer.next() >= 0);
  assert.deepEqual([consumer.reqId, consumer.payloadLength], [7, 36]);
  const got = consumer.bytes.subarray(consumer.payloadOffset, consumer.payloadOffset + 36);
  assert.deepEqual(Buffer.from(got), Buffer.concat([payload(16, 1), payload(20, 2)]));
  assert.equal(consumer.next(), -1);
  // A rolled-back record can't be grown (the one before it is not the open record either).
  const c = producer.reserve(1, 8, 0, 16);
  producer.rollbackLast();
  assert.equal(producer.extendLast(1, c, 4, 1000), -1, 'rolled back');
  // Records never wrap: a record that ends at the ring's end stays as it is.
  const { producer: p2 } = makeRing(4096);
  for (let i = 0; i < 3; i++) assert.ok(p2.write(1, i, 0, payload(1000, i))); // 3 × 1024 bytes
  assert.ok(p2.write(1, 3, 0, payload(400, 3))); // ends at 3488
  const last = p2.reserve(1, 4, 0, 16); // 3488 + 32: 576 bytes of the lap left after it
  assert.ok(last >= 0);
  assert.equal(p2.extendLast(1, last, 600, 1 << 20), -1, 'would pass the end of the ring');
  assert.ok(p2.extendLast(1, last, 560, 1 << 20) > 0, 'up to the end of the ring');
  // Past the ring's record limit, or past the room the consumer left before head: refused.
  const { producer: p3, consumer: c3 } = makeRing(4096);
  for (let i = 0; i < 8; i++) assert.ok(p3.write(1, i, 0, payload(496, i))); // 8 × 512 bytes: full
  p3.commit();
  c3.release(c3.next()); // head at 512
  const open = p3.reserve(1, 9, 0, 16); // wraps to 0: 32 bytes, 480 left before head
  assert.equal(open, new RingBuffer(p3.sab).bytes.length - 4096 + 16);
  assert.equal(p3.extendLast(1, open, 481, 1 << 20), -1, 'more than the room before head');
  assert.ok(p3.extendLast(1, open, 480, 1 << 20) > 0, 'exactly the room before head');
  const { producer: p4 } = makeRing(4096);
  const big = p4.reserve(1, 1, 0, 16);
  assert.equal(p4.extendLast(1, big, p4.maxPayload - 15, 1 << 20), -1, 'past the ring’s record limit');
  assert.ok(p4.extendLast(1, big, p4.maxPayload - 16, 1 << 20) > 0);
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

// ------------------------------------------------------------------ CSR2: records publish themselves

import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadNative } from '../../src/shm/native.js';

const kindWordAt = (sab: SharedArrayBuffer, pos: number, capacity: number) =>
  new Uint32Array(sab)[(RING_HEADER_BYTES + (pos & (capacity - 1))) / 4 + 2] as number;

test('a record is published by its kind word (lap above, kind below); tail alone publishes nothing', () => {
  const { producer, consumer, sab } = makeRing(4096);
  const off = producer.reserve(2, 5, 0, 8);
  producer.bytes.fill(1, off, off + 8);
  assert.equal(kindWordAt(sab, 0, 4096), 0, 'reserved, not published');
  assert.equal(consumer.next(), -1);
  producer.commit();
  assert.equal(kindWordAt(sab, 0, 4096), 2, 'lap 0, kind 2');
  assert.equal(kindWordAt(sab, 32, 4096), 0, 'the next header is cleared');
  assert.ok(consumer.next() >= 0);
  assert.equal(consumer.kind, 2);
  // A tail moved ahead without a record behind it shows nothing to next() …
  Atomics.store(new Int32Array(sab), 16, 64 + 32);
  assert.equal(consumer.next(), -1);
  assert.throws(() => producer.reserve(0, 1, 0, 1), /outside 1…/);
  assert.throws(() => producer.reserve(KIND_WRAP, 1, 0, 1), /outside 1…/);
});

test('laps: after wrapping, every record carries the lap of its position', () => {
  const capacity = 4096;
  const { producer, consumer, sab } = makeRing(capacity);
  let pos = 0;
  for (let lap = 0; lap < 5; lap++) {
    while (pos < (lap + 1) * capacity - 1024) {
      assert.ok(producer.write(1, 1, 0, payload(200, 1)));
      producer.commit();
      assert.equal(kindWordAt(sab, pos, capacity) >>> 16, lap, `record at ${pos} in lap ${lap}`);
      const t = consumer.next();
      assert.ok(t >= 0);
      consumer.release(t);
      pos += 16 + 208;
    }
    // jump to the next lap through a WRAP
    while (Math.floor(pos / capacity) === lap) {
      assert.ok(producer.write(1, 1, 0, payload(1000, 1)));
      producer.commit();
      const t = consumer.next();
      assert.ok(t >= 0);
      consumer.release(t);
      const end = pos + 16 + 1008;
      pos =
        Math.floor(end / capacity) !== Math.floor(pos / capacity) || (end & (capacity - 1)) === 0
          ? (Math.floor(pos / capacity) + 1) * capacity + 16 + 1008
          : end;
    }
  }
});

test('a full ring: the consumer never takes the oldest held record for a new one, before or after release', () => {
  const capacity = 4096;
  const { producer, consumer } = makeRing(capacity);
  for (let round = 0; round < 50; round++) {
    const tokens: number[] = [];
    let wrote = 0;
    while (producer.write(1, round * 1000 + wrote, 0, payload(48, wrote))) wrote++;
    producer.commit();
    for (let t = consumer.next(); t >= 0; t = consumer.next()) {
      tokens.push(t);
      assert.ok(tokens.length <= wrote, `round ${round}: a stale header read as a record`);
    }
    assert.equal(tokens.length, wrote, `round ${round}: every record read once`);
    assert.equal(consumer.hasData(), false, 'a full ring read to the end shows nothing new');
    // release in a scrambled order, then the ring must be empty of news
    for (let k = tokens.length - 1; k >= 0; k -= 2) consumer.release(tokens[k] as number);
    assert.equal(consumer.next(), -1);
    for (let k = tokens.length - 2; k >= 0; k -= 2) consumer.release(tokens[k] as number);
    assert.equal(consumer.next(), -1, `round ${round}: stale headers are not records`);
    assert.equal(consumer.hasData(), false);
    // vary where the next round starts
    assert.ok(producer.write(1, 0, 0, payload(round * 16, 0)));
    producer.commit();
    consumer.release(consumer.next());
  }
});

test('fuzz: random sizes, runs and release orders: every record arrives once, intact, in order', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(1008), fc.nat(7), fc.boolean()), { minLength: 1, maxLength: 400 }), (plan) => {
      const capacity = 4096;
      const { producer, consumer } = makeRing(capacity);
      let sent = 0;
      let got = 0;
      const held: number[] = [];
      for (const [len, run, releaseNow] of plan) {
        for (let r = 0; r <= run; r++) {
          if (!producer.write(1 + (sent % 3), sent, len, payload(len, sent))) break;
          sent++;
        }
        if (run % 2 === 0) producer.commit();
        for (let t = consumer.next(); t >= 0; t = consumer.next()) {
          assert.equal(consumer.reqId, got);
          assert.equal(consumer.kind, 1 + (got % 3));
          assert.deepEqual(
            consumer.bytes.subarray(consumer.payloadOffset, consumer.payloadOffset + consumer.payloadLength),
            payload(consumer.aux, got),
          );
          got++;
          if (releaseNow) consumer.release(t);
          else held.push(t);
        }
        if (held.length > 6 || releaseNow) while (held.length > 0) consumer.release(held.pop() as number);
      }
      producer.commit();
      while (held.length > 0) consumer.release(held.pop() as number);
      for (let t = consumer.next(); t >= 0; t = consumer.next()) {
        assert.equal(consumer.reqId, got++);
        consumer.release(t);
      }
      assert.equal(got, sent);
    }),
    { numRuns: 300, seed: Number(process.env.FC_SEED ?? Date.now() % 1e9) },
  );
});

test('before sleeping the consumer checks tail: behind the records read, outside the ring or stuck ahead is E_PROTOCOL', () => {
  const capacity = 4096;
  {
    const { producer, consumer } = makeRing(capacity);
    assert.ok(producer.write(1, 1, 0, payload(8, 1)));
    producer.commit();
    consumer.release(consumer.next());
    assert.ok(consumer.prepareSleep() >= 0, 'tail equals what was read: sleep');
    consumer.awake();
  }
  {
    // torn: a header published by its kind word that claims more than tail covers
    const { consumer, sab } = makeRing(capacity);
    const u32 = new Uint32Array(sab);
    u32[RING_HEADER_BYTES / 4] = 1000;
    u32[RING_HEADER_BYTES / 4 + 2] = 1;
    Atomics.store(new Int32Array(sab), 16, 16);
    assert.ok(consumer.next() >= 0);
    assert.throws(
      () => consumer.prepareSleep(),
      (e) => isCellError(e, 'E_PROTOCOL'),
    );
  }
  {
    const { consumer, sab } = makeRing(capacity);
    Atomics.store(new Int32Array(sab), 16, capacity * 2);
    assert.throws(
      () => consumer.prepareSleep(),
      (e) => isCellError(e, 'E_PROTOCOL'),
    );
  }
  {
    const { consumer, sab } = makeRing(capacity);
    Atomics.store(new Int32Array(sab), 16, 64);
    assert.equal(consumer.prepareSleep(), -1, 'ahead: a producer between its stores, stay awake');
    const realNow = Date.now;
    try {
      Date.now = () => realNow() + 5000;
      assert.throws(
        () => consumer.prepareSleep(),
        (e) => isCellError(e, 'E_PROTOCOL'),
        'still ahead a while later',
      );
    } finally {
      Date.now = realNow;
    }
  }
});

test('a second process producing through wrap-arounds and full rings: every record and byte arrives, in order', async () => {
  const addon = loadNative().addon;
  assert.ok(addon !== undefined);
  const capacity = 8192;
  const records = 60_000;
  const fd = addon.memfdCreate('test-ring', ringBytesFor(capacity));
  const sab = addon.mmapShared(fd, ringBytesFor(capacity));
  RingBuffer.initialize(sab, capacity);
  const consumer = new RingBuffer(sab);
  const here = dirname(fileURLToPath(import.meta.url));
  const child = spawn(
    process.execPath,
    [join(here, 'fixtures', 'ring-producer.js'), String(records), String(12345), String(capacity)],
    { stdio: ['ignore', 'inherit', 'inherit', fd] },
  );
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  let got = 0;
  const held: number[] = [];
  const deadline = Date.now() + 60_000;
  while (got < records) {
    if (Date.now() > deadline) throw new Error(`only ${got} of ${records} records`);
    const t = consumer.next();
    if (t < 0) {
      while (held.length > 0) consumer.release(held.shift() as number);
      await new Promise((r) => setImmediate(r));
      continue;
    }
    got++;
    assert.equal(consumer.reqId, got);
    assert.equal(consumer.kind, 1 + ((got - 1) % 3));
    const len = consumer.aux;
    assert.equal(consumer.payloadLength, len);
    for (let k = 0; k < len; k++) {
      if (consumer.bytes[consumer.payloadOffset + k] !== (((got - 1) * 7 + k) & 0xff)) {
        throw new Error(`record ${got}: byte ${k} differs`);
      }
    }
    // hold a few records now and then, released out of order, so the producer meets a full ring
    if (got % 5 === 0) held.push(t);
    else consumer.release(t);
    if (held.length > 20) while (held.length > 0) consumer.release(held.pop() as number);
  }
  assert.equal(await exited, 0);
  addon.closeFd(fd);
});
