import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RaftNode, type StateMachine } from '../../src/consensus/node/node.js';
import { byDestination, InMemoryNetwork, type RaftTransport } from '../../src/consensus/node/transport.js';
import { MsgType } from '../../src/consensus/raft/types.js';
import { SimDisk } from '../../src/consensus/wal/simdisk.js';
import { CellError } from '../../src/errors/index.js';
import { waitFor } from '../support/wait-for.js';

/** Appends every command to a list; apply returns the list length (so results are checkable). */
class ListMachine implements StateMachine<number> {
  items: string[] = [];
  apply(cmd: Uint8Array): number {
    this.items.push(Buffer.from(cmd).toString());
    return this.items.length;
  }
  snapshot(): Uint8Array {
    return Buffer.from(JSON.stringify(this.items));
  }
  restore(data: Uint8Array): void {
    this.items = JSON.parse(Buffer.from(data).toString());
  }
}

interface Member {
  node: RaftNode<number>;
  sm: ListMachine;
  dir: string;
}

async function cluster(
  t: { after(f: () => Promise<void> | void): void },
  n: number,
  extra: Partial<Parameters<typeof RaftNode.open<number>>[0]> = {},
) {
  const net = new InMemoryNetwork();
  const root = mkdtempSync(join(tmpdir(), 'cell-raftnode-'));
  const ids = Array.from({ length: n }, (_, i) => i + 1);
  const members = new Map<number, Member>();
  const start = async (id: number, peers = ids) => {
    const sm = new ListMachine();
    const dir = join(root, `n${id}`);
    const node = await RaftNode.open<number>({
      id,
      peers,
      dir,
      stateMachine: sm,
      transport: net.transport(),
      tickMs: 5,
      electionTick: 10,
      ...extra,
    });
    members.set(id, { node, sm, dir });
    return node;
  };
  for (const id of ids) await start(id);
  t.after(async () => {
    for (const m of members.values()) await m.node.close();
    rmSync(root, { recursive: true, force: true });
  });
  const leader = () => waitFor('a leader', () => [...members.values()].find((m) => m.node.isLeader && !m.node.closed));
  return { net, ids, members, start, leader };
}

test('raftnode: concurrent proposals commit in order, ride shared fsyncs, and apply on every node', async (t) => {
  const c = await cluster(t, 3);
  const l = await c.leader();
  const syncs0 = l.node.stats.wal.syncs;
  const results = await Promise.all(Array.from({ length: 300 }, (_, i) => l.node.propose(Buffer.from(`c${i}`))));
  assert.deepEqual(
    [...results].sort((a, b) => a - b),
    Array.from({ length: 300 }, (_, i) => i + 1),
  );
  const syncs = l.node.stats.wal.syncs - syncs0;
  assert.ok(syncs < 100, `300 proposals took ${syncs} leader fsyncs`);
  for (const m of c.members.values()) await waitFor('apply everywhere', () => m.sm.items.length === 300);
  const first = c.members.get(1)!.sm.items;
  for (const m of c.members.values()) assert.deepEqual(m.sm.items, first);
});

test('raftnode: a follower rejects proposals with E_NOT_LEADER and the leader hint; reads are linearizable', async (t) => {
  const c = await cluster(t, 3);
  const l = await c.leader();
  const f = [...c.members.values()].find((m) => m !== l)!;
  await waitFor('follower knows the leader', () => f.node.leader === l.node.id);
  await assert.rejects(f.node.propose(Buffer.from('x')), (e: unknown) => {
    assert.ok(e instanceof CellError && e.code === 'E_NOT_LEADER');
    assert.equal(e.details?.leader, l.node.id);
    return true;
  });
  await l.node.propose(Buffer.from('w1'));
  // A read on the follower (forwarded ReadIndex) must see the write acknowledged before it started.
  await f.node.read();
  assert.ok(f.sm.items.includes('w1'));
  await l.node.read();
  assert.ok(l.sm.items.includes('w1'));
});

