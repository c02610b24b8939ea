import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Proc } from '../axon/netns.js';
import { NetnsLab, netnsAvailable } from '../axon/netns.js';
import { NatsCluster, natsServerAvailable } from './cluster.js';

// Cells across three hosts on a real NATS cluster. Each host is a network namespace (alpha, beta,
// gamma on 10.77.0.0/24, bridged by a switch namespace) running one nats-server node of a three-node
// cluster (full mesh of routes) plus the test's processes. Every host connects to its own node only
// and learns the others from the cluster, authenticates as its own user, and may subscribe only to
// the subjects of the cells it is allowed to serve and to its own reply inbox.
const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
/** dist/ (this file runs as dist/test/integration/nats/cells.test.js). */
const DIST = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const NAMES = ['alpha', 'beta', 'gamma'] as const;

/** Per-host permissions: alpha and beta may serve `adder`; gamma only `gammacell`. */
function authorization(): string {
  const serve = (cells: string[]) =>
    cells
      .flatMap((c) => [`"cell.${c}.>"`, `"$SRV.*.${c}"`, `"$SRV.*.${c}.>"`])
      .concat(['"$SRV.PING"', '"$SRV.INFO"', '"$SRV.STATS"']);
  const user = (name: string, cells: string[]) => `    {
      user: "${name}", password: "pw-${name}-secret"
      permissions: {
        publish: { allow: ["cell.>", "$SRV.>"] }
        subscribe: { allow: [${[...serve(cells), `"_INBOX_${name}.>"`].join(', ')}] }
        allow_responses: true
      }
    }`;
  return `authorization {\n  users: [\n${user('alpha', ['adder'])}\n${user('beta', ['adder'])}\n${user('gamma', ['gammacell'])}\n  ]\n}`;
}

interface Result {
  event: string;
  ok: number;
  errors: Record<string, number>;
  byHost: Record<string, number>;
  failures: Array<{ code: string; message: string; startedAt: number; endedAt: number }>;
  successes: Array<[number, number, string]>;
}

