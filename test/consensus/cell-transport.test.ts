import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CellTransport } from '../../src/consensus/node/cell-transport.js';
import { RaftNode, type StateMachine } from '../../src/consensus/node/node.js';
import { type Message, MsgType, message } from '../../src/consensus/raft/types.js';
import { waitFor } from '../support/wait-for.js';

/** Each test gets its own socket directory and cell names. */
function sockets(t: { after(f: () => void): void }): (id: number) => string {
  const dir = mkdtempSync(join(tmpdir(), 'cell-rafttx-'));
  const before = process.env.CELL_SOCKET_DIR;
  process.env.CELL_SOCKET_DIR = dir;
  t.after(() => {
    if (before === undefined) delete process.env.CELL_SOCKET_DIR;
    else process.env.CELL_SOCKET_DIR = before;
    rmSync(dir, { recursive: true, force: true });
  });
  return (id) => `rtx-${process.pid}-${id}`;
}

function pair(name: (id: number) => string, timeoutMs = 2000) {
  const peers = { 1: name(1), 2: name(2) };
  return [new CellTransport({ peers, timeoutMs }), new CellTransport({ peers, timeoutMs })] as const;
}

const heartbeat = (to: number, from: number, ctx: number): Message => ({
  ...message(MsgType.Heartbeat, to, from, 1),
  ctx,
});

test('cell transport: an answer rides the reply to the call that carried the batch; settle sends the rest back empty', async (t) => {
  const [a, b] = pair(sockets(t));
  t.after(async () => {
    await a.close();
    await b.close();
  });
  const atA: Message[] = [];
  const atB: Message[] = [];
  await a.start(1, (msgs) => atA.push(...msgs));
  await b.start(2, (msgs) => atB.push(...msgs));

  a.send([heartbeat(2, 1, 7)]);
  await waitFor('the heartbeat at 2', () => atB.length === 1);
  const mark = b.mark();
  assert.equal(mark, 1, 'one batch delivered');
  b.send([{ ...message(MsgType.HeartbeatResp, 1, 2, 1), ctx: 7 }]);
  await waitFor('the answer at 1', () => atA.length === 1);
  assert.equal(atA[0].type, MsgType.HeartbeatResp);
  assert.equal(atA[0].ctx, 7);
  assert.equal(b.sentCalls, 0, 'node 2 made no call of its own: the answer went back in the reply');
  assert.equal(b.repliedBatches, 1);

  // A batch the node answers nothing to: its reply is held until the node settles it, then empty.
  a.send([heartbeat(2, 1, 8)]);
  await waitFor('the second heartbeat at 2', () => atB.length === 2);
  b.settle(mark);
  b.send([{ ...message(MsgType.HeartbeatResp, 1, 2, 1), ctx: 8 }]);
  await waitFor('the second answer at 1', () => atA.length === 2);
  assert.equal(b.sentCalls, 0, 'a reply for a batch after the mark was still open');
  b.settle(b.mark());
  b.send([{ ...message(MsgType.HeartbeatResp, 1, 2, 1), ctx: 9 }]);
  await waitFor('the third answer at 1', () => atA.length === 3);
  assert.equal(b.sentCalls, 1, 'with no reply open, messages go in a call');
  assert.deepEqual(
    atA.map((m) => m.ctx),
    [7, 8, 9],
  );
  assert.equal(a.droppedMessages + b.droppedMessages, 0);
});

test('cell transport: a reply the node never settles goes back before the caller would time out', async (t) => {
  const [a, b] = pair(sockets(t), 400);
  t.after(async () => {
    await a.close();
    await b.close();
  });
  const atB: Message[] = [];
  await a.start(1, () => {});
  await b.start(2, (msgs) => atB.push(...msgs));
  for (let i = 1; i <= 3; i++) {
    a.send([heartbeat(2, 1, i)]);
    await waitFor(`heartbeat ${i} at 2`, () => atB.length === i);
    await new Promise((r) => setTimeout(r, 250));
  }
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(a.droppedMessages, 0, 'no call timed out (its connection would have been dropped)');
  assert.equal(a.sentCalls, 3);
});

class Counter implements StateMachine<number> {
  n = 0;
  apply(): number {
    return ++this.n;
  }
  snapshot(): Uint8Array {
    return Uint8Array.of(this.n);
  }
  restore(data: Uint8Array): void {
    this.n = data[0] ?? 0;
  }
}

test('raft over cell transport: followers acknowledge in the replies to the leader’s appends', async (t) => {
  const name = sockets(t);
  const root = mkdtempSync(join(tmpdir(), 'cell-raftcell-'));
  const ids = [1, 2, 3];
  const peers = Object.fromEntries(ids.map((id) => [id, name(id)]));
  const transports = ids.map(() => new CellTransport({ peers }));
  const sms = ids.map(() => new Counter());
  const nodes = await Promise.all(
    ids.map((id, i) =>
      RaftNode.open<number>({
        id,
        peers: ids,
        dir: join(root, `n${id}`),
        stateMachine: sms[i],
        transport: transports[i],
        tickMs: 5,
        electionTick: 10,
      }),
    ),
  );
  t.after(async () => {
    await Promise.all(nodes.map((n) => n.close()));
    rmSync(root, { recursive: true, force: true });
  });
  const leader = await waitFor('a leader', () => nodes.find((n) => n.isLeader));
  const before = transports.map((x) => ({ calls: x.sentCalls, replied: x.repliedBatches }));
  const results = await Promise.all(Array.from({ length: 200 }, () => leader.propose(Uint8Array.of(1))));
  assert.deepEqual(
    [...results].sort((x, y) => x - y),
    Array.from({ length: 200 }, (_, i) => i + 1),
  );
  await waitFor('every replica applied', () => sms.every((s) => s.n === 200));
  for (const [i, n] of nodes.entries()) {
    if (n === leader) continue;
    const replied = transports[i].repliedBatches - before[i].replied;
    const calls = transports[i].sentCalls - before[i].calls;
    assert.ok(replied > 0, `follower ${n.id} answered in replies (${replied} replies, ${calls} calls)`);
    assert.ok(calls < replied, `follower ${n.id} made fewer calls (${calls}) than it replied (${replied})`);
  }
});
