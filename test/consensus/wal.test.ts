import assert from 'node:assert/strict';
import {
  appendFileSync,
  constants,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Entry, HardState, Snapshot } from '../../src/consensus/raft/types.js';
import { Prng } from '../../src/consensus/sim/index.js';
import type { WalFs } from '../../src/consensus/wal/fs.js';
import { SimDisk } from '../../src/consensus/wal/simdisk.js';
import { Wal } from '../../src/consensus/wal/wal.js';
import { CellError } from '../../src/errors/index.js';

function ent(index: number, term: number, tag = ''): Entry {
  return { index, term, type: 0, data: new TextEncoder().encode(`e${index}t${term}${tag}`) };
}

const same = (a: Entry[], b: Entry[]) =>
  assert.deepEqual(
    a.map((e) => [e.index, e.term, e.type, Buffer.from(e.data).toString()]),
    b.map((e) => [e.index, e.term, e.type, Buffer.from(e.data).toString()]),
  );

test('wal: entries and hard state survive a reopen on the real disk; one fdatasync per batch', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-wal-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { wal } = await Wal.open({ dir });
  const all: Entry[] = [];
  for (let i = 1; i <= 50; i++) all.push(ent(i, 1));
  await wal.append(all.slice(0, 20), { term: 1, vote: 2, commit: 10 });
  await wal.append(all.slice(20), { term: 1, vote: 2, commit: 40 });
  assert.equal(wal.stats.syncs, 2);
  await wal.close();
  const { wal: w2, state } = await Wal.open({ dir });
  same(state.entries, all);
  assert.deepEqual(state.hardState, { term: 1, vote: 2, commit: 40 });
  assert.equal(state.truncatedBytes, 0);
  await w2.close();
});

test('wal: concurrent appends share fdatasyncs (group commit) and each resolves only after its sync', async () => {
  const disk = new SimDisk();
  const { wal } = await Wal.open({ dir: '/w', fs: disk });
  const syncsBefore = disk.syncs;
  // At each acknowledgement, what a power cut would leave (synced data only) must hold the entry.
  const atAck: { i: number; disk: SimDisk }[] = [];
  const ps: Promise<void>[] = [];
  for (let i = 1; i <= 200; i++) {
    ps.push(
      wal.append([ent(i, 1)], null).then(() => {
        if (i % 25 === 0) atAck.push({ i, disk: disk.afterCrash(() => 0, 'clean') });
      }),
    );
  }
  await Promise.all(ps);
  for (const { i, disk: d } of atAck) {
    const { wal: w, state } = await Wal.open({ dir: '/w', fs: d });
    assert.ok(state.entries.length >= i, `entry ${i} acknowledged but not durable`);
    await w.close();
  }
  const syncs = disk.syncs - syncsBefore;
  assert.ok(syncs >= 1 && syncs <= 3, `200 concurrent appends took ${syncs} syncs`);
  await wal.close();
  const { state } = await Wal.open({ dir: '/w', fs: disk });
  assert.equal(state.entries.length, 200);
});

/** The scripted workload: batches (some overwrite earlier entries), segment rolls, a snapshot. */
async function workload(disk: SimDisk, acked: { batch: number }): Promise<void> {
  const { wal } = await Wal.open({ dir: '/w', fs: disk, segmentBytes: 600 });
  for (let b = 0; b < 24; b++) {
    const batch = BATCHES[b];
    if (batch.snapshot) {
      await wal.saveSnapshot(batch.snapshot);
    } else {
      await wal.append(batch.entries, batch.hard);
    }
    acked.batch = b;
  }
  await wal.close();
}

interface Batch {
  entries: Entry[];
  hard: HardState;
  snapshot?: Snapshot;
}

