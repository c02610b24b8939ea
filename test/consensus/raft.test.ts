import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Raft, type RaftConfig } from '../../src/consensus/raft/raft.js';
import {
  type Entry,
  EntryType,
  type HardState,
  type Message,
  MsgType,
  message,
  type ReadState,
  type Ready,
  Role,
  type Snapshot,
} from '../../src/consensus/raft/types.js';
import { Prng } from '../../src/consensus/sim/prng.js';

interface Disk {
  hardState: HardState;
  snapshot: Snapshot | null;
  entries: Entry[];
}

interface Node {
  raft: Raft;
  disk: Disk;
  applied: Entry[];
  reads: ReadState[];
  cfg: RaftConfig;
}

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** Raft instances wired by hand: Ready handling as a shell does it, messages queued until delivered. */
class Net {
  readonly nodes = new Map<number, Node>();
  queue: Message[] = [];
  /** Return false to drop a message. */
  filter: (m: Message) => boolean = () => true;
  sent: Message[] = [];

  constructor(ids: number[], opts: Partial<RaftConfig> = {}, voters = ids) {
    for (const id of ids) this.add(id, opts, voters.includes(id) ? voters : []);
  }

  add(id: number, opts: Partial<RaftConfig> = {}, peers: number[] = []): Node {
    const rng = new Prng(id);
    const cfg: RaftConfig = {
      id,
      peers,
      electionTick: 10,
      heartbeatTick: 1,
      preVote: true,
      checkQuorum: true,
      maxMsgEntries: 64,
      maxInflight: 16,
      random: () => rng.next(),
      ...opts,
    };
    const disk: Disk = { hardState: { term: 0, vote: 0, commit: 0 }, snapshot: null, entries: [] };
    const n: Node = { raft: new Raft(cfg, disk), disk, applied: [], reads: [], cfg };
    this.nodes.set(id, n);
    return n;
  }

  /** Restart a node from what it persisted. */
  restart(id: number): Node {
    const old = this.get(id);
    const d = old.disk;
    const raft = new Raft(old.cfg, { hardState: { ...d.hardState }, snapshot: d.snapshot, entries: d.entries.slice() });
    const n: Node = { raft, disk: d, applied: [], reads: [], cfg: old.cfg };
    this.nodes.set(id, n);
    return n;
  }

  get(id: number): Node {
    return this.nodes.get(id)!;
  }

  drain(id: number): void {
    const n = this.get(id);
    while (n.raft.hasReady()) this.handle(id, n.raft.ready());
  }

  /** Persists, sends and applies one Ready, then advances. */
  handle(id: number, rd: Ready): void {
    const n = this.get(id);
    if (rd.snapshot) {
      n.disk.snapshot = rd.snapshot;
      n.disk.entries = [];
    }
    if (rd.entries.length > 0) {
      const first = rd.entries[0].index;
      n.disk.entries = n.disk.entries.filter((e) => e.index < first).concat(rd.entries);
    }
    if (rd.hardState) n.disk.hardState = rd.hardState;
    for (const m of rd.messages.concat(rd.messagesAfterSync)) {
      this.sent.push(m);
      this.queue.push(m);
    }
    for (const e of rd.committedEntries) n.applied.push(e);
    for (const r of rd.readStates) n.reads.push(r);
    n.raft.advance();
  }

  /** Deliver messages until the cluster is quiet. */
  settle(rounds = 200): void {
    for (let i = 0; i < rounds; i++) {
      for (const id of this.nodes.keys()) this.drain(id);
      if (this.queue.length === 0) return;
      const q = this.queue;
      this.queue = [];
      for (const m of q) if (this.nodes.has(m.to) && this.filter(m)) this.get(m.to).raft.step(m);
    }
    throw new Error('cluster did not settle');
  }

  tick(id: number, n = 1): void {
    for (let i = 0; i < n; i++) {
      this.get(id).raft.tick();
      this.settle();
    }
  }

  tickAll(n: number): void {
    for (let i = 0; i < n; i++) {
      for (const node of this.nodes.values()) node.raft.tick();
      this.settle();
    }
  }

