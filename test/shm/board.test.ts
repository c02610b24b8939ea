import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BITMAP_WORD, BOARD_BYTES, Board, TO_CLIENT_BIT } from '../../src/shm/board.js';
import { boardStats, ShmChannel } from '../../src/shm/channel.js';
import { loadNative, type NativeAddon } from '../../src/shm/native.js';
import { RingBuffer, ringBytesFor } from '../../src/shm/ring.js';
import { OrderedSink, until } from './ordered-sink.js';

const native = loadNative();
const addon = native.addon as NativeAddon;
if (addon === undefined) throw new Error(`native addon unavailable: ${native.reason}`);
const here = dirname(fileURLToPath(import.meta.url));

function freshBoard(): Board {
  const sab = new SharedArrayBuffer(BOARD_BYTES);
  Board.initialize(sab);
  assert.ok(Board.valid(sab));
  return new Board(sab);
}

test('a board marks and the consumer clears: one word per 32 rings, bits of both directions apart', () => {
  const board = freshBoard();
  board.mark(0);
  board.mark(31);
  board.mark(TO_CLIENT_BIT + 5);
  board.mark(31); // already set: no change
  assert.equal(Atomics.load(board.words, BITMAP_WORD) >>> 0, 0x80000001);
  assert.equal(Atomics.load(board.words, BITMAP_WORD + (TO_CLIENT_BIT >>> 5)), 1 << 5);
  const junk = new SharedArrayBuffer(BOARD_BYTES);
  assert.equal(Board.valid(junk), false, 'an unstamped page is no board');
  assert.equal(Board.valid(new SharedArrayBuffer(64)), false, 'a short page is no board');
});

test('a ring takes its board bit from its header; a bit outside the board leaves it scanned', () => {
  const board = freshBoard();
  const sab = new SharedArrayBuffer(ringBytesFor(4096));
  RingBuffer.initialize(sab, 4096);
  assert.equal(new RingBuffer(sab).joinBoard(board), false, 'a fresh ring names no bit');
  RingBuffer.setReadyBit(sab, 7);
  const producer = new RingBuffer(sab);
  const consumer = new RingBuffer(sab);
  assert.ok(producer.joinBoard(board));
  assert.equal(producer.readyBit, 7);
  producer.write(0x46, 1, 0, new Uint8Array(4));
  producer.commit();
  assert.equal(Atomics.load(board.words, BITMAP_WORD), 0, 'no mark while the consumer does not watch');
  consumer.watchBoard(true);
  producer.write(0x46, 2, 0, new Uint8Array(4));
  producer.commit();
  assert.equal(Atomics.load(board.words, BITMAP_WORD), 1 << 7, 'marked once watched');
});

/** `n` ring pairs whose rx rings share one board, as a serving process's connections do. */
function channels(n: number, board: Board, capacity = 1 << 14) {
  const out: Array<{ peerTx: RingBuffer; channel: ShmChannel; sink: OrderedSink; bell: number }> = [];
  for (let i = 0; i < n; i++) {
    const a = new SharedArrayBuffer(ringBytesFor(capacity));
    const b = new SharedArrayBuffer(ringBytesFor(capacity));
    RingBuffer.initialize(a, capacity);
    RingBuffer.initialize(b, capacity);
    RingBuffer.setReadyBit(a, i * 3); // spread over words
    const bell = addon.eventfdCreate();
    const peerTx = new RingBuffer(a, () => addon.eventfdSignal(bell));
    assert.ok(peerTx.joinBoard(board));
    const rx = new RingBuffer(a);
    assert.ok(rx.joinBoard(board));
    const sink = new OrderedSink(i, (ring, _reqId, aux) => assert.equal(aux, ring, 'a record of another ring'));
    const channel = new ShmChannel(addon, new RingBuffer(b), rx, bell, sink);
    sink.channel = channel;
    out.push({ peerTx, channel, sink, bell });
  }
  return out;
}