describe('cells across hosts on a three-node NATS cluster', {
  skip: !netnsAvailable()
    ? 'needs root and `ip netns`'
    : !natsServerAvailable()
      ? 'needs nats-server (apt-get install nats-server)'
      : false,
}, () => {
  let lab: NetnsLab;
  let dir: string;
  let cluster: NatsCluster;
  let client: Proc;
  const running: Proc[] = [];

  const env = (host: number, extra: Record<string, string> = {}): Record<string, string> => {
    const name = NAMES[host] as string;
    const home = join(dir, name);
    return {
      CELL_HOME: home,
      CELL_SOCKET_DIR: join(home, 'run'),
      CELL_NATS: cluster.url(host),
      CELL_NATS_USER: name,
      CELL_NATS_PASSWORD_FILE: join(dir, `${name}.pw`),
      CELL_NATS_INBOX_PREFIX: `_INBOX_${name}`,
      CELL_TEST_HOST: name,
      CELL_LAN: '0',
      ...extra,
    };
  };

  async function startCell(host: number, extra: Record<string, string> = {}, name?: string): Promise<Proc> {
    const p = lab.spawn(host, join(FIXTURES, 'cell.js'), name === undefined ? [] : [name], env(host, extra));
    const line = await p.waitLine<{ event: string; code?: string; message?: string }>(
      (m) => m.event === 'ready' || m.event === 'error',
      15_000,
      `cell on ${NAMES[host]}`,
    );
    if (line.event === 'ready') running.push(p);
    else await p.kill();
    (p as Proc & { first: unknown }).first = line;
    return p;
  }

  async function ask<T = Record<string, unknown>>(msg: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    const from = client.lines.length;
    client.send(msg);
    let i = 0;
    return client.waitLine<T>(() => i++ >= from, timeoutMs, `${String(msg.op)} reply`);
  }

  /** Runs load from gamma, calls `during` once `warm` calls succeeded, keeps loading `settleMs`, stops. */
  async function underLoad(
    load: Record<string, unknown>,
    during: () => Promise<number>,
    settleMs: number,
  ): Promise<{ result: Result; at: number }> {
    const from = client.lines.length;
    client.send({ op: 'load', ...load });
    let i = 0;
    await client.waitLine<{ event: string; ok: number }>(
      (m) => i++ >= from && m.event === 'status' && m.ok >= 200,
      20_000,
      'calls before the event',
    );
    const at = await during();
    await new Promise((r) => setTimeout(r, settleMs));
    const mark = client.lines.length;
    client.send({ op: 'stop' });
    let j = 0;
    const result = await client.waitLine<Result>((m) => j++ >= mark && m.event === 'result', 30_000, 'load result');
    return { result, at };
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cell-nats-'));
    for (const n of NAMES) {
      mkdirSync(join(dir, n), { recursive: true });
      writeFileSync(join(dir, `${n}.pw`), `pw-${n}-secret\n`, { mode: 0o600 });
    }
    lab = NetnsLab.create(3);
    cluster = await NatsCluster.start({
      dir,
      addresses: NAMES.map((_, i) => lab.address(i)),
      namespaces: lab.hosts,
      extra: authorization(),
    });
    client = lab.spawn(2, join(FIXTURES, 'client.js'), [], env(2));
    await client.waitLine((m) => m.event === 'ready', 15_000, 'client ready');
  });

  after(async () => {
    await lab?.destroy();
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a call across hosts: gamma finds adder on alpha through $SRV.INFO and calls it typed over NATS', async () => {
    await startCell(0, { CELL_TEST_HOST: 'alpha' });
    const grown = await ask<{ event: string; target: string; transport: string }>({ op: 'grow' });
    assert.equal(grown.event, 'grown', JSON.stringify(grown));
    assert.equal(grown.transport, 'nats');
    assert.match(grown.target, /^nats:adder@/);
    const r = await ask<Result & { wrong: number }>({ op: 'calls', n: 50, concurrency: 4 });
    assert.equal(r.ok, 50, JSON.stringify(r));
    assert.equal(r.wrong, 0);
    assert.deepEqual(r.byHost, { alpha: 50 });
    const many = await ask<{ event: string; ok: number }>({ op: 'many', n: 200 });
    assert.equal(many.ok, 200, JSON.stringify(many));
  });

  test('another contract under the same name fails with E_SCHEMA_MISMATCH before any call', async () => {
    const r = await ask<{ event: string; code: string; message: string }>({ op: 'wrong' });
    assert.equal(r.event, 'error', JSON.stringify(r));
    assert.equal(r.code, 'E_SCHEMA_MISMATCH');
    assert.match(r.message, /0x[0-9a-f]{16}.*0x[0-9a-f]{16}/);
  });

  test('two instances on two hosts share the load (one queue group)', async () => {
    await startCell(1, { CELL_TEST_HOST: 'beta' });
    const r = await ask<Result & { wrong: number }>({ op: 'calls', n: 600, concurrency: 16, delayMs: 2 });
    assert.equal(r.ok, 600, JSON.stringify(r));
    assert.ok((r.byHost.alpha ?? 0) >= 120 && (r.byHost.beta ?? 0) >= 120, JSON.stringify(r.byHost));
  });

  test('`cell status --mesh` lists every host’s cells through $SRV.INFO', async () => {
    const cli = lab.spawn(2, join(DIST, 'src', 'cli', 'main.js'), ['status', '--mesh', '--json'], env(2));
    const listed = await cli.waitLine<{ cells: Array<{ name: string; host: string; fingerprint: string }> }>(
      (m) => Array.isArray((m as { cells?: unknown }).cells),
      15_000,
      'status --mesh',
    );
    const hosts = listed.cells
      .filter((c) => c.name === 'adder')
      .map((c) => c.host)
      .sort();
    assert.equal(hosts.length, 2, JSON.stringify(listed));
    assert.ok(
      listed.cells.every((c) => /^0x[0-9a-f]{16}$/.test(c.fingerprint)),
      JSON.stringify(listed),
    );
  });

  test('kill -9 of one instance under load: its calls in flight fail with E_CONNECTION_LOST, new calls go to the other', async (t) => {
    const beta = running.find((p) => p.lines[0]?.host === 'beta') as Proc;
    const { result, at } = await underLoad(
      { concurrency: 16, delayMs: 20, timeoutMs: 15_000 },
      async () => {
        const killedAt = Date.now();
        beta.child.kill('SIGKILL');
        return killedAt;
      },
      4_000,
    );
    running.splice(running.indexOf(beta), 1);
    // In-flight calls on beta fail with a clear code, well before their 15 s timeout…
    assert.ok(result.failures.length > 0, 'beta held calls when it was killed');
    for (const f of result.failures) {
      assert.equal(f.code, 'E_CONNECTION_LOST', JSON.stringify(f));
      assert.ok(f.startedAt <= at + 200, `a call started after the kill failed: ${JSON.stringify(f)}`);
      assert.ok(f.endedAt - at <= 3_000, `detected after ${f.endedAt - at} ms: ${JSON.stringify(f)}`);
    }
    // …and every call started after the kill succeeds, on alpha, from the first one.
    const after = result.successes.filter(([started]) => started > at + 200);
    assert.ok(after.length > 100, `calls after the kill: ${after.length}`);
    assert.ok(after.every(([, , host]) => host === 'alpha'));
    const firstOk = Math.min(...result.successes.filter(([started]) => started > at).map(([, ended]) => ended));
    assert.ok(firstOk - at <= 1_000, `first success after the kill came ${firstOk - at} ms later`);
    const detect = result.failures.map((f) => f.endedAt - at);
    t.diagnostic(
      `${result.failures.length} calls lost with beta, failed ${Math.min(...detect)}–${Math.max(...detect)} ms after the kill; first success on alpha ${firstOk - at} ms after; ${after.length} calls after`,
    );
  });

  test('kill -9 of a NATS node: the client reconnects to the others and calls continue', async (t) => {
    await startCell(1, { CELL_TEST_HOST: 'beta' });
    const { result, at } = await underLoad(
      { concurrency: 8, delayMs: 5, timeoutMs: 15_000 },
      async () => {
        const killedAt = Date.now();
        await cluster.kill(2); // gamma's node: the client's only configured server
        return killedAt;
      },
      6_000,
    );
    for (const f of result.failures) {
      assert.ok(['E_CONNECTION_LOST', 'E_TIMEOUT'].includes(f.code), JSON.stringify(f));
      assert.ok(f.startedAt <= at + 3_000 && f.endedAt - at <= 6_000, JSON.stringify(f));
    }
    const late = result.successes.filter(([started]) => started > at + 3_000);
    assert.ok(
      late.length > 100,
      `calls completed after the reconnect: ${late.length} (failures ${JSON.stringify(result.errors)})`,
    );
    const resumed = Math.min(...result.successes.filter(([started]) => started > at).map(([, ended]) => ended - at));
    t.diagnostic(
      `node n2 killed: ${result.failures.length} calls failed ${JSON.stringify(result.errors)}, first call started after the kill succeeded ${resumed} ms after it, ${late.length} calls after +3 s`,
    );
    await cluster.restart(2);
    await cluster.waitRoutes();
  });

  test('a host with credentials for its own cells only cannot serve another host’s cell name', async () => {
    const thief = await startCell(2, { CELL_TEST_HOST: 'gamma' }, 'adder');
    const first = (thief as Proc & { first: { event: string; code?: string; message?: string } }).first;
    assert.equal(first.event, 'error', JSON.stringify(first));
    assert.equal(first.code, 'E_PERMISSION_DENIED');
    assert.match(first.message ?? '', /cell\.adder\./);
    const own = await startCell(2, { CELL_TEST_HOST: 'gamma' }, 'gammacell');
    assert.equal((own as Proc & { first: { event: string } }).first.event, 'ready');
    const r = await ask<Result & { wrong: number }>({ op: 'calls', n: 200, concurrency: 8 });
    assert.equal(r.ok, 200, JSON.stringify(r));
    assert.equal(r.byHost.gamma, undefined, 'no call reached gamma');
  });

  test('swap-style drain: a new generation joins, the old one drains its NATS subscriptions, no call fails', async (t) => {
    for (const p of running.filter((q) => q.lines[0]?.host === 'beta')) {
      await p.kill('SIGTERM');
      running.splice(running.indexOf(p), 1);
    }
    const gen1 = running.find((p) => p.lines[0]?.host === 'alpha') as Proc;
    let gen2: Proc | null = null;
    const { result } = await underLoad(
      { concurrency: 16, delayMs: 10, timeoutMs: 15_000 },
      async () => {
        // The next generation on the same host: its own socket directory, as `cell swap` gives it.
        gen2 = await startCell(0, { CELL_TEST_HOST: 'alpha-gen2', CELL_SOCKET_DIR: join(dir, 'alpha', 'run2') });
        const stoppedAt = Date.now();
        await gen1.kill('SIGTERM');
        return stoppedAt;
      },
      1_500,
    );
    assert.equal(gen1.child.exitCode, 0, gen1.stderr());
    assert.deepEqual(result.failures, [], JSON.stringify(result.errors));
    assert.ok((result.byHost['alpha-gen2'] ?? 0) > 100, JSON.stringify(result.byHost));
    assert.ok(gen2 !== null);
    t.diagnostic(`${result.ok} calls, none failed: ${JSON.stringify(result.byHost)}`);
  });

  test('drain across hosts: the instance on alpha stops while one on beta serves, no call fails', async (t) => {
    const alpha = running.filter((p) => String(p.lines[0]?.host).startsWith('alpha'));
    await startCell(1, { CELL_TEST_HOST: 'beta' });
    const { result } = await underLoad(
      { concurrency: 16, delayMs: 10, timeoutMs: 15_000 },
      async () => {
        const stoppedAt = Date.now();
        await Promise.all(alpha.map((p) => p.kill('SIGTERM')));
        return stoppedAt;
      },
      1_500,
    );
    for (const p of alpha) running.splice(running.indexOf(p), 1);
    assert.deepEqual(result.failures, [], JSON.stringify(result.errors));
    assert.ok((result.byHost.beta ?? 0) > 100, JSON.stringify(result.byHost));
    t.diagnostic(`${result.ok} calls, none failed: ${JSON.stringify(result.byHost)}`);
  });
});
