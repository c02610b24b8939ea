// `many`: a run of pipelined calls with one promise, over the shared-memory ring and over the socket.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { type TestContext, test } from 'node:test';
import { isCellError } from '../../../src/errors/index.js';
import { isRemoteError, Synapse } from '../../../src/index.js';
import { loadNative } from '../../../src/shm/native.js';
import type { RingFrameSink } from '../../../src/shm/wire.js';
import { ShmTest } from './fixtures/contract.js';
import { startCell } from './fixtures/start-cell.js';

if (loadNative().addon === undefined) throw new Error(`needs the native addon: ${loadNative().reason}`);

/** The fixture cell; `shm: false` keeps its callers on the socket. */
async function startCellOn(t: TestContext, shm: boolean): Promise<ChildProcess> {
  return (await startCell(t, shm ? {} : { SHM_TEST_OFF: '1' })).child;
}

async function grow(t: TestContext, shm: boolean) {
  const c = await Synapse.grow(ShmTest, { waitMs: 3000 });
  t.after(() => c.$close());
  assert.equal(c.$synapse.transport?.transport, shm ? 'shm' : 'socket');
  return c;
}

async function requestsServed(c: { $metrics(): Promise<unknown> }): Promise<number> {
  return ((await c.$metrics()) as { requests: number }).requests;
}

for (const shm of [true, false]) {
  const over = shm ? 'shm' : 'socket';

  test(`${over}: 3000 calls with random handler delays come back in input order, each run as its own call`, async (t) => {
    await startCellOn(t, shm);
    const c = await grow(t, shm);
    const before = await requestsServed(c);
    const inputs = Array.from({ length: 3000 }, (_, i) => ({
      id: i,
      delay: i % 5 === 0 ? (i * 7919) % 4 : 0,
      body: new Uint8Array(i % 300).fill(i & 0xff),
    }));
    const replies = await c.delayed.many(inputs);
    assert.equal(replies.length, inputs.length);
    for (let i = 0; i < inputs.length; i++) {
      assert.equal(replies[i]?.id, i);
      assert.deepEqual(Buffer.from(replies[i]?.body ?? []), Buffer.from((inputs[i] as { body: Uint8Array }).body));
    }
    // Plus the $metrics call itself.
    assert.equal((await requestsServed(c)) - before, inputs.length + 1);
    assert.deepEqual(await c.echo.many([]), []);
  });

  test(`${over}: a failing call rejects the batch naming its index; the connection carries on`, async (t) => {
    await startCellOn(t, shm);
    const c = await grow(t, shm);
    const inputs = Array.from({ length: 500 }, (_, i) => (i === 321 ? 0xffffffff : i));
    const err = await c.tally.many(inputs).catch((e: unknown) => e);
    assert.ok(isRemoteError(err), String(err));
    assert.equal(err.details?.index, 321);
    assert.equal(err.method, 'tally');
    assert.match(err.message, /tally refuses/);
    // The other 499 ran; the next call sees their count.
    assert.equal(await c.tally(1), 500);
  });

  test(`${over}: an input the schema rejects fails the batch, naming it; nothing after it is sent`, async (t) => {
    await startCellOn(t, shm);
    const c = await grow(t, shm);
    const bad = 'not bytes' as unknown as Uint8Array;
    const first = await c.echo.many([bad, new Uint8Array(1)]).catch((e: unknown) => e);
    assert.ok(isCellError(first), String(first));
    assert.equal(first.details?.index, 0);
    const before = await requestsServed(c);
    const inputs = [new Uint8Array(3), new Uint8Array(2), bad, new Uint8Array(1)];
    const err = await c.echo.many(inputs).catch((e: unknown) => e);
    assert.ok(isCellError(err), String(err));
    assert.equal(err.details?.index, 2);
    assert.match(err.message, /request 2 to 'echo'/);
    // Requests 0 and 1 had gone out and ran; 3 never left. Plus this $metrics call.
    assert.equal(await requestsServed(c), before + 3);
    assert.equal(before, 1, 'the first run sent nothing (only the first $metrics call reached the cell)');
  });

  test(`${over}: timeoutMs and an abort signal apply to the whole run`, async (t) => {
    await startCellOn(t, shm);
    const c = await grow(t, shm);
    const slow = Array.from({ length: 10 }, (_, i) => ({ id: i, delay: i === 9 ? 2000 : 0, body: new Uint8Array(0) }));
    const timedOut = await c.delayed.many(slow, { timeoutMs: 100 }).catch((e: unknown) => e);
    assert.ok(isCellError(timedOut, 'E_TIMEOUT'), String(timedOut));
    const ac = new AbortController();
    const pending = c.delayed.many(slow, { signal: ac.signal });
    setTimeout(() => ac.abort(), 20);
    const aborted = await pending.catch((e: unknown) => e);
    assert.ok(isCellError(aborted, 'E_ABORTED'), String(aborted));
    // Late replies of both runs are dropped; a fresh run works.
    assert.deepEqual(
      (await c.delayed.many(slow.slice(0, 3))).map((r) => r.id),
      [0, 1, 2],
    );
  });

  test(`${over}: a cell killed mid-run fails the run with E_CONNECTION_LOST`, async (t) => {
    const child = await startCellOn(t, shm);
    const c = await grow(t, shm);
    const run = c.delayed
      .many(Array.from({ length: 50 }, (_, i) => ({ id: i, delay: 200, body: new Uint8Array(1) })))
      .catch((e: unknown) => e);
    setTimeout(() => child.kill('SIGKILL'), 30);
    const err = await run;
    assert.ok(isCellError(err, 'E_CONNECTION_LOST'), String(err));
  });
}

test('shm: a run larger than the ring spills to the socket and still answers every call in order', async (t) => {
  await startCellOn(t, true);
  const c = await grow(t, true);
  const sink = (c.$synapse as unknown as { conn: { sink: RingFrameSink } }).conn.sink;
  const socketBefore = sink.socketFrames;
  // 20 000 × ~220 bytes is 4.4 MB: far beyond the fixture's 64 KiB ring.
  const inputs = Array.from({ length: 20_000 }, (_, i) => new Uint8Array(200).fill(i & 0xff));
  const replies = await c.echo.many(inputs);
  for (let i = 0; i < inputs.length; i += 1) {
    const r = replies[i] as Uint8Array;
    assert.ok(r.length === 200 && r[0] === (i & 0xff) && r[199] === (i & 0xff), `reply ${i}`);
  }
  assert.ok(sink.socketFrames > socketBefore, 'the overflow took the socket');
  assert.ok(sink.ringFrames > 0);
});