test('raftnode: leadership transfer, restart from the WAL, snapshot catch-up of a lagging node', async (t) => {
  const c = await cluster(t, 3, { snapshotEvery: 50, snapshotKeep: 10 });
  const l = await c.leader();
  const events: number[] = [];
  const target = [...c.members.values()].find((m) => m !== l)!;
  target.node.on('leader', (e: { leader: number }) => events.push(e.leader));
  await l.node.propose(Buffer.from('before'));
  await waitFor('target caught up', () => target.sm.items.length === 1);
  assert.ok(l.node.transferLeadership(target.node.id));
  await waitFor('transfer', () => target.node.isLeader);
  assert.ok(events.includes(target.node.id));

  // Cut a follower off, write enough to snapshot and compact past it, then let it back.
  const lagging = [...c.members.values()].find((m) => m !== target)!;
  c.net.isolate(lagging.node.id, c.ids);
  for (let i = 0; i < 4; i++)
    await Promise.all(Array.from({ length: 50 }, (_, k) => target.node.propose(Buffer.from(`b${i}.${k}`))));
  c.net.heal();
  await waitFor('lagging node catches up', () => lagging.sm.items.length === 201, 15_000);
  assert.deepEqual(lagging.sm.items, target.sm.items);

  // Restart a node on its data directory: it recovers the same state.
  const r = [...c.members.values()].find((m) => !m.node.isLeader)!;
  const before = r.sm.items.slice();
  await r.node.close();
  const node = await c.start(r.node.id);
  const again = c.members.get(node.id)!;
  await waitFor('restarted node replays', () => again.sm.items.length >= before.length);
  assert.deepEqual(again.sm.items.slice(0, before.length), before);
});

test('raftnode: a follower whose WAL lost its synced tail is caught up by the same leader, which warns', async (t) => {
  // Long election timeouts (1-2 s): the leader must stay put while the follower restarts, even on a
  // loaded machine.
  const c = await cluster(t, 3, { electionTick: 200 });
  const l = await c.leader();
  const term = l.node.term;
  const warnings: string[] = [];
  l.node.on('warning', (w: string) => warnings.push(w));
  for (let i = 0; i < 5; i++) {
    await Promise.all(Array.from({ length: 20 }, (_, k) => l.node.propose(Buffer.from(`w${i}.${k}`))));
  }
  const f = [...c.members.values()].find((m) => m !== l)!;
  await waitFor('follower caught up', () => f.sm.items.length === 100);
  await f.node.close();
  // The disk had acknowledged fdatasyncs it did not do: the last 40% of the segment is gone.
  const seg = readdirSync(f.dir)
    .filter((n) => n.startsWith('wal-'))
    .sort()
    .at(-1)!;
  truncateSync(join(f.dir, seg), Math.floor(statSync(join(f.dir, seg)).size * 0.6));
  const node = await c.start(f.node.id);
  await l.node.propose(Buffer.from('after'));
  const again = c.members.get(node.id)!;
  await waitFor('the follower re-replicated what it lost', () => again.sm.items.length === 101);
  assert.deepEqual(again.sm.items, l.sm.items);
  assert.equal(l.node.term, term, 'no election');
  assert.ok(
    warnings.some((w) => w.includes(`follower ${f.node.id} had acknowledged entries up to`) && w.includes('were lost')),
    warnings.join('\n'),
  );
});

test('raftnode: adding and removing a voter', async (t) => {
  const c = await cluster(t, 3);
  const l = await c.leader();
  await l.node.propose(Buffer.from('a'));
  const n4 = await c.start(4, [1, 2, 3]);
  await l.node.addNode(4);
  assert.deepEqual(l.node.voters, [1, 2, 3, 4]);
  await l.node.propose(Buffer.from('b'));
  const m4 = c.members.get(4)!;
  await waitFor('node 4 replicates', () => m4.sm.items.length === 2);
  assert.deepEqual(m4.sm.items, ['a', 'b']);
  await waitFor('node 4 learns config', () => n4.voters.length === 4);
  await l.node.removeNode(4);
  assert.deepEqual(l.node.voters, [1, 2, 3]);
});

test('raftnode: an fsync error stops the node (fatal event, pending proposals rejected)', async (t) => {
  const disk = new SimDisk();
  const net = new InMemoryNetwork();
  const sm = new ListMachine();
  const node = await RaftNode.open<number>({
    id: 1,
    peers: [1],
    dir: '/d',
    fs: disk,
    stateMachine: sm,
    transport: net.transport(),
    tickMs: 5,
    electionTick: 4,
  });
  t.after(() => node.close());
  await waitFor('single-node leader', () => node.isLeader);
  assert.equal(await node.propose(Buffer.from('ok')), 1);
  let fatal: CellError | null = null;
  node.on('fatal', (e: CellError) => {
    fatal = e;
  });
  disk.failSyncAt = disk.syncs + 1;
  await assert.rejects(
    node.propose(Buffer.from('lost')),
    (e: unknown) => e instanceof CellError && e.code === 'E_WAL_IO',
  );
  assert.ok(fatal);
  assert.ok(node.closed);
  assert.deepEqual(sm.items, ['ok'], 'the command whose batch failed to sync was never applied');
  await assert.rejects(
    node.propose(Buffer.from('after')),
    (e: unknown) => e instanceof CellError && e.code === 'E_WAL_IO',
  );
});