test('with many channels the poller reads the board, and a peer clearing bits only delays records', async () => {
  const board = freshBoard();
  const list = channels(12, board);
  try {
    assert.equal(boardStats().boardMode, true, '12 watched channels switch the poller to the board');
    const perRing = 300;
    const sent = new Array<number>(list.length).fill(0);
    const payload = new Uint8Array(8);
    let hostile = 0;
    for (let round = 0; round < perRing; round++) {
      for (let i = 0; i < list.length; i++) {
        const { peerTx } = list[i] as (typeof list)[number];
        if (peerTx.write(0x46, (sent[i] as number) + 1, i, payload)) {
          sent[i] = (sent[i] as number) + 1;
          peerTx.commit();
        }
      }
      // A confused peer wipes the bitmap now and then: the sweep must still find the records.
      if (round % 7 === 0) {
        for (let w = 0; w < 4; w++) Atomics.store(board.words, BITMAP_WORD + w, 0);
        hostile++;
      }
      if (round % 25 === 0) await new Promise((r) => setImmediate(r));
    }
    await until(() => list.every((c, i) => c.sink.next - 1 === sent[i]), 'every record');
    assert.ok(hostile > 10);
  } finally {
    for (const c of list) {
      c.channel.close();
      addon.closeFd(c.bell);
    }
  }
  const after = boardStats();
  assert.deepEqual([after.boardMode, after.watchedChannels, after.boards], [false, 0, 0]);
});

test('a second process producing into 24 rings: every record arrives once, in order, through board and doorbells', async () => {
  const rings = 24;
  const perRing = 4000;
  const capacity = 1 << 14;
  const boardFd = addon.memfdCreate('test-board', BOARD_BYTES);
  const boardSab = addon.mmapShared(boardFd, BOARD_BYTES);
  Board.initialize(boardSab);
  const board = new Board(boardSab);
  const ringFds: number[] = [];
  const bells: number[] = [];
  const list: Array<{ channel: ShmChannel; sink: OrderedSink }> = [];
  for (let i = 0; i < rings; i++) {
    const fd = addon.memfdCreate('test-ring', ringBytesFor(capacity));
    const sab = addon.mmapShared(fd, ringBytesFor(capacity));
    RingBuffer.initialize(sab, capacity);
    RingBuffer.setReadyBit(sab, 40 + i); // not word-aligned: two words carry them
    ringFds.push(fd);
    const bell = addon.eventfdCreate();
    bells.push(bell);
    const rx = new RingBuffer(sab);
    assert.ok(rx.joinBoard(board));
    const tx = new SharedArrayBuffer(ringBytesFor(4096));
    RingBuffer.initialize(tx, 4096);
    const sink = new OrderedSink(i, (ring, _reqId, aux) => assert.equal(aux, ring, 'a record of another ring'));
    const channel = new ShmChannel(addon, new RingBuffer(tx), rx, bell, sink);
    sink.channel = channel;
    list.push({ channel, sink });
  }
  try {
    assert.equal(boardStats().boardMode, true);
    const before = boardStats().viaBoard;
    const child = spawn(
      process.execPath,
      [join(here, 'fixtures', 'board-producer.js'), String(rings), String(perRing), String(capacity)],
      { stdio: ['ignore', 'inherit', 'inherit', boardFd, ...ringFds, ...bells] },
    );
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    assert.equal(code, 0, 'the producer wrote everything');
    await until(() => list.every((c) => c.sink.next - 1 === perRing), 'every record of every ring');
    const wakeups = list.reduce((n, c) => n + c.channel.wakeups, 0);
    assert.ok(wakeups > 0, 'the producer also woke sleeping consumers');
    const viaBoard = boardStats().viaBoard - before;
    assert.ok(
      viaBoard > (rings * perRing) / 2,
      `only ${viaBoard} of ${rings * perRing} records found through the board`,
    );
  } finally {
    for (const c of list) c.channel.close();
    for (const fd of [boardFd, ...ringFds, ...bells]) addon.closeFd(fd);
  }
});