  /** Make `id` leader by running out its election timer first. */
  elect(id: number): void {
    this.tick(id, 20);
    assert.equal(this.get(id).raft.role, Role.Leader, `node ${id} should lead`);
  }

  data(id: number): string[] {
    return this.get(id)
      .applied.filter((e) => e.type === EntryType.Normal && e.data.length > 0)
      .map((e) => dec(e.data));
  }

  /** Tick a group of nodes together until one of them leads; returns it. */
  electAmong(ids: number[]): number {
    for (let i = 0; i < 50; i++) {
      for (const id of ids) this.get(id).raft.tick();
      this.settle();
      const l = ids.find((id) => this.get(id).raft.role === Role.Leader);
      if (l !== undefined) return l;
    }
    throw new Error(`no leader among ${ids}`);
  }

  isolate(id: number): void {
    this.filter = (m) => m.from !== id && m.to !== id;
  }
}

test('election: a node whose timer fires wins with pre-vote and everyone follows it', () => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  const r1 = net.get(1).raft;
  assert.equal(r1.term, 1, 'pre-vote does not spend a term');
  for (const id of [2, 3]) {
    assert.equal(net.get(id).raft.role, Role.Follower);
    assert.equal(net.get(id).raft.lead, 1);
    assert.equal(net.get(id).disk.hardState.vote, 1, 'the vote is persisted');
  }
  // The leader's no-op commits everywhere.
  for (const id of [1, 2, 3]) assert.equal(net.get(id).raft.log.committed, 1);
});

test('pre-vote: a partitioned node does not inflate its term or disturb the leader on return', () => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.isolate(3);
  net.tick(3, 100);
  assert.equal(net.get(3).raft.term, 1, 'pre-votes fail without raising the term');
  net.filter = () => true;
  net.tickAll(5);
  assert.equal(net.get(1).raft.role, Role.Leader);
  assert.equal(net.get(1).raft.term, 1);
  assert.equal(net.get(3).raft.lead, 1);
});

test('without pre-vote the same node raises its term (the problem pre-vote solves)', () => {
  const net = new Net([1, 2, 3], { preVote: false, checkQuorum: false });
  net.elect(1);
  net.isolate(3);
  net.tick(3, 100);
  assert.ok(net.get(3).raft.term > 1);
});

test('check-quorum: an isolated leader steps down; the majority elects a new one', () => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.isolate(1);
  net.tick(1, 25);
  assert.notEqual(net.get(1).raft.role, Role.Leader);
  const l = net.electAmong([2, 3]);
  assert.equal(net.get(l).raft.term, 2);
  net.filter = () => true;
  net.tickAll(3);
  assert.equal(net.get(1).raft.lead, l);
});

test('check-quorum lease: followers that hear a leader ignore a campaign', () => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  // Node 3 hears nothing (so its timer fires) but 1 and 2 keep talking.
  net.filter = (m) => !(m.from === 1 && m.to === 3);
  net.tick(3, 30);
  net.tick(1, 1);
  assert.equal(net.get(1).raft.role, Role.Leader);
  assert.equal(net.get(1).raft.term, 1);
});

test('replication: proposals are applied in order on every node, batched into one append', () => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.sent = [];
  const r = net.get(1).raft;
  for (let i = 0; i < 10; i++) assert.equal(r.propose(enc(`v${i}`)), i + 2);
  net.settle();
  const want = Array.from({ length: 10 }, (_, i) => `v${i}`);
  for (const id of [1, 2, 3]) assert.deepEqual(net.data(id), want);
  const apps = net.sent.filter((m) => m.type === MsgType.App && (m.entries?.length ?? 0) > 0);
  assert.equal(apps.length, 2, 'one append per follower for the whole burst');
  assert.equal(apps[0].entries!.length, 10);
  assert.equal(net.get(2).raft.propose(enc('x')), 0, 'followers refuse proposals');
});