test('raftnode: proposals on a deposed leader fail with E_NOT_LEADER once its entries are cut', async (t) => {
  const c = await cluster(t, 3);
  const old = await c.leader();
  await old.node.propose(Buffer.from('committed'));
  c.net.isolate(old.node.id, c.ids);
  const orphans = Array.from({ length: 5 }, (_, i) => old.node.propose(Buffer.from(`orphan${i}`)));
  const settled = orphans.map((p) =>
    p.then(
      () => 'applied',
      (e: unknown) => (e instanceof CellError ? e.code : String(e)),
    ),
  );
  const fresh = await waitFor('a new leader', () => [...c.members.values()].find((m) => m !== old && m.node.isLeader));
  await fresh.node.propose(Buffer.from('new'));
  c.net.heal();
  assert.deepEqual(await Promise.all(settled), Array(5).fill('E_NOT_LEADER'));
  await waitFor('old leader converges', () => old.sm.items.length === 2);
  assert.deepEqual(old.sm.items, ['committed', 'new']);
});

test('raftnode: a leader whose followers are gone refuses proposals past maxUncommittedEntries', async (t) => {
  const c = await cluster(t, 3, { maxUncommittedEntries: 10 });
  const l = await c.leader();
  await l.node.propose(Buffer.from('ok'));
  c.net.isolate(l.node.id, c.ids);
  const pending = Array.from({ length: 10 }, (_, i) => l.node.propose(Buffer.from(`p${i}`)).catch(() => undefined));
  await assert.rejects(
    l.node.propose(Buffer.from('one too many')),
    (e: unknown) => e instanceof CellError && e.code === 'E_OVERLOADED',
  );
  c.net.heal();
  await Promise.all(pending);
});

test('raft peer codec: a batch of every message shape round-trips, with copied byte fields', async () => {
  const { decodeBatch, encodeBatch } = await import('../../src/consensus/node/codec.js');
  const { message, MsgType } = await import('../../src/consensus/raft/types.js');
  const app = message(MsgType.App, 2, 1, 7);
  Object.assign(app, {
    logTerm: 6,
    index: 41,
    commit: 40,
    entries: [
      { term: 7, index: 42, type: 0, data: Buffer.from('cmd') },
      { term: 7, index: 43, type: 1, data: new Uint8Array([3, 0, 0, 0]) },
    ],
  });
  const snap = message(MsgType.Snap, 3, 1, 7);
  snap.snapshot = { index: 40, term: 6, voters: [1, 2, 3], data: Buffer.from('state') };
  const resp = message(MsgType.AppResp, 1, 2, 7);
  Object.assign(resp, { reject: true, hint: 12, index: 41, ctx: 9 });
  const bytes = encodeBatch([app, snap, resp]);
  const out = decodeBatch(bytes);
  assert.equal(out.length, 3);
  assert.deepEqual(
    { ...out[0], entries: out[0].entries?.map((e) => ({ ...e, data: [...e.data] })) },
    { ...app, entries: app.entries?.map((e) => ({ ...e, data: [...e.data] })) },
  );
  assert.deepEqual(out[1].snapshot && { ...out[1].snapshot, data: Buffer.from(out[1].snapshot.data).toString() }, {
    index: 40,
    term: 6,
    voters: [1, 2, 3],
    data: 'state',
  });
  assert.equal(out[1].entries?.length, 0);
  assert.equal(out[0].snapshot, null);
  assert.deepEqual(
    { reject: out[2].reject, hint: out[2].hint, index: out[2].index, ctx: out[2].ctx },
    { reject: true, hint: 12, index: 41, ctx: 9 },
  );
  // Decoded data must not alias the frame (frames are reused by the transport).
  bytes.fill(0);
  assert.equal(Buffer.from(out[0].entries![0].data).toString(), 'cmd');
  assert.equal(Buffer.from(out[1].snapshot!.data).toString(), 'state');
  // Nor a frame decoded later (small byte fields share the decoder's slab).
  decodeBatch(encodeBatch([{ ...app, entries: [{ term: 7, index: 42, type: 0, data: Buffer.from('xyz') }] }]));
  assert.equal(Buffer.from(out[0].entries![0].data).toString(), 'cmd');
});

