import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BOARD_BYTES, Board } from '../../src/shm/board.js';
import { bellStats, boardStats, ShmChannel } from '../../src/shm/channel.js';
import { adoptBells, Ringer, releaseBells, shareBells } from '../../src/shm/doorbell.js';
import { loadNative, type NativeAddon } from '../../src/shm/native.js';
import { RingBuffer, ringBytesFor } from '../../src/shm/ring.js';
import { OrderedSink, until } from './ordered-sink.js';

const native = loadNative();
const addon = native.addon as NativeAddon;
if (addon === undefined) throw new Error(`native addon unavailable: ${native.reason}`);
const here = dirname(fileURLToPath(import.meta.url));

/** Every delivery of every channel, in one global order. */
const delivered: Array<{ ring: number; reqId: number }> = [];

/** An addon whose eventfd writes are counted (the rest is never called by a Ringer). */
function countingAddon(): { addon: NativeAddon; writes: () => number } {
  let writes = 0;
  const counting = {
    eventfdSignal(fd: number) {
      writes++;
      addon.eventfdSignal(fd);
    },
  } as unknown as NativeAddon;
  return { addon: counting, writes: () => writes };
}

interface Conn {
  peerTx: RingBuffer;
  channel: ShmChannel;
  sink: OrderedSink;
}

/** `n` connections whose rx rings all sleep on the one eventfd `bell` (a shared doorbell). */
function connections(n: number, bell: number, ring: () => void, board?: Board, capacity = 1 << 14): Conn[] {
  const out: Conn[] = [];
  for (let i = 0; i < n; i++) {
    const a = new SharedArrayBuffer(ringBytesFor(capacity));
    const b = new SharedArrayBuffer(ringBytesFor(capacity));
    RingBuffer.initialize(a, capacity);
    RingBuffer.initialize(b, 4096);
    const peerTx = new RingBuffer(a, ring);
    const rx = new RingBuffer(a);
    if (board !== undefined) {
      RingBuffer.setReadyBit(a, i);
      assert.ok(peerTx.joinBoard(board) && rx.joinBoard(board));
    }
    const sink = new OrderedSink(i, (ring, reqId) => delivered.push({ ring, reqId }));
    const channel = new ShmChannel(addon, new RingBuffer(b), rx, bell, sink);
    sink.channel = channel;
    out.push({ peerTx, channel, sink });
  }
  return out;
}

const asleep = (list: Conn[]) => list.every((c) => c.channel.sleeps > 0 && !c.channel.hot);

test('16 rings on one doorbell: one watcher, one write for a run of commits, only the rings that rang wake', async () => {
  const bell = addon.eventfdCreate();
  const counted = countingAddon();
  const ringer = new Ringer(counted.addon, bell);
  const list = connections(16, bell, ringer.ring);
  try {
    assert.deepEqual(bellStats(), { watchers: 1, channels: 16 });
    await until(() => asleep(list), 'every channel to fall asleep');
    // One synchronous run publishes into 10 of the 16 sleeping rings.
    for (let i = 0; i < 10; i++) {
      const { peerTx } = list[i] as Conn;
      assert.ok(peerTx.write(0x46, 1, 0, new Uint8Array(8)));
      peerTx.commit();
    }
    await until(() => list.slice(0, 10).every((c) => c.sink.next === 2), 'the 10 records');
    assert.equal(counted.writes(), 1, 'one eventfd write for the whole run');
    assert.deepEqual(
      list.map((c) => c.channel.wakeups),
      [...new Array(10).fill(1), ...new Array(6).fill(0)],
      'each ring that rang woke once; the others slept on',
    );
    for (const c of list.slice(10)) assert.equal(c.channel.hot, false);
  } finally {
    for (const c of list) c.channel.close();
    ringer.close();
    addon.closeFd(bell);
  }
  assert.deepEqual(bellStats(), { watchers: 0, channels: 0 }, 'the last channel stopped the watcher');
});

test('a busy ring cannot starve the others: every marked ring is served within the first batches', async () => {
  const bell = addon.eventfdCreate();
  const board = new Board(new SharedArrayBuffer(BOARD_BYTES));
  Board.initialize(board.sab);
  const list = connections(9, bell, () => addon.eventfdSignal(bell), board, 1 << 16);
  try {
    assert.equal(boardStats().boardMode, true);
    await until(() => asleep(list), 'every channel to fall asleep');
    delivered.length = 0;
    const busy = list[0] as Conn;
    let backlog = 0;
    while (busy.peerTx.write(0x46, backlog + 1, 0, new Uint8Array(16))) backlog++;
    busy.peerTx.commit();
    for (const c of list.slice(1)) {
      assert.ok(c.peerTx.write(0x46, 1, 0, new Uint8Array(16)));
      c.peerTx.commit();
    }
    await until(() => list.every((c, i) => c.sink.next - 1 === (i === 0 ? backlog : 1)), 'every record');
    assert.ok(backlog > 1000, `a backlog of ${backlog}`);
    // The poller drains at most 32 records of a ring per turn: the others' one record each comes
    // before the busy ring's third batch, however deep its backlog.
    const lastSingle = Math.max(...list.slice(1).map((_, i) => delivered.findIndex((d) => d.ring === i + 1)));
    const busyBefore = delivered.slice(0, lastSingle).filter((d) => d.ring === 0).length;
    assert.ok(busyBefore <= 64, `the busy ring delivered ${busyBefore} records before the last single one`);
  } finally {
    for (const c of list) c.channel.close();
    addon.closeFd(bell);
  }
});

