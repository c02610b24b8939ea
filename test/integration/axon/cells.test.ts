import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createJoinRequest, initMesh, installJoinBundle, signJoinRequest } from '../../../src/axon/identity/index.js';
import type { Proc } from './netns.js';
import { NetnsLab, netnsAvailable } from './netns.js';

// Real cells: Membrane with CELL_LAN=1 on alpha and beta, Synapse / growAcrossMesh on gamma.
const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const NAMES = ['alpha', 'beta', 'gamma'];

interface Status {
  event: string;
  ok: number;
  errors: Record<string, number>;
  lastError: string;
}

interface CallsReply {
  event: string;
  ok: number;
  wrong: number;
  byHost: Record<string, number>;
  errors: Record<string, number>;
  target?: string;
  code?: string;
  message?: string;
}

describe('cells across network namespaces (Membrane over TLS, Synapse remote resolver)', {
  skip: netnsAvailable() ? false : 'needs root and `ip netns`',
}, () => {
  let lab: NetnsLab;
  let dir: string;
  const homes: string[] = [];
  const cells: Proc[] = [];
  const ports: number[] = [];
  let client: Proc;

  const env = (host: number, extra: Record<string, string> = {}) => ({
    CELL_HOME: homes[host] as string,
    CELL_SOCKET_DIR: join(homes[host] as string, 'run'),
    CELL_LAN_ADDRESS: lab.address(host),
    ...extra,
  });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cell-axon-cells-'));
    lab = NetnsLab.create(3);
    for (const n of NAMES) homes.push(join(dir, n));
    await initMesh({ home: homes[0], hostName: 'alpha' });
    for (const i of [1, 2]) {
      const req = await createJoinRequest({ home: homes[i], hostName: NAMES[i] });
      installJoinBundle((await signJoinRequest(req.csrPem, { home: homes[0] })).bundlePem, { home: homes[i] });
    }
    for (const i of [0, 1]) {
      const p = lab.spawn(i, join(FIXTURES, 'cell.js'), [], env(i, { CELL_LAN: '1' }));
      const ready = await p.waitLine<{ event: string; port: number | null }>(
        (m) => m.event === 'ready',
        15_000,
        `cell on ${NAMES[i]}`,
      );
      assert.equal(typeof ready.port, 'number', 'CELL_LAN=1 opened the TLS listener');
      cells.push(p);
      ports.push(ready.port as number);
    }
    client = lab.spawn(2, join(FIXTURES, 'cell-client.js'), [], env(2, { CELL_LAN: '1' }));
    await client.waitLine((m) => m.event === 'ready', 15_000, 'client ready');
  });

  after(async () => {
    await lab?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function ask(msg: Record<string, unknown>, timeoutMs = 20_000): Promise<CallsReply> {
    const from = client.lines.length;
    client.send(msg);
    let i = 0;
    return client.waitLine<CallsReply>(() => i++ >= from, timeoutMs, `${String(msg.op)} reply`);
  }

  test('Synapse.grow finds the cell on another host (no local socket) and calls it typed over TLS', async () => {
    const r = await ask({ op: 'synapse', n: 50 });
    assert.equal(r.event, 'synapse', JSON.stringify(r));
    assert.equal(r.ok, 50);
    assert.equal(r.wrong, 0);
    assert.match(r.target ?? '', /^tls:/);
  });

  test('the fingerprint check holds across hosts: another contract under the same name is refused', async () => {
    const r = await ask({ op: 'wrong', n: 1 });
    assert.equal(r.event, 'error', JSON.stringify(r));
    assert.equal(r.code, 'E_SCHEMA_MISMATCH');
  });

  test('CELL_PEER reaches the cell when discovery is off', async () => {
    const r = await ask({ op: 'synapse', n: 10, lan: '0', peer: `${lab.address(1)}:${ports[1]}` });
    assert.equal(r.ok, 10, JSON.stringify(r));
    assert.deepEqual(r.byHost, { beta: 10 });
    assert.match(r.target ?? '', /CELL_PEER/);
  });

  test('growAcrossMesh spreads typed calls over both instances', async () => {
    const r = await ask({ op: 'mesh', n: 600, concurrency: 16, delayMs: 2, lan: '1', peer: '' });
    assert.equal(r.ok, 600, JSON.stringify(r));
    assert.equal(r.wrong, 0);
    assert.ok((r.byHost.alpha ?? 0) >= 120 && (r.byHost.beta ?? 0) >= 120, JSON.stringify(r.byHost));
  });

  test('a cable pulled mid-load: calls fail with clear errors, then recover when it is plugged back', async () => {
    const from = client.lines.length;
    client.send({ op: 'load', concurrency: 8 });
    let i = 0;
    await client.waitLine<Status>(
      (m) => i++ >= from && m.event === 'status' && m.ok >= 300,
      20_000,
      'calls before the cut',
    );
    lab.cut(2);
    let okAtRestore = 0;
    try {
      const errored = await client.waitLine<Status>(
        (m) => m.event === 'status' && Object.keys(m.errors).length > 0,
        10_000,
        'errors after the cut',
      );
      assert.ok(
        Object.keys(errored.errors).every((c) => ['E_TIMEOUT', 'E_CONNECTION_LOST', 'E_CELL_NOT_FOUND'].includes(c)),
        JSON.stringify(errored.errors),
      );
      assert.match(errored.lastError, /adder/);
      await new Promise((res) => setTimeout(res, 1_500)); // past the pheromone TTL
    } finally {
      lab.restore(2);
      okAtRestore = ([...client.lines].reverse().find((m) => m.event === 'status') as unknown as Status).ok;
    }
    await client.waitLine<Status>(
      (m) => m.event === 'status' && m.ok >= okAtRestore + 300,
      20_000,
      'calls after the restore',
    );
    client.send({ op: 'stop' });
    await client.waitLine((m) => m.event === 'status' && m.final === true, 10_000, 'load stopped');
  });

  test('when beta stops (graceful), it withdraws and every call goes to alpha without errors', async () => {
    await cells[1]!.kill('SIGTERM');
    const r = await ask({ op: 'mesh', n: 300, concurrency: 8 });
    assert.equal(r.ok, 300, JSON.stringify(r));
    assert.deepEqual(r.byHost, { alpha: 300 });
  });
});