test('raft peer codec: a batch copied from another with the same entries is the batch encoded', async () => {
  const { BatchEncoder, encodeBatch } = await import('../../src/consensus/node/codec.js');
  const enc = new BatchEncoder();
  const encodeBatchLike = enc.encodeLike.bind(enc);
  const { message, MsgType } = await import('../../src/consensus/raft/types.js');
  const entries = Array.from({ length: 50 }, (_, i) => ({
    term: 7,
    index: 100 + i,
    type: 0,
    data: Buffer.from(`command ${i} `.repeat(1 + (i % 5))),
  }));
  const app = (to: number, ctx: number, index: number, ents = entries) =>
    Object.assign(message(MsgType.App, to, 1, 7), { logTerm: 6, index, commit: 95 + to, ctx, entries: ents });
  const hb = (to: number, ctx: number) => Object.assign(message(MsgType.Heartbeat, to, 1, 7), { commit: 90, ctx });
  const a = [app(2, 11, 99), hb(2, 3)];
  const b = [app(3, 2_000_000_000_123, 99), hb(3, 4)];
  const first = enc.encode(a);
  assert.deepEqual([...first], [...encodeBatch(a)]);
  const like = encodeBatchLike(a, first, b);
  assert.ok(like);
  assert.deepEqual([...like], [...encodeBatch(b)]);
  // Earlier results stay valid while more are encoded (a call may go out only once connected).
  for (let i = 0; i < 20; i++) enc.encode(b);
  assert.deepEqual([...first], [...encodeBatch(a)]);
  // Anything beyond the scalar fields differs: encoded afresh.
  assert.equal(encodeBatchLike(a, encodeBatch(a), [app(3, 1, 99, entries.slice(1))]), null);
  assert.equal(encodeBatchLike(a, encodeBatch(a), [app(3, 1, 99)]), null);
  const snap = Object.assign(message(MsgType.Snap, 3, 1, 7), {
    snapshot: { index: 1, term: 1, voters: [1], data: Buffer.from('s') },
  });
  assert.equal(encodeBatchLike([hb(2, 1)], encodeBatch([hb(2, 1)]), [snap]), null);
});

test('raftnode: under load a leader tells its followers a new commit index in the call with the next entries', async (t) => {
  const net = new InMemoryNetwork();
  const root = mkdtempSync(join(tmpdir(), 'cell-raftnode-'));
  const ids = [1, 2, 3];
  // Per node: batches it sent, and those holding nothing but appends without entries.
  const sent = new Map(ids.map((id) => [id, { batches: 0, commitOnly: 0 }]));
  const nodes = await Promise.all(
    ids.map((id) => {
      const inner = net.transport();
      const transport: RaftTransport = {
        start: (i, deliver) => inner.start(i, deliver),
        close: () => inner.close(),
        send: (msgs) => {
          const s = sent.get(id)!;
          for (const batch of byDestination(msgs).values()) {
            s.batches++;
            if (batch.every((m) => m.type === MsgType.App && (m.entries?.length ?? 0) === 0)) s.commitOnly++;
          }
          inner.send(msgs);
        },
      };
      return RaftNode.open<number>({
        id,
        peers: ids,
        dir: join(root, `n${id}`),
        stateMachine: new ListMachine(),
        transport,
        tickMs: 5,
        electionTick: 40,
      });
    }),
  );
  t.after(async () => {
    for (const n of nodes) await n.close();
    rmSync(root, { recursive: true, force: true });
  });
  const leader = await waitFor('a leader', () => nodes.find((n) => n.isLeader));
  const before = { ...sent.get(leader.id)! };
  // 32 proposers in a closed loop: every commit releases callers who propose again at once.
  let n = 0;
  await Promise.all(
    Array.from({ length: 32 }, async (_, w) => {
      for (let i = 0; i < 30; i++) await leader.propose(Buffer.from(`w${w}-${i}-${n++}`));
    }),
  );
  const s = sent.get(leader.id)!;
  const batches = s.batches - before.batches;
  const commitOnly = s.commitOnly - before.commitOnly;
  // Without holding them, about every other batch to a follower would carry only the commit index.
  assert.ok(batches > 20, `${batches} batches`);
  assert.ok(commitOnly * 10 < batches, `${commitOnly} of ${batches} batches carried only a commit index`);
});