test('pipelining: appends go out before earlier ones are acknowledged, up to the inflight window', () => {
  const net = new Net([1, 2, 3], { maxMsgEntries: 1, maxInflight: 4 });
  net.elect(1);
  net.sent = [];
  const r = net.get(1).raft;
  for (let i = 0; i < 10; i++) r.propose(enc(`p${i}`));
  net.drain(1);
  const toTwo = net.queue.filter((m) => m.type === MsgType.App && m.to === 2);
  assert.equal(toTwo.length, 4, 'four single-entry appends in flight to node 2');
  assert.deepEqual(
    toTwo.map((m) => m.index),
    [1, 2, 3, 4],
  );
  net.settle();
  for (const id of [1, 2, 3]) assert.equal(net.data(id).length, 10);
});

test('a lagging follower is caught up by probing back to the match point', () => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.isolate(3);
  for (let i = 0; i < 20; i++) net.get(1).raft.propose(enc(`a${i}`));
  net.settle();
  assert.equal(net.data(3).length, 0);
  net.filter = () => true;
  net.tick(1, 2);
  assert.equal(net.data(3).length, 20);
});

test('commit rule: entries of an earlier term do not commit by counting replicas', () => {
  // Nodes 1 and 2 hold entry 2 of term 1; node 3 does not; nothing is committed beyond 1.
  const e = (index: number, term: number): Entry => ({ index, term, type: EntryType.Normal, data: enc(`e${index}`) });
  const net = new Net([1, 2, 3], { preVote: false });
  for (const [id, log] of [
    [1, [e(1, 1), e(2, 1)]],
    [2, [e(1, 1), e(2, 1)]],
    [3, [e(1, 1)]],
  ] as const) {
    const n = net.get(id);
    n.disk.entries = [...log];
    n.disk.hardState = { term: 2, vote: 0, commit: 1 };
    net.restart(id);
  }
  net.filter = () => false; // hand-deliver from here on
  const r1 = net.get(1).raft;
  for (let i = 0; i < 20 && r1.role !== Role.Candidate; i++) {
    r1.tick();
    net.drain(1);
  }
  // Grant the votes by hand.
  for (const from of [2, 3]) {
    const m = message(MsgType.VoteResp, 1, from, r1.term);
    r1.step(m);
  }
  assert.equal(r1.role, Role.Leader);
  net.drain(1);
  assert.equal(r1.log.lastIndex(), 3, 'the new leader appended its no-op');
  // Node 2 acknowledges entry 2 only: a majority holds it, but it is from term 1.
  const ack = message(MsgType.AppResp, 1, 2, r1.term);
  ack.index = 2;
  r1.step(ack);
  assert.equal(r1.log.committed, 1, 'an old-term entry never commits by counting');
  ack.index = 3;
  r1.step(ack);
  assert.equal(r1.log.committed, 3, 'committing the no-op commits everything before it');
});

test('persistent state: a restarted node remembers its vote and term', () => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  const before = net.get(2).disk.hardState;
  const r2 = net.restart(2).raft;
  assert.equal(r2.term, before.term);
  assert.equal(r2.vote, 1);
  // A different candidate in the same term is refused.
  const v = message(MsgType.Vote, 2, 3, before.term);
  v.index = 100;
  v.logTerm = 100;
  r2.step(v);
  net.drain(2);
  const resp = net.queue.find((m) => m.type === MsgType.VoteResp && m.from === 2 && m.to === 3);
  assert.ok(resp?.reject, 'one vote per term');
});

test('restart replays the log and re-applies committed entries', () => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  for (let i = 0; i < 5; i++) net.get(1).raft.propose(enc(`r${i}`));
  net.settle();
  net.restart(2);
  net.drain(2);
  assert.deepEqual(net.data(2), ['r0', 'r1', 'r2', 'r3', 'r4']);
});