/** Batches and, for each prefix, the expected log and hard state. */
const BATCHES: Batch[] = [];
const MODEL: { entries: Entry[]; hard: HardState; snap: number }[] = [];
{
  let log: Entry[] = [];
  let term = 1;
  let hard: HardState = { term: 0, vote: 0, commit: 0 };
  let snap = 0;
  for (let b = 0; b < 24; b++) {
    if (b === 14) {
      const s: Snapshot = {
        index: 20,
        term: log[19].term,
        voters: [1, 2, 3],
        data: new TextEncoder().encode('state@20'),
      };
      BATCHES.push({ entries: [], hard, snapshot: s });
      snap = 20;
    } else {
      let start = log.length + 1;
      if (b % 5 === 4) {
        // A new leader overwrote the last two entries.
        start = Math.max(snap + 1, log.length - 1);
        term++;
      }
      const entries: Entry[] = [];
      for (let i = 0; i < 3; i++) entries.push(ent(start + i, term, `b${b}`));
      log = [...log.slice(0, start - 1), ...entries];
      hard = { term, vote: 1 + (b % 3), commit: Math.max(snap, log.length - 2) };
      BATCHES.push({ entries, hard });
    }
    MODEL.push({ entries: log.slice(), hard, snap });
  }
}

function checkRecovered(state: Awaited<ReturnType<typeof Wal.open>>['state'], ackedBatch: number, ctx: string): void {
  // The recovered state must be the state after some batch j >= the last acknowledged one.
  const candidates = MODEL.map((m, j) => ({ m, j })).filter(({ j }) => j >= ackedBatch);
  if (ackedBatch < 0) candidates.unshift({ m: { entries: [], hard: { term: 0, vote: 0, commit: 0 }, snap: 0 }, j: -1 });
  const snapIndex = state.snapshot?.index ?? 0;
  const got = state.entries.map((e) => `${e.index}/${e.term}/${Buffer.from(e.data).toString()}`);
  const ok = candidates.some(({ m }) => {
    const want = m.entries
      .filter((e) => e.index > snapIndex)
      .map((e) => `${e.index}/${e.term}/${Buffer.from(e.data).toString()}`);
    const hardOk =
      m.hard.term === state.hardState.term &&
      m.hard.vote === state.hardState.vote &&
      Math.max(m.hard.commit, snapIndex) === state.hardState.commit;
    return hardOk && JSON.stringify(want) === JSON.stringify(got) && snapIndex <= m.snap;
  });
  assert.ok(
    ok,
    `${ctx}: recovered ${got.length} entries (snapshot ${snapIndex}, hard ${JSON.stringify(state.hardState)}) match no state at or after acknowledged batch ${ackedBatch}`,
  );
}

test('wal: crash at every write/fsync point of a scripted workload loses nothing acknowledged', async () => {
  // Count the operations of a crash-free run.
  const probe = new SimDisk();
  await workload(probe, { batch: -1 });
  const total = probe.ops;
  assert.ok(total > 60, `workload has ${total} operations`);
  let torn = 0;
  for (let k = 0; k <= total; k++) {
    const disk = new SimDisk();
    disk.crashAfter = k;
    const acked = { batch: -1 };
    await workload(disk, acked).catch((err: unknown) => {
      assert.ok(err instanceof CellError && err.code === 'E_WAL_IO', String(err));
    });
    for (let seed = 1; seed <= 4; seed++) {
      const prng = new Prng(k * 100 + seed);
      const after = disk.afterCrash(() => prng.next(), seed === 1 ? 'clean' : 'torn');
      const { wal, state } = await Wal.open({ dir: '/w', fs: after, segmentBytes: 600 });
      if (state.truncatedBytes > 0) torn++;
      checkRecovered(state, acked.batch, `crash after op ${k} (${disk.trace[k] ?? 'end'}), seed ${seed}`);
      await wal.close();
      // Recovery is idempotent.
      const again = await Wal.open({ dir: '/w', fs: after, segmentBytes: 600 });
      assert.equal(again.state.truncatedBytes, 0);
      assert.deepEqual(
        again.state.entries.map((e) => e.index),
        state.entries.map((e) => e.index),
      );
      await again.wal.close();
    }
  }
  assert.ok(torn > 0, 'some crash states had a torn tail to truncate');
  console.log(`# ${total} crash points, ${torn} recoveries truncated a torn tail`);
});

