import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { CellError } from '../../../src/errors/index.js';
import { loadNative } from '../../../src/shm/native.js';
import { slotBytesFor } from '../../../src/shm/upgrade.js';
import type { RingFrameSink } from '../../../src/shm/wire.js';
import { Synapse } from '../../../src/synapse/index.js';
import { ShmTest } from './fixtures/contract.js';
import { printed, startCell } from './fixtures/start-cell.js';

if (loadNative().addon === undefined) throw new Error(`needs the native addon: ${loadNative().reason}`);

// The fixture cell runs 64 KiB rings: a ring record carries at most 16 368 bytes, a slot 1 MiB.
const RING = 1 << 16;
const RING_MAX = RING / 4 - 16;
const SLOT = slotBytesFor(RING);
/** An echo request frame: the 12-byte header, then the body (a top-level bytes value has no length prefix). */
const FRAME_OVERHEAD = 12;
const HOLDER = fileURLToPath(new URL('./fixtures/holder.js', import.meta.url));

async function grow(t: TestContext) {
  const c = await Synapse.grow(ShmTest, { waitMs: 3000 });
  t.after(() => c.$close());
  return c;
}

function ringSink(c: { $synapse: unknown }): RingFrameSink {
  return (c.$synapse as unknown as { conn: { sink: RingFrameSink } }).conn.sink;
}

function body(size: number, seed: number): Uint8Array {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i += 7) b[i] = (i * 13 + seed) & 0xff;
  if (size > 0) b[size - 1] = seed & 0xff;
  return b;
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

test('frames over the ring limit travel in the big slot both ways; sizes around every threshold round-trip', async (t) => {
  await startCell(t);
  const c = await grow(t);
  assert.equal(c.$synapse.transport?.transport, 'shm');
  const sink = ringSink(c);
  const sizes: number[] = [];
  // ring record limit, the size from which decode copies into recycled memory (64 KiB), the slot
  for (const edge of [RING_MAX - FRAME_OVERHEAD, 1 << 16, SLOT - FRAME_OVERHEAD]) {
    for (let d = -3; d <= 3; d++) sizes.push(edge + d);
  }
  // property: random sizes across the whole range, seeded so a failure repeats
  let x = 12345;
  for (let i = 0; i < 40; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    sizes.push(x % (SLOT + 64));
  }
  let seed = 0;
  for (const size of sizes) {
    const b = body(size, ++seed);
    const before = { slot: sink.slotFrames, socket: sink.socketFrames, ring: sink.ringFrames };
    const reply = await c.echo(b);
    assert.ok(Buffer.from(reply).equals(Buffer.from(b)), `size ${size}`);
    const frame = size + FRAME_OVERHEAD;
    if (frame <= RING_MAX) assert.equal(sink.ringFrames - before.ring, 1, `size ${size}: ring record`);
    else if (frame <= SLOT) assert.equal(sink.slotFrames - before.slot, 1, `size ${size}: big slot`);
    else assert.equal(sink.socketFrames - before.socket, 1, `size ${size}: socket`);
  }
  assert.ok(sink.slotFrames > 10);
  assert.ok(sink.socketFrames > 0, 'frames over the slot still take the socket');
});

test('pipelined big calls share one slot: those that find it held take the socket, every reply is its own', async (t) => {
  await startCell(t);
  const c = await grow(t);
  const sink = ringSink(c);
  const calls: Promise<void>[] = [];
  for (let i = 0; i < 40; i++) {
    const b = body(100_000 + i * 1000, i);
    calls.push(
      c.delayed({ id: i, delay: i % 3, body: b }).then((r) => {
        assert.equal(r.id, i);
        const got = Buffer.from(r.body);
        let k = 0;
        while (k < b.length && got[k] === b[k]) k++;
        assert.ok(
          got.equals(Buffer.from(b)),
          `call ${i}: ${got.length} bytes back for ${b.length}, first difference at ${k}: got ${got.subarray(k, k + 16).toString('hex')} want ${Buffer.from(b.subarray(k, k + 16)).toString('hex')}`,
        );
      }),
    );
  }
  await Promise.all(calls);
  assert.ok(sink.slotFrames >= 1);
  assert.ok(sink.socketFrames >= 1, 'a held slot sends the next big frame over the socket');
});