test('snapshots: compaction, then InstallSnapshot to a follower that fell behind the log', () => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.isolate(3);
  const r1 = net.get(1).raft;
  for (let i = 0; i < 30; i++) r1.propose(enc(`s${i}`));
  net.settle();
  const snap = r1.compact(enc('state-at-31'), 0);
  assert.equal(snap.index, 31);
  assert.equal(r1.log.snapIndex, 31);
  net.get(1).disk.snapshot = snap;
  r1.propose(enc('after'));
  net.filter = () => true;
  net.sent = [];
  net.tick(1, 3);
  assert.ok(net.sent.some((m) => m.type === MsgType.Snap && m.to === 3));
  const n3 = net.get(3);
  assert.equal(n3.disk.snapshot?.index, 31);
  assert.equal(dec(n3.disk.snapshot!.data), 'state-at-31');
  assert.deepEqual(net.data(3), ['after'], 'only entries after the snapshot are applied');
  assert.equal(n3.raft.log.applied, 32);
  // Restarting from the snapshot keeps the same position.
  const r3 = net.restart(3).raft;
  assert.equal(r3.log.snapIndex, 31);
  assert.equal(r3.log.lastIndex(), 32);
});

test('membership: add a voter one at a time; one pending change at a time; remove one', () => {
  const net = new Net([1, 2, 3, 4], {}, [1, 2, 3]);
  net.elect(1);
  const r1 = net.get(1).raft;
  r1.propose(enc('before'));
  net.settle();
  assert.ok(r1.proposeConfChange([1, 2, 3, 4]) > 0);
  assert.equal(r1.proposeConfChange([1, 2, 3]), 0, 'a second change waits for the first');
  net.settle();
  for (const id of [1, 2, 3, 4]) assert.deepEqual([...net.get(id).raft.voters].sort(), [1, 2, 3, 4]);
  assert.deepEqual(net.data(4), ['before'], 'the new voter caught up');
  // With four voters the quorum is three: two nodes down stop commits.
  net.filter = (m) => m.to !== 3 && m.to !== 4 && m.from !== 3 && m.from !== 4;
  const idx = r1.propose(enc('needs three'));
  net.settle();
  assert.ok(r1.log.committed < idx);
  net.filter = () => true;
  net.tick(1, 2);
  assert.ok(r1.log.committed >= idx);
  // Remove node 4; then it no longer counts.
  assert.ok(r1.proposeConfChange([1, 2, 3]) > 0);
  net.settle();
  assert.deepEqual([...r1.voters].sort(), [1, 2, 3]);
  net.filter = (m) => m.to !== 3 && m.to !== 4 && m.from !== 3 && m.from !== 4;
  const idx2 = r1.propose(enc('needs two'));
  net.settle();
  assert.ok(r1.log.committed >= idx2);
});

test('membership: a leader that removes itself steps down', () => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.get(1).raft.proposeConfChange([2, 3]);
  net.settle();
  assert.notEqual(net.get(1).raft.role, Role.Leader);
  const l = net.electAmong([2, 3]);
  const idx = net.get(l).raft.propose(enc('x'));
  net.settle();
  assert.ok(net.get(5 - l).raft.log.committed >= idx);
});

test('ReadIndex: the leader answers after a heartbeat round confirms it still leads', () => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  const r1 = net.get(1).raft;
  r1.propose(enc('w'));
  net.settle();
  net.filter = () => false;
  assert.ok(r1.readIndex(7));
  net.drain(1);
  assert.equal(net.get(1).reads.length, 0, 'no answer before a quorum acknowledges');
  const hb = net.queue.filter((m) => m.type === MsgType.Heartbeat);
  assert.equal(hb.length, 2);
  net.queue = [];
  net.get(2).raft.step(hb.find((m) => m.to === 2)!);
  net.drain(2);
  const resp = net.queue.find((m) => m.type === MsgType.HeartbeatResp)!;
  net.queue = [];
  r1.step(resp);
  net.drain(1);
  assert.deepEqual(net.get(1).reads, [{ index: 2, ctx: 7 }]);
});