test('wal: every new segment and snapshot rename is followed by a directory fsync before the next acknowledgement', async () => {
  const disk = new SimDisk();
  await workload(disk, { batch: -1 });
  const tr = disk.trace;
  for (let i = 0; i < tr.length; i++) {
    if (!/^create \/w\/wal-/.test(tr[i]) && !/^rename /.test(tr[i])) continue;
    const dirSync = tr.findIndex((x, j) => j > i && x.startsWith('fsyncdir'));
    const nextBatchWrite = tr.findIndex((x, j) => j > i + 1 && /^write \/w\/wal-/.test(x) && !x.endsWith(' 16'));
    assert.ok(
      dirSync > i && (nextBatchWrite < 0 || dirSync < nextBatchWrite),
      `op ${i} '${tr[i]}' not followed by a directory fsync in time`,
    );
  }
  assert.ok(
    tr.some((x) => x.startsWith('unlink /w/wal-')),
    'the snapshot compacted old segments',
  );
});

test('wal: a torn last record is truncated on the real disk', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-wal-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { wal } = await Wal.open({ dir });
  await wal.append([ent(1, 1), ent(2, 1)], { term: 1, vote: 1, commit: 1 });
  await wal.close();
  const seg = join(dir, readdirSync(dir).find((n) => n.startsWith('wal-'))!);
  const good = statSync(seg).size;
  // Half a record: a header claiming 40 bytes, and 7 of them.
  appendFileSync(seg, Buffer.from([1, 2, 3, 4, 40, 0, 0, 0, 1, 9, 9, 9, 9, 9, 9, 9]));
  const { wal: w2, state } = await Wal.open({ dir });
  assert.equal(state.truncatedBytes, 16);
  assert.equal(statSync(seg).size, good);
  same(state.entries, [ent(1, 1), ent(2, 1)]);
  await w2.append([ent(3, 1)], null);
  await w2.close();
  const { wal: w3, state: s3 } = await Wal.open({ dir });
  same(s3.entries, [ent(1, 1), ent(2, 1), ent(3, 1)]);
  await w3.close();
});

test('wal: corruption in the middle refuses to start, naming the file and the offset', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-wal-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { wal } = await Wal.open({ dir });
  for (let i = 1; i <= 5; i++) await wal.append([ent(i, 1)], { term: 1, vote: 1, commit: i - 1 });
  await wal.close();
  const name = readdirSync(dir).find((n) => n.startsWith('wal-'))!;
  const seg = join(dir, name);
  const bytes = Buffer.from(await import('node:fs').then((f) => f.readFileSync(seg)));
  bytes[30] ^= 0x55; // inside the first batch
  writeFileSync(seg, bytes);
  await assert.rejects(Wal.open({ dir }), (err: unknown) => {
    assert.ok(err instanceof CellError);
    assert.equal(err.code, 'E_WAL_CORRUPT');
    assert.match(err.message, new RegExp(name));
    assert.match(err.message, /at byte 16/);
    assert.ok(err.fix !== undefined && err.fix !== '');
    return true;
  });
  // Nothing was truncated.
  assert.equal(statSync(seg).size, bytes.length);
});

test('wal: an fdatasync error is fatal — the batch and every later append fail, and the sync is not retried', async () => {
  const disk = new SimDisk();
  const { wal } = await Wal.open({ dir: '/w', fs: disk });
  await wal.append([ent(1, 1)], null);
  disk.failSyncAt = disk.syncs + 1;
  const a = wal.append([ent(2, 1)], null);
  const b = wal.append([ent(3, 1)], null);
  await assert.rejects(a, (e: unknown) => e instanceof CellError && e.code === 'E_WAL_IO' && /fsync/.test(e.message));
  await assert.rejects(b, (e: unknown) => e instanceof CellError && e.code === 'E_WAL_IO');
  const syncs = disk.syncs;
  await assert.rejects(wal.append([ent(4, 1)], null), (e: unknown) => e instanceof CellError && e.code === 'E_WAL_IO');
  assert.equal(disk.syncs, syncs, 'no fsync retried after the failure');
  assert.ok(wal.failed);
  await wal.close();
});