test('a connection closed while its bit is marked and the doorbell rang: the others still wake', async () => {
  const bell = addon.eventfdCreate();
  const board = new Board(new SharedArrayBuffer(BOARD_BYTES));
  Board.initialize(board.sab);
  const list = connections(6, bell, () => addon.eventfdSignal(bell), board);
  try {
    await until(() => asleep(list), 'every channel to fall asleep');
    const gone = list[2] as Conn;
    assert.ok(gone.peerTx.write(0x46, 1, 0, new Uint8Array(8)));
    gone.peerTx.commit(); // marks bit 2 and writes the eventfd
    gone.channel.close(); // before the event loop delivers the wake-up
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(gone.sink.next, 1, 'nothing delivered to a closed channel');
    assert.deepEqual(bellStats(), { watchers: 1, channels: 5 });
    await until(() => asleep(list.filter((c) => c !== gone)), 'the others to sleep again');
    const other = list[4] as Conn;
    assert.ok(other.peerTx.write(0x46, 1, 0, new Uint8Array(8)));
    other.peerTx.commit();
    await until(() => other.sink.next === 2, "another ring's record");
  } finally {
    for (const c of list) c.channel.close();
    addon.closeFd(bell);
  }
});

test('a process producing into 24 rings that share one doorbell (one fd each, as a caller gets them) wakes a sleeping poller', async () => {
  const rings = 24;
  const perRing = 2000;
  const capacity = 1 << 14;
  const boardFd = addon.memfdCreate('test-board', BOARD_BYTES);
  const board = new Board(addon.mmapShared(boardFd, BOARD_BYTES));
  Board.initialize(board.sab);
  const bell = addon.eventfdCreate();
  const ringFds: number[] = [];
  const list: Array<{ channel: ShmChannel; sink: OrderedSink }> = [];
  for (let i = 0; i < rings; i++) {
    const fd = addon.memfdCreate('test-ring', ringBytesFor(capacity));
    const sab = addon.mmapShared(fd, ringBytesFor(capacity));
    RingBuffer.initialize(sab, capacity);
    RingBuffer.setReadyBit(sab, 100 + i);
    ringFds.push(fd);
    const rx = new RingBuffer(sab);
    assert.ok(rx.joinBoard(board));
    const tx = new SharedArrayBuffer(ringBytesFor(4096));
    RingBuffer.initialize(tx, 4096);
    const sink = new OrderedSink(i, (ring, reqId) => delivered.push({ ring, reqId }));
    const channel = new ShmChannel(addon, new RingBuffer(tx), rx, bell, sink);
    sink.channel = channel;
    list.push({ channel, sink });
  }
  try {
    assert.deepEqual(bellStats(), { watchers: 1, channels: rings });
    await until(() => list.every((c) => c.channel.sleeps > 0 && !c.channel.hot), 'the poller to sleep');
    const child = spawn(
      process.execPath,
      [join(here, 'fixtures', 'board-producer.js'), String(rings), String(perRing), String(capacity)],
      { stdio: ['ignore', 'inherit', 'inherit', boardFd, ...ringFds, ...new Array<number>(rings).fill(bell)] },
    );
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    assert.equal(code, 0, 'the producer wrote everything');
    await until(() => list.every((c) => c.sink.next - 1 === perRing), 'every record of every ring');
    assert.ok(
      list.reduce((n, c) => n + c.channel.wakeups, 0) > 0,
      'the producer woke the sleeping poller through the doorbell',
    );
  } finally {
    for (const c of list) c.channel.close();
    for (const fd of [boardFd, bell, ...ringFds]) addon.closeFd(fd);
  }
});

test('shared doorbells are counted per process pair and closed with the last connection', () => {
  const pid = 1_000_000 + Math.floor(Math.random() * 1000);
  const a = shareBells(addon, pid);
  const b = shareBells(addon, pid);
  assert.equal(a, b, 'a second connection from the same process gets the same pair');
  assert.notEqual(shareBells(addon, pid + 1), a, 'another process gets its own');
  releaseBells(addon, shareBells(addon, pid + 1));
  releaseBells(addon, shareBells(addon, pid + 1));
  releaseBells(addon, a);
  addon.eventfdSignal(a.c2s); // still open: one connection left
  // The client side keeps the first copies and closes later ones.
  const c2s = addon.eventfdCreate();
  const s2c = addon.eventfdCreate();
  const mine = adoptBells(addon, 42, a.id.toString('hex'), c2s, s2c);
  const dupC2s = addon.eventfdCreate();
  const dupS2c = addon.eventfdCreate();
  assert.equal(adoptBells(addon, 42, a.id.toString('hex'), dupC2s, dupS2c), mine);
  assert.throws(() => addon.eventfdSignal(dupC2s), 'the copy was closed');
  const otherServer = adoptBells(addon, 43, a.id.toString('hex'), addon.eventfdCreate(), addon.eventfdCreate());
  assert.notEqual(otherServer, mine, 'the same id from another server process is another pair');
  releaseBells(addon, otherServer);
  releaseBells(addon, mine);
  releaseBells(addon, mine);
  assert.throws(() => addon.eventfdSignal(c2s), 'closed with the last connection');
  releaseBells(addon, b);
  assert.throws(() => addon.eventfdSignal(a.s2c), 'closed with the last connection');
});