test('ReadIndex: followers forward to the leader; an isolated leader never answers', () => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  assert.ok(net.get(3).raft.readIndex(9));
  net.settle();
  assert.deepEqual(net.get(3).reads, [{ index: 1, ctx: 9 }]);
  net.isolate(1);
  net.get(1).raft.readIndex(10);
  net.tick(1, 5);
  assert.equal(net.get(1).reads.length, 0);
});

test('ReadIndex: a new leader waits until an entry of its own term commits', () => {
  const net = new Net([1, 2, 3], { preVote: false, checkQuorum: false });
  net.elect(1);
  net.filter = () => false;
  const r2 = net.get(2).raft;
  for (let i = 0; i < 30 && r2.role !== Role.Candidate; i++) {
    r2.tick();
    net.drain(2);
  }
  assert.equal(r2.role, Role.Candidate);
  r2.step(message(MsgType.VoteResp, 2, 3, r2.term));
  assert.equal(r2.role, Role.Leader);
  r2.readIndex(1);
  net.drain(2);
  assert.equal(net.get(2).reads.length, 0);
  // Once its no-op commits (node 3 acknowledges it) the read proceeds with a heartbeat round.
  const ack = message(MsgType.AppResp, 2, 3, r2.term);
  ack.index = r2.log.lastIndex();
  r2.step(ack);
  assert.equal(r2.log.committed, r2.log.lastIndex());
  const hb = message(MsgType.HeartbeatResp, 2, 3, r2.term);
  hb.ctx = 1;
  r2.step(hb);
  net.drain(2);
  assert.deepEqual(net.get(2).reads, [{ index: r2.log.committed, ctx: 1 }]);
});

test('leadership transfer: TimeoutNow makes the target win the next term at once', () => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  const r1 = net.get(1).raft;
  assert.ok(r1.transferLeadership(2));
  assert.equal(r1.propose(enc('x')), 0, 'proposals pause during a transfer');
  net.settle();
  assert.equal(net.get(2).raft.role, Role.Leader);
  assert.equal(net.get(2).raft.term, 2);
  assert.equal(r1.lead, 2);
});

test('leadership transfer to a lagging follower catches it up first', () => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  net.isolate(3);
  for (let i = 0; i < 5; i++) net.get(1).raft.propose(enc(`t${i}`));
  net.settle();
  net.filter = () => true;
  net.get(1).raft.transferLeadership(3);
  net.settle();
  assert.equal(net.get(3).raft.role, Role.Leader);
  assert.equal(net.data(3).length, 5);
});

test('single-node cluster commits only what is durable', () => {
  const net = new Net([1]);
  net.elect(1);
  const r = net.get(1).raft;
  r.propose(enc('solo'));
  const rd = r.ready();
  assert.equal(rd.entries.length, 1);
  assert.equal(rd.committedEntries.length, 0, 'not applied in the same Ready that persists it');
  r.advance();
  net.drain(1);
  assert.deepEqual(net.data(1), ['solo']);
});

/** Delivers queued messages and handles every node's Readies except `held`'s, until quiet. */
function exchange(net: Net, held: number): void {
  for (let i = 0; i < 50; i++) {
    for (const id of net.nodes.keys()) if (id !== held) net.drain(id);
    if (net.queue.length === 0) return;
    const q = net.queue;
    net.queue = [];
    for (const m of q) if (net.nodes.has(m.to)) net.get(m.to).raft.step(m);
  }
  throw new Error('no quiet');
}

const appsOf = (ms: Message[]) =>
  ms.filter((m) => m.type === MsgType.App).map((m) => [m.to, (m.entries ?? []).map((e) => dec(e.data))]);

