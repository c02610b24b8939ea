import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import { test } from 'node:test';
import { loadNative } from '../../../src/shm/native.js';
import { Synapse } from '../../../src/synapse/index.js';
import { ShmTest } from './fixtures/contract.js';
import { startCell } from './fixtures/start-cell.js';

if (loadNative().addon === undefined) throw new Error(`needs the native addon: ${loadNative().reason}`);

/** Eventfds this process holds (each connection's doorbells are eventfds). */
function eventfds(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[eventfd]') n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const grow = () => Synapse.grow(ShmTest, { waitMs: 3000 });
type Client = Awaited<ReturnType<typeof grow>>;

async function roundTrips(clients: Array<{ echo(b: Uint8Array): Promise<Uint8Array> }>): Promise<void> {
  const replies = await Promise.all(clients.map((c, i) => c.echo(new Uint8Array([i, 1, 2]))));
  for (const [i, r] of replies.entries()) assert.deepEqual([...r], [i, 1, 2]);
}

test('connections from one process to one cell share one pair of doorbells; each still wakes after sleeping', async (t) => {
  await startCell(t);
  const base = eventfds();
  const clients: Client[] = [];
  for (let i = 0; i < 8; i++) clients.push(await grow());
  t.after(() => Promise.all(clients.map((c) => c.$close())));
  for (const c of clients) assert.equal(c.$synapse.transport?.transport, 'shm');
  assert.equal(eventfds() - base, 2, 'two eventfds for eight connections');
  for (let round = 0; round < 5; round++) {
    await roundTrips(clients);
    // Long enough for both sides' pollers to give up spinning: the next calls ring the doorbells.
    await new Promise((r) => setTimeout(r, 30));
    for (const c of clients) assert.deepEqual([...(await c.echo(new Uint8Array([round])))], [round]);
    await new Promise((r) => setTimeout(r, 30));
  }
  for (const c of clients.splice(0, 5)) await c.$close();
  await new Promise((r) => setTimeout(r, 30));
  await roundTrips(clients);
  assert.equal(eventfds() - base, 2, 'the pair stays while a connection uses it');
  for (const c of clients.splice(0)) await c.$close();
  await until(() => eventfds() === base, 'the last connection to close the pair');
});

test('a caller that does not ask for shared doorbells (CELL_SHM_SHARED_BELLS=0) gets two per connection', async (t) => {
  await startCell(t);
  const base = eventfds();
  process.env.CELL_SHM_SHARED_BELLS = '0';
  t.after(() => {
    delete process.env.CELL_SHM_SHARED_BELLS;
  });
  const clients: Client[] = [];
  for (let i = 0; i < 3; i++) clients.push(await grow());
  t.after(() => Promise.all(clients.map((c) => c.$close())));
  assert.equal(eventfds() - base, 6);
  await new Promise((r) => setTimeout(r, 30));
  await roundTrips(clients);
});
