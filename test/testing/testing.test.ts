// cell-runtime/testing: a temporary CELL_HOME that puts the environment back, and a cell served
// in-process with a typed client over its real socket.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CellError, isCellError } from '../../src/errors/index.js';
import { protein, t } from '../../src/protein/index.js';
import { rpc, service } from '../../src/service/index.js';
import { Synapse } from '../../src/synapse/index.js';
import { startTestCell, tempCellHome } from '../../src/testing/index.js';

const Order = protein('Order', { symbol: t.string, amount: t.u64 });
const Shop = service('shop', {
  place: rpc(Order, t.u64),
  refuse: rpc(t.unit, t.unit),
});

test('tempCellHome points CELL_HOME and CELL_SOCKET_DIR at a fresh folder, clears the rest, and restores all', () => {
  const before = { ...process.env };
  process.env.CELL_UMBILICAL = '/nonexistent/mitosis.sock';
  process.env.CELL_PEER = '127.0.0.1:1';
  const home = tempCellHome();
  try {
    assert.equal(process.env.CELL_HOME, home.home);
    assert.equal(process.env.CELL_SOCKET_DIR, join(home.home, 'run'));
    assert.deepEqual(home.env, { CELL_HOME: home.home, CELL_SOCKET_DIR: home.socketDir });
    assert.equal(process.env.CELL_UMBILICAL, undefined);
    assert.equal(process.env.CELL_PEER, undefined);
    assert.ok(existsSync(home.home));
  } finally {
    home.cleanup();
    home.cleanup();
  }
  assert.equal(existsSync(home.home), false);
  assert.equal(process.env.CELL_UMBILICAL, '/nonexistent/mitosis.sock');
  assert.equal(process.env.CELL_PEER, '127.0.0.1:1');
  delete process.env.CELL_UMBILICAL;
  delete process.env.CELL_PEER;
  assert.deepEqual({ ...process.env }, before);
});

test('startTestCell serves the handlers on a real socket and the client calls them with the real types', async () => {
  const cell = await startTestCell(Shop, {
    place: (o) => o.amount * 2n + BigInt(o.symbol.length),
    refuse: () => {
      throw new CellError('E_INVALID_ARGUMENT', 'closed today.', { fix: 'come back tomorrow.' });
    },
  });
  const socket = join(cell.home.socketDir, 'shop', 'shop.sock');
  try {
    assert.ok(existsSync(socket), socket);
    const total: bigint = await cell.client.place({ symbol: 'AB', amount: 20n });
    assert.equal(total, 42n);
    await assert.rejects(cell.client.refuse(undefined), (err) => {
      assert.ok(isCellError(err, 'E_INVALID_ARGUMENT'));
      assert.equal(err.message, 'closed today.');
      assert.equal(err.fix, 'come back tomorrow.');
      return true;
    });
    // Another client in the same home finds the same cell by name, as a caller in a test would.
    const other = await Synapse.grow(Shop, { waitMs: 1000 });
    assert.equal(await other.place({ symbol: '', amount: 1n }), 2n);
    await other.$close();
  } finally {
    await cell.close();
    await cell.close();
  }
  assert.equal(existsSync(cell.home.home), false, 'the temporary home is gone');
  assert.equal(process.env.CELL_HOME === cell.home.home, false);
});

test('startTestCell in a given home leaves the home to its owner; a failed start cleans up its own', async () => {
  const home = tempCellHome();
  try {
    const a = await startTestCell(Shop, { place: (o) => o.amount, refuse: () => undefined }, { home });
    await a.close();
    assert.ok(existsSync(home.home), 'a home the caller gave stays');
    // The same name twice in one home: the second bind is refused and nothing is left behind.
    const b = await startTestCell(Shop, { place: (o) => o.amount, refuse: () => undefined }, { home });
    await assert.rejects(startTestCell(Shop, { place: (o) => o.amount, refuse: () => undefined }, { home }), (err) =>
      isCellError(err, 'E_CELL_ALREADY_RUNNING'),
    );
    assert.equal(await b.client.place({ symbol: 'x', amount: 7n }), 7n);
    await b.close();
  } finally {
    home.cleanup();
  }
});