test('early messages: while its Ready is written a leader replicates new entries at once, and applies them only once written', () => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  const r = net.get(1).raft;
  r.propose(enc('a'));
  const rd = r.ready();
  assert.deepEqual(appsOf(rd.messages), [
    [2, ['a']],
    [3, ['a']],
  ]);
  net.queue.push(...rd.messages);
  r.propose(enc('b'));
  const early = r.earlyMessages();
  assert.deepEqual(appsOf(early), [
    [2, ['b']],
    [3, ['b']],
  ]);
  net.queue.push(...early);
  exchange(net, 1);
  const b = r.log.lastIndex();
  assert.equal(r.log.committed, b, 'both followers hold b: committed without the leader');
  net.handle(1, { ...rd, messages: [] });
  const next = r.ready();
  assert.deepEqual(
    next.entries.map((e) => dec(e.data)),
    ['b'],
    'the next Ready writes b',
  );
  assert.deepEqual(
    next.committedEntries.map((e) => dec(e.data)),
    ['a'],
    'b is not applied before the leader has written it',
  );
  net.handle(1, next);
  assert.deepEqual(r.earlyMessages(), [], 'nothing early without a Ready out');
  net.settle();
  for (const id of [1, 2, 3]) assert.deepEqual(net.data(id), ['a', 'b']);
});

test('early messages: none while the Ready out writes a new term or vote', () => {
  const net = new Net([1, 2, 3]);
  const r = net.get(1).raft;
  for (let i = 0; i < 40 && r.role === Role.Follower; i++) r.tick();
  assert.equal(r.role, Role.PreCandidate);
  net.drain(1);
  exchange(net, 1);
  assert.equal(r.role, Role.Candidate);
  const rd = r.ready();
  assert.ok(rd.mustSync && rd.hardState?.vote === 1, 'the candidate writes its vote');
  // Written, and the votes sent; advance() not called yet when the votes come back.
  net.queue.push(...rd.messages, ...rd.messagesAfterSync);
  exchange(net, 1);
  assert.equal(r.role, Role.Leader);
  r.propose(enc('x'));
  assert.deepEqual(r.earlyMessages(), []);
  net.handle(1, { ...rd, messages: [], messagesAfterSync: [] });
  // A heartbeat carries the commit index to the follower whose vote came last.
  net.tick(1, 2);
  for (const id of [1, 2, 3]) assert.deepEqual(net.data(id), ['x']);
});

test('flow control: proposals are refused while too many entries await commit', () => {
  const net = new Net([1, 2, 3], { maxUncommittedEntries: 3 });
  net.elect(1);
  net.isolate(1);
  const r = net.get(1).raft;
  assert.ok(r.propose(enc('a')) > 0);
  assert.ok(r.propose(enc('b')) > 0);
  assert.ok(r.propose(enc('c')) > 0);
  assert.equal(r.propose(enc('d')), 0);
});

test('membership: a configuration is in force once appended, and reverts if the entry is cut', () => {
  const net = new Net([1, 2, 3, 4], {}, [1, 2, 3]);
  net.elect(1);
  net.filter = () => false;
  const r1 = net.get(1).raft;
  const idx = r1.proposeConfChange([1, 2, 3, 4]);
  assert.ok(idx > 0);
  assert.deepEqual([...r1.voters].sort(), [1, 2, 3, 4], 'the leader uses the new set before it commits');
  net.drain(1);
  const app = net.queue.find((m) => m.type === MsgType.App && m.to === 2 && m.entries?.some((e) => e.index === idx));
  assert.ok(app);
  net.queue = [];
  const r2 = net.get(2).raft;
  r2.step(app);
  assert.deepEqual([...r2.voters].sort(), [1, 2, 3, 4], 'a follower uses it as soon as the entry is in its log');
  assert.ok(r2.log.committed < idx);
  // A leader of a later term overwrites the uncommitted configuration entry.
  const cut = message(MsgType.App, 2, 3, r1.term + 1);
  cut.index = idx - 1;
  cut.logTerm = r2.log.term(idx - 1);
  cut.entries = [{ index: idx, term: r1.term + 1, type: EntryType.Normal, data: enc('other') }];
  r2.step(cut);
  assert.equal(r2.log.term(idx), r1.term + 1);
  assert.deepEqual([...r2.voters].sort(), [1, 2, 3], 'the previous configuration is back');
});

