import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { lanEnabled } from '../../src/axon/server.js';
import { isCellError } from '../../src/errors/index.js';
import { Membrane } from '../../src/index.js';
import { t } from '../../src/protein/index.js';
import { rpc, service } from '../../src/service/index.js';
import { Synapse } from '../../src/synapse/index.js';

const Echo = service('optin', { echo: rpc(t.u32, t.u32) });

function withEnv(vars: Record<string, string | undefined>, t: { after: (fn: () => void) => void }): void {
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(vars)) {
    saved[k] = process.env[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  t.after(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
}

test('LAN is opt-in: CELL_LAN wins over the option, absent means off', (t) => {
  withEnv({ CELL_LAN: undefined }, t);
  assert.equal(lanEnabled(), false);
  assert.equal(lanEnabled(true), true);
  process.env.CELL_LAN = '0';
  assert.equal(lanEnabled(true), false);
  process.env.CELL_LAN = '1';
  assert.equal(lanEnabled(false), true);
});

test('a cell asked to serve the LAN on a host outside any mesh refuses to start, and frees its name', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'cell-optin-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  withEnv({ CELL_HOME: home, CELL_SOCKET_DIR: join(home, 'run'), CELL_LAN: '1', CELL_LAN_ADDRESS: '127.0.0.1' }, t);
  await assert.rejects(Membrane.bind(Echo, { echo: (n) => n }, { handleSignals: false }), (e) =>
    isCellError(e, 'E_MESH_IDENTITY'),
  );
  // Without the LAN the same cell starts on the same socket: nothing was left behind.
  process.env.CELL_LAN = '0';
  const m = await Membrane.bind(Echo, { echo: (n) => n }, { handleSignals: false });
  await m.close();
});

test('CELL_PEER without a mesh identity is an identity error, not "not found"', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'cell-optin-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  withEnv({ CELL_HOME: home, CELL_SOCKET_DIR: join(home, 'run'), CELL_LAN: undefined, CELL_PEER: '127.0.0.1:9' }, t);
  await assert.rejects(Synapse.grow(Echo, { waitMs: 200 }), (e) => isCellError(e, 'E_MESH_IDENTITY'));
});
