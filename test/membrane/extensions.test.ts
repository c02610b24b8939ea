// Membrane.bind attaches the registered extensions in order; close() drains them all first, then
// closes them last-in-first-out once the connections are gone. A bare Membrane (without the package
// entry's composition root) has no tap, mesh or signal handling of its own.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { addMembraneExtension, Membrane } from '../../src/membrane/index.js';
import { t } from '../../src/protein/index.js';
import { rpc, service } from '../../src/service/index.js';
import { resolvers } from '../../src/synapse/index.js';

const Svc = service('extended', { ping: rpc(t.u32, t.u32) });

test('a bare Synapse and Membrane know only the local socket', async (tc) => {
  assert.deepEqual(
    resolvers().map((r) => r.name),
    ['local socket'],
  );
  const dir = mkdtempSync(join(tmpdir(), 'cell-ext-'));
  const saved = process.env.CELL_HOME;
  process.env.CELL_HOME = dir;
  tc.after(() => {
    if (saved === undefined) delete process.env.CELL_HOME;
    else process.env.CELL_HOME = saved;
    rmSync(dir, { recursive: true, force: true });
  });
  const m = await Membrane.bind(Svc, { ping: (n) => n + 1 }, { socketPath: join(dir, 'extended.sock') });
  assert.equal(m.attachment('tap'), undefined);
  assert.equal(
    existsSync(join(dir, 'cells', 'extended', 'tap.sock')),
    false,
    'no tap socket without the tap extension',
  );
  assert.equal(process.listenerCount('SIGTERM'), 0, 'no signal handler without the signal-drain extension');
  await m.close();
});

test('extensions attach in order, drain first, close last-in-first-out; a failing attach fails bind', async (tc) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-ext-'));
  tc.after(() => rmSync(dir, { recursive: true, force: true }));
  const log: string[] = [];
  for (const name of ['first', 'second', 'third']) {
    addMembraneExtension({
      name,
      attach(membrane, options) {
        if (options.name === 'refused' && name === 'third') throw new Error('third refuses');
        log.push(`attach ${name} ${membrane.socketPath === null ? 'unbound' : 'listening'}`);
        if (name === 'second') return null;
        return {
          drain: async () => void log.push(`drain ${name}`),
          close: () => void log.push(`close ${name}`),
        };
      },
    });
  }
  const m = await Membrane.bind(Svc, { ping: (n) => n + 1 }, { socketPath: join(dir, 'a.sock') });
  assert.deepEqual(log, ['attach first listening', 'attach second listening', 'attach third listening']);
  assert.ok(m.attachment('first') !== undefined);
  assert.equal(m.attachment('second'), undefined, 'an extension that is not configured attaches nothing');
  log.length = 0;
  await m.close();
  assert.deepEqual(log, ['drain first', 'drain third', 'close third', 'close first']);

  log.length = 0;
  await assert.rejects(
    Membrane.bind(Svc, { ping: (n) => n + 1 }, { name: 'refused', socketPath: join(dir, 'b.sock') }),
    /third refuses/,
  );
  assert.deepEqual(log, ['attach first listening', 'attach second listening', 'drain first', 'close first']);
  assert.equal(existsSync(join(dir, 'b.sock')), false, 'the failed bind released its socket');
});