test('membership: a snapshot records the configuration at its index, not a later uncommitted one', () => {
  const net = new Net([1, 2, 3, 4], {}, [1, 2, 3]);
  net.elect(1);
  const r1 = net.get(1).raft;
  r1.propose(enc('a'));
  net.settle();
  net.filter = () => false;
  r1.proposeConfChange([1, 2, 3, 4]);
  net.drain(1);
  const s = r1.compact(enc('snap'), 0);
  assert.ok(s.index < r1.log.lastIndex());
  assert.deepEqual([...s.voters].sort(), [1, 2, 3]);
  assert.deepEqual([...r1.voters].sort(), [1, 2, 3, 4]);
  // Restarting from the snapshot and the log keeps the appended configuration.
  net.get(1).disk.snapshot = s;
  const again = net.restart(1).raft;
  assert.deepEqual([...again.voters].sort(), [1, 2, 3, 4]);
});

test('a follower whose disk lost the synced tail of its log is caught up by the same leader, which reports it', () => {
  const warnings: string[] = [];
  const net = new Net([1, 2, 3], { warn: (m) => warnings.push(m) });
  net.elect(1);
  const r1 = net.get(1).raft;
  for (let i = 0; i < 10; i++) r1.propose(enc(`t${i}`));
  net.settle();
  net.tick(1, 2);
  const term = r1.term;
  const d3 = net.get(3).disk;
  const acked = d3.entries[d3.entries.length - 1].index;
  assert.equal(r1.progress(3)?.match, acked);
  // The disk acknowledged fsyncs it had not done: after a crash the last 4 entries are gone.
  d3.entries = d3.entries.slice(0, -4);
  const kept = acked - 4;
  net.restart(3);
  r1.propose(enc('after'));
  net.settle();
  net.tick(1, 2);
  for (const id of [1, 2, 3]) assert.equal(net.get(id).raft.term, term, `node ${id} stayed in term ${term}`);
  assert.equal(r1.role, Role.Leader);
  assert.equal(net.get(3).raft.log.lastIndex(), r1.log.lastIndex());
  assert.deepEqual(net.data(3), net.data(1), 'the follower re-applied everything, the lost entries included');
  assert.ok(
    warnings.some((w) =>
      w.startsWith(
        `raft node 1 (leader, term ${term}): follower 3 had acknowledged entries up to ${acked} but rejects an append`,
      ),
    ) && warnings.some((w) => w.includes(`entries ${kept + 1}..${acked} were lost from its storage`)),
    warnings.join('\n'),
  );
  assert.ok(
    warnings.some((w) => w.startsWith(`raft node 3: the recovered log ends at index ${kept} but the hard state`)),
    warnings.join('\n'),
  );
});

test('a follower whose log reverted to older entries is neither committed by a heartbeat nor left behind', () => {
  // Node 3 holds a stale tail from term 1; the term-2 leader overwrites it and node 3 acknowledges.
  // Then its disk loses that overwrite (the stale entries come back): the leader still believes
  // match = 2. A heartbeat must not make node 3 commit its own, different, entry 2.
  const e = (index: number, term: number): Entry => ({ index, term, type: EntryType.Normal, data: enc(`e${index}`) });
  const warnings: string[] = [];
  const net = new Net([1, 2, 3], { preVote: false, warn: (m) => warnings.push(m) });
  for (const [id, log] of [
    [1, [e(1, 1)]],
    [2, [e(1, 1)]],
    [3, [e(1, 1), e(2, 1), e(3, 1)]],
  ] as const) {
    const n = net.get(id);
    n.disk.entries = [...log];
    n.disk.hardState = { term: 1, vote: 0, commit: 1 };
    net.restart(id);
  }
  net.elect(1);
  const r1 = net.get(1).raft;
  assert.equal(r1.term, 2);
  assert.equal(r1.progress(3)?.match, 2, 'node 3 took the no-op at index 2');
  assert.equal(net.get(3).raft.log.term(2), 2);
  const d3 = net.get(3).disk;
  d3.entries = [e(1, 1), e(2, 1), e(3, 1)];
  d3.hardState = { ...d3.hardState, commit: 1 };
  const r3 = net.restart(3).raft;
  // Heartbeats only: they carry commit 2 and its term, 2.
  net.filter = (m) => m.type === MsgType.Heartbeat || m.type === MsgType.HeartbeatResp;
  net.tick(1, 2);
  assert.equal(r3.log.committed, 1, 'entry 2 of term 1 is not the committed entry 2');
  net.filter = () => true;
  r1.propose(enc('x'));
  net.settle();
  net.tick(1, 2);
  assert.equal(r3.term, 2);
  assert.equal(r3.log.term(2), 2);
  assert.equal(r3.log.committed, r1.log.committed);
  assert.ok(
    net.get(3).applied.every((a) => r1.log.term(a.index) === a.term),
    'node 3 applied only the leader entries',
  );
  assert.ok(
    warnings.some(
      (w) => w.includes('follower 3 had acknowledged entries up to 2') && w.includes('entries 2..2 were lost'),
    ),
    warnings.join('\n'),
  );
});