test('wal: any sequence of batches round-trips through recovery (property)', async () => {
  const fc = await import('fast-check');
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.record({
          overwrite: fc.nat(3),
          datas: fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 6 }),
          vote: fc.nat(5),
        }),
        { minLength: 1, maxLength: 12 },
      ),
      fc.integer({ min: 200, max: 5000 }),
      async (batches, segmentBytes) => {
        const disk = new SimDisk();
        const { wal } = await Wal.open({ dir: '/p', fs: disk, segmentBytes });
        let log: Entry[] = [];
        let hard: HardState = { term: 0, vote: 0, commit: 0 };
        let term = 1;
        for (const b of batches) {
          const start = Math.max(1, log.length + 1 - b.overwrite);
          if (b.overwrite > 0) term++;
          const entries = b.datas.map((data, i) => ({ index: start + i, term, type: (i % 2) as 0 | 1, data }));
          log = [...log.slice(0, start - 1), ...entries];
          hard = { term, vote: b.vote, commit: Math.max(0, start - 1) };
          await wal.append(entries, hard);
        }
        await wal.close();
        const { wal: w2, state } = await Wal.open({ dir: '/p', fs: disk, segmentBytes });
        await w2.close();
        same(state.entries, log);
        assert.deepEqual(state.hardState, hard);
      },
    ),
    { numRuns: 150 },
  );
});

test('wal: on the real disk a batch is one durable write (O_DSYNC), and nothing else syncs it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-wal-dsync-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { wal } = await Wal.open({ dir: join(dir, 'w') });
  // The open segment's descriptor, from /proc: its flags must carry O_DSYNC.
  const seg = join(dir, 'w', wal.segmentNames()[0]);
  const fd = readdirSync('/proc/self/fd').find((n) => {
    try {
      return readlinkSync(`/proc/self/fd/${n}`) === seg;
    } catch {
      return false;
    }
  });
  assert.ok(fd, 'the segment is open');
  const flags = Number.parseInt(/flags:\s*([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1], 8);
  assert.equal(flags & constants.O_DSYNC, constants.O_DSYNC);
  await wal.append([ent(1, 1), ent(2, 1)], { term: 1, vote: 1, commit: 0 });
  assert.equal(wal.stats.syncs, 1);
  await wal.close();
  const again = await Wal.open({ dir: join(dir, 'w') });
  same(again.state.entries, [ent(1, 1), ent(2, 1)]);
  await again.wal.close();
});

test('wal: a file that offers writeDurable gets each batch through it alone', async () => {
  const disk = new SimDisk();
  const calls: string[] = [];
  const fs: WalFs = {
    mkdirp: (d) => disk.mkdirp(d),
    list: (d) => disk.list(d),
    readFile: (p) => disk.readFile(p),
    truncate: (p, n) => disk.truncate(p, n),
    rename: (a, b) => disk.rename(a, b),
    unlink: (p) => disk.unlink(p),
    fsyncDir: (d) => disk.fsyncDir(d),
    openAppend: async (p, create) => {
      const f = await disk.openAppend(p, create);
      return {
        write: (d) => {
          calls.push('write');
          return f.write(d);
        },
        datasync: () => {
          calls.push('datasync');
          return f.datasync();
        },
        writeDurable: async (d) => {
          calls.push('writeDurable');
          await f.write(d);
          await f.datasync();
        },
        close: () => f.close(),
      };
    },
  };
  const { wal } = await Wal.open({ dir: '/w', fs });
  calls.length = 0;
  await wal.append([ent(1, 1)], { term: 1, vote: 1, commit: 0 });
  await wal.append([ent(2, 1)], null);
  assert.deepEqual(calls, ['writeDurable', 'writeDurable']);
  await wal.close();
  const again = await Wal.open({ dir: '/w', fs: disk });
  same(again.state.entries, [ent(1, 1), ent(2, 1)]);
});