test('a client that does not ask for big slots (an older peer) keeps big frames on the socket', async (t) => {
  await startCell(t);
  process.env.CELL_SHM_BIG_SLOTS = '0';
  t.after(() => {
    delete process.env.CELL_SHM_BIG_SLOTS;
  });
  const c = await grow(t);
  assert.equal(c.$synapse.transport?.transport, 'shm');
  const sink = ringSink(c);
  const b = body(200_000, 9);
  assert.ok(Buffer.from(await c.echo(b)).equals(Buffer.from(b)));
  assert.equal(sink.slotFrames, 0);
  assert.equal(sink.socketFrames, 1);
});

test('connections with big slots leave no fd behind once closed', async (t) => {
  await startCell(t);
  const warm = await Synapse.grow(ShmTest, { waitMs: 3000 });
  await warm.echo(body(300_000, 1));
  await warm.$close();
  const before = openFds();
  for (let i = 0; i < 5; i++) {
    const c = await Synapse.grow(ShmTest, { waitMs: 3000 });
    assert.equal(c.$synapse.transport?.transport, 'shm');
    const b = body(500_000, i);
    assert.ok(Buffer.from(await c.echo(b)).equals(Buffer.from(b)));
    assert.ok(ringSink(c).slotFrames >= 1);
    await c.$close();
  }
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(openFds(), before);
});

test('a handler holding the slot does not hold up other big calls: they take the socket and finish first', async (t) => {
  await startCell(t);
  const c = await grow(t);
  const sink = ringSink(c);
  const order: string[] = [];
  const slow = c.delayed({ id: 1, delay: 400, body: body(200_000, 1) }).then((r) => {
    order.push('slow');
    return r;
  });
  const quick: Promise<void>[] = [];
  for (let i = 0; i < 4; i++) {
    const b = body(150_000 + i, i + 2);
    quick.push(
      c.echo(b).then((r) => {
        assert.ok(Buffer.from(r).equals(Buffer.from(b)), `echo ${i}`);
        order.push(`quick${i}`);
      }),
    );
  }
  await Promise.all([slow, ...quick]);
  assert.equal(order.at(-1), 'slow', `the held slot queued nothing behind it: ${order.join(', ')}`);
  assert.ok(sink.slotFrames >= 1 && sink.socketFrames >= 4);
  assert.ok(Buffer.from((await slow).body).equals(Buffer.from(body(200_000, 1))));
});

test('the cell dies while its handler holds a big request in the slot: the call fails with E_CONNECTION_LOST', async (t) => {
  const { child } = await startCell(t);
  const c = await grow(t);
  const call = c.delayed({ id: 1, delay: 5000, body: body(300_000, 5) });
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(ringSink(c).slotFrames >= 1);
  child.kill('SIGKILL');
  await assert.rejects(call, (e: CellError) => e.code === 'E_CONNECTION_LOST');
});

test('a caller dies while the cell holds its big request in the slot: the cell serves the next caller', async (t) => {
  const { child: cell } = await startCell(t);
  const holder = spawn(process.execPath, [HOLDER, '1', 'big'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => holder.kill('SIGKILL'));
  await printed(holder, 'sent', 'holder');
  holder.kill('SIGKILL');
  await new Promise((r) => holder.once('exit', r));
  const c = await grow(t);
  for (let i = 0; i < 3; i++) {
    const b = body(400_000, 20 + i);
    assert.ok(Buffer.from(await c.echo(b)).equals(Buffer.from(b)));
  }
  assert.ok(ringSink(c).slotFrames >= 3);
  assert.equal(cell.exitCode, null, 'the cell is still running');
});