// ---- Ready: what must be synced, and which messages may leave before the write -------------------

const types = (ms: Message[]) => ms.map((m) => m.type).sort((a, b) => a - b);

test('Ready: a leader sends its appends before its own write is durable; a follower acknowledges only after', () => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  const leader = net.get(1).raft;
  leader.propose(enc('x'));
  const rd = leader.ready();
  assert.equal(rd.mustSync, true, 'new entries must be synced');
  assert.deepEqual(types(rd.messages), [MsgType.App, MsgType.App], 'appends leave at once');
  assert.deepEqual(rd.messagesAfterSync, []);
  leader.advance();
  const follower = net.get(2).raft;
  for (const m of rd.messages) if (m.to === 2) follower.step(m);
  const frd = follower.ready();
  assert.equal(frd.mustSync, true);
  assert.deepEqual(frd.messages, [], 'nothing leaves before the entries are durable');
  assert.deepEqual(types(frd.messagesAfterSync), [MsgType.AppResp]);
  follower.advance();
});

test('Ready: votes and campaigns wait for the new term and vote to be synced', () => {
  const net = new Net([1, 2, 3], { preVote: false });
  const c = net.get(1).raft;
  for (let i = 0; i < 20 && c.role !== Role.Candidate; i++) c.tick();
  assert.equal(c.role, Role.Candidate);
  const rd = c.ready();
  assert.equal(rd.mustSync, true, 'a new term and vote must be synced');
  assert.deepEqual(rd.messages, []);
  assert.deepEqual(types(rd.messagesAfterSync), [MsgType.Vote, MsgType.Vote]);
  c.advance();
  const voter = net.get(2).raft;
  voter.step(rd.messagesAfterSync.find((m) => m.to === 2)!);
  const vrd = voter.ready();
  assert.equal(vrd.mustSync, true);
  assert.deepEqual(vrd.messages, []);
  assert.deepEqual(types(vrd.messagesAfterSync), [MsgType.VoteResp]);
  assert.equal(vrd.messagesAfterSync[0].reject, false);
  voter.advance();
});

test('Ready: a change of the commit index alone needs no sync and holds nothing back', () => {
  const net = new Net([1, 2, 3]);
  net.elect(1);
  const leader = net.get(1).raft;
  const follower = net.get(2).raft;
  const index = leader.propose(enc('y'));
  const lrd = leader.ready();
  leader.advance();
  for (const m of lrd.messages) if (m.to === 2) follower.step(m);
  follower.ready(); // stores the entry; it does not know yet that it is committed
  follower.advance();
  assert.ok(follower.log.committed < index);
  const hb = message(MsgType.Heartbeat, 2, 1, leader.term);
  hb.commit = index;
  hb.logTerm = leader.term;
  hb.ctx = 99;
  follower.step(hb);
  const rd = follower.ready();
  assert.equal(rd.hardState?.commit, index);
  assert.equal(rd.mustSync, false);
  assert.deepEqual(types(rd.messages), [MsgType.HeartbeatResp]);
  assert.deepEqual(rd.messagesAfterSync, []);
  follower.advance();
});
