import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Svcm } from '@nats-io/services';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { CellError, isCellError } from '../../src/errors/index.js';
import { Membrane } from '../../src/index.js';
import { closeNats, natsResolver, natsSettings, registerNats } from '../../src/nats/index.js';
import type { NatsCellService } from '../../src/nats/service.js';
import { protein, t } from '../../src/protein/index.js';
import { rpc, service } from '../../src/service/index.js';
import { Synapse } from '../../src/synapse/index.js';
import { NatsCluster, natsServerAvailable } from '../integration/nats/cluster.js';

// Membrane and Synapse in this process, one nats-server on loopback started by the test. The calls
// really travel through the server (the resolver list holds only the NATS resolver).

const Add = protein('Add', { a: t.u32, b: t.u32 });
const Svc = service('calc', {
  add: rpc(Add, t.u32),
  fail: rpc(t.string, t.unit),
  sleep: rpc(t.u32, t.u32),
  blob: rpc(t.u32, t.bytes),
  echo: rpc(t.bytes, t.bytes),
});
const OtherSvc = service('calc', { add: rpc(Add, t.u64) });

interface Seen {
  aborted: Array<string | undefined>;
}

function bindCalc(
  dir: string,
  url: string,
  seen: Seen,
  name = 'calc',
  drainTimeoutMs = 5_000,
): Promise<Membrane<typeof Svc>> {
  return Membrane.bind(
    Svc,
    {
      add: (x) => x.a + x.b,
      fail: (why) => {
        throw new CellError('E_INVALID_ARGUMENT', `refused: ${why}\nsecond line`, {
          fix: 'send a better string',
          details: { why, n: 7 },
        });
      },
      sleep: (ms, ctx) =>
        new Promise<number>((resolve, reject) => {
          const timer = setTimeout(() => resolve(ms), ms);
          ctx.signal.addEventListener('abort', () => {
            clearTimeout(timer);
            seen.aborted.push((ctx.signal.reason as CellError | undefined)?.code);
            reject(ctx.signal.reason);
          });
        }),
      blob: (n) => Buffer.alloc(n, 1),
      echo: (b) => b,
    },
    {
      name,
      socketPath: join(dir, `${name}-${Math.random().toString(36).slice(2)}.sock`),
      nats: url,
      handleSignals: false,
      tap: false,
      drainTimeoutMs,
    },
  );
}

/**
 * The official micro services client. @nats-io/services pins a pre-release of nats-core whose types
 * differ from transport-node's (the reason it is a test-only dependency, README § Dependencies); at
 * run time it only calls the connection's public API.
 */
function officialClient(nc: NatsConnection) {
  return new Svcm(nc as unknown as ConstructorParameters<typeof Svcm>[0]).client();
}

function nats(m: Membrane): NatsCellService {
  return m.attachment('nats') as unknown as NatsCellService;
}

const until = async (pred: () => boolean, ms = 5_000) => {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('settings', () => {
  test('CELL_NATS wins over the option; 0 or empty turns NATS off; fields come from their variables', () => {
    assert.equal(natsSettings(undefined, {}), null);
    assert.equal(natsSettings('nats://a:4222', { CELL_NATS: '0' }), null);
    assert.equal(natsSettings('nats://a:4222', { CELL_NATS: '' }), null);
    const s = natsSettings(undefined, {
      CELL_NATS: 'nats://h1:4222, h2:4223,tls://h3:4443',
      CELL_NATS_USER: 'alpha',
      CELL_NATS_PASSWORD_FILE: '/run/secrets/pw',
      CELL_NATS_INBOX_PREFIX: '_INBOX_alpha',
      CELL_NATS_TLS_CA: '/etc/ca.pem',
    });
    assert.deepEqual(s, {
      servers: ['nats://h1:4222', 'nats://h2:4223', 'tls://h3:4443'],
      inboxPrefix: '_INBOX_alpha',
      version: '0.0.0',
      user: 'alpha',
      passwordFile: '/run/secrets/pw',
      tls: { caFile: '/etc/ca.pem' },
    });
    const o = natsSettings({ servers: ['nats://x:1'], credsFile: '/c.creds', version: '1.2.3' }, {});
    assert.equal(o?.credsFile, '/c.creds');
    assert.equal(o?.version, '1.2.3');
    assert.deepEqual(natsSettings({ servers: 'nats://x:1', version: '1.0.0' }, { CELL_NATS: 'nats://y:2' })?.servers, [
      'nats://y:2',
    ]);
  });

  test('malformed settings are refused with the fix', () => {
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return isCellError(err) ? err.code : 'other';
      }
      return 'none';
    };
    assert.equal(
      code(() => natsSettings('http://h:1', {})),
      'E_INVALID_ARGUMENT',
    );
    assert.equal(
      code(() => natsSettings('nats://user:secret@h:1', {})),
      'E_INVALID_ARGUMENT',
    );
    assert.equal(
      code(() => natsSettings({ servers: 'h:1', version: 'one' }, {})),
      'E_INVALID_ARGUMENT',
    );
    assert.equal(
      code(() => natsSettings({ servers: 'h:1', inboxPrefix: 'a b' }, {})),
      'E_INVALID_ARGUMENT',
    );
    assert.equal(
      code(() => natsSettings({ servers: 'h:1', tls: { certFile: '/c' } }, {})),
      'E_INVALID_ARGUMENT',
    );
  });
});

describe('a cell served on NATS, called through NATS (loopback nats-server)', {
  skip: natsServerAvailable() ? false : 'needs nats-server (apt-get install nats-server)',
}, () => {
  let dir: string;
  let server: NatsCluster;
  let url: string;
  let nc: NatsConnection;
  const seen: Seen = { aborted: [] };
  let membrane: Membrane<typeof Svc>;
  const grow = <S extends typeof Svc | typeof OtherSvc>(svc: S, waitMs = 3_000) =>
    Synapse.grow(svc, { resolvers: [natsResolver(() => natsSettings(url, {}))], waitMs });

  before(async () => {
    delete process.env.CELL_NATS;
    dir = mkdtempSync(join(tmpdir(), 'cell-nats-unit-'));
    process.env.CELL_SOCKET_DIR = join(dir, 'run');
    registerNats();
    server = await NatsCluster.start({ dir, addresses: ['127.0.0.1'], extra: 'max_payload: 65536' });
    url = server.url(0);
    nc = await connect({ servers: url.replace('nats://', '') });
    membrane = await bindCalc(dir, url, seen);
  });

  after(async () => {
    await membrane?.close();
    await nc?.close();
    await closeNats();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('typed calls and many() travel over NATS request/reply', async () => {
    const calc = await grow(Svc);
    assert.equal(calc.$synapse.transport?.transport, 'nats');
    assert.match(calc.$synapse.target, /^nats:calc@127\.0\.0\.1:\d+ \(1 instance\)$/);
    assert.equal(await calc.add({ a: 2, b: 40 }), 42);
    const sums = await calc.add.many(Array.from({ length: 500 }, (_, i) => ({ a: i, b: 1 })));
    assert.deepEqual(
      sums,
      Array.from({ length: 500 }, (_, i) => i + 1),
    );
    const payload = Buffer.from('bytes survive the trip');
    assert.deepEqual(Buffer.from(await calc.echo(payload)), payload);
    await calc.$close();
  });

  test('a handler error arrives as the same CellError: code, message, fix and details from the headers', async () => {
    const calc = await grow(Svc);
    await assert.rejects(calc.fail('nope'), (err: unknown) => {
      assert.ok(isCellError(err));
      assert.equal(err.code, 'E_INVALID_ARGUMENT');
      assert.match(err.message, /refused: nope second line/);
      assert.equal(err.fix, 'send a better string');
      assert.deepEqual(err.details, { why: 'nope', n: 7 });
      return true;
    });
    await calc.$close();
  });

  test('a timeout or an aborted signal fails the call and aborts the handler’s signal in the cell', async () => {
    const calc = await grow(Svc);
    seen.aborted.length = 0;
    await assert.rejects(calc.sleep(5_000, { timeoutMs: 100 }), { code: 'E_TIMEOUT' });
    const ac = new AbortController();
    const p = calc.sleep(5_000, { signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await assert.rejects(p, { code: 'E_ABORTED' });
    await assert.rejects(calc.sleep.many([5_000, 5_000, 5_000], { timeoutMs: 100 }), (err: unknown) =>
      isCellError(err, 'E_TIMEOUT'),
    );
    await until(() => seen.aborted.length === 5);
    assert.deepEqual(seen.aborted, ['E_ABORTED', 'E_ABORTED', 'E_ABORTED', 'E_ABORTED', 'E_ABORTED']);
    await until(() => nats(membrane).inFlight === 0);
    await calc.$close();
  });

  test('the built-in methods answer over NATS', async () => {
    const calc = await grow(Svc);
    const genome = (await calc.$genome()) as { cell: string; fingerprint: string };
    assert.equal(genome.cell, 'calc');
    assert.equal(genome.fingerprint, `0x${Svc.fingerprint.toString(16).padStart(16, '0')}`);
    const health = (await calc.$health()) as { status: string; pid: number };
    assert.equal(health.status, 'ok');
    assert.equal(health.pid, process.pid);
    const metrics = (await calc.$metrics()) as { shm: { transports: Array<{ transport: string }> } };
    assert.ok(metrics.shm.transports.some((x) => x.transport === 'nats'));
    await calc.$close();
  });

  test('payloads above the server’s max_payload fail with E_FRAME_TOO_LARGE, both ways', async () => {
    const calc = await grow(Svc);
    await assert.rejects(calc.echo(Buffer.alloc(70_000)), { code: 'E_FRAME_TOO_LARGE' });
    await assert.rejects(calc.blob(70_000), { code: 'E_FRAME_TOO_LARGE' });
    assert.equal((await calc.blob(60_000)).length, 60_000);
    await calc.$close();
  });

  test('another contract under the same name fails with E_SCHEMA_MISMATCH before any call', async () => {
    await assert.rejects(grow(OtherSvc), (err: unknown) => {
      assert.ok(isCellError(err, 'E_SCHEMA_MISMATCH'));
      assert.match(err.message, new RegExp(Svc.fingerprint.toString(16).padStart(16, '0')));
      return true;
    });
  });

  test('$SRV.PING/INFO/STATS answer as a micro service the official client reads, with real numbers', async () => {
    const calc = await grow(Svc);
    const before = nats(membrane).statsReply() as { endpoints: Array<{ name: string; num_requests: number }> };
    const n0 = before.endpoints.find((e) => e.name === 'sleep')?.num_requests ?? 0;
    for (let i = 0; i < 4; i++) await calc.sleep(30);
    await assert.rejects(calc.fail('x'));
    const client = officialClient(nc);
    const pings = [];
    for await (const p of await client.ping('calc')) pings.push(p);
    assert.equal(pings.length, 1);
    assert.equal(pings[0]?.id, nats(membrane).id);
    const infos = [];
    for await (const i of await client.info('calc')) infos.push(i);
    const info = infos[0];
    assert.ok(info !== undefined);
    assert.equal(info.metadata?.['cell.fingerprint'], `0x${Svc.fingerprint.toString(16).padStart(16, '0')}`);
    assert.deepEqual(
      info.endpoints.map((e) => [e.name, e.queue_group]),
      Svc.byId.map((m) => [m.name, 'q']),
    );
    assert.match(info.endpoints[0]?.subject ?? '', /^cell\.calc\.[0-9a-f]{16}\.add$/);
    const stats = [];
    for await (const s of await client.stats('calc')) stats.push(s);
    const sleep = stats[0]?.endpoints?.find((e) => e.name === 'sleep');
    const fail = stats[0]?.endpoints?.find((e) => e.name === 'fail');
    assert.ok(sleep !== undefined && fail !== undefined);
    assert.equal(sleep.num_requests - n0, 4);
    // processing time runs from arrival to reply: the 30 ms of asynchronous work count.
    assert.ok(sleep.average_processing_time >= 25e6, `average ${sleep.average_processing_time} ns`);
    assert.ok(fail.num_errors >= 1);
    assert.match(fail.last_error ?? '', /^E_INVALID_ARGUMENT: refused: x/);
    await calc.$close();
  });

  test('a call to a cell that vanished abruptly fails with E_CONNECTION_LOST long before its timeout', async () => {
    const extra = await bindCalc(dir, url, seen, 'lost');
    const calc = await Synapse.grow(Svc, {
      name: 'lost',
      resolvers: [natsResolver(() => natsSettings(url, {}))],
      timeoutMs: 30_000,
    });
    const t0 = Date.now();
    const pending = calc.sleep(20_000);
    await until(() => nats(extra).inFlight === 1);
    // Gone without a drain, as if killed: its subscriptions vanish, its call is never answered.
    nats(extra).destroy();
    await assert.rejects(pending, { code: 'E_CONNECTION_LOST' });
    assert.ok(Date.now() - t0 < 4_000, `detected after ${Date.now() - t0} ms`);
    await extra.close();
    await calc.$close();
  });

  test('close() drains: calls in flight over NATS finish, new ones go to the other instance', async () => {
    const second = await bindCalc(dir, url, seen);
    const calc = await grow(Svc);
    const inFlight = Array.from({ length: 20 }, () => calc.sleep(300));
    await until(() => nats(membrane).inFlight + nats(second).inFlight === 20);
    const firstHad = nats(membrane).inFlight;
    const closing = membrane.close();
    const meanwhile = await calc.add.many(Array.from({ length: 200 }, (_, i) => ({ a: i, b: 0 })));
    assert.equal(meanwhile.length, 200);
    assert.deepEqual(await Promise.all(inFlight), new Array(20).fill(300));
    await closing;
    assert.ok(firstHad > 0, 'the closed instance had calls in flight');
    const ids = [];
    for await (const p of await officialClient(nc).ping('calc')) ids.push(p.id);
    assert.deepEqual(ids, [nats(second).id]);
    membrane = second;
    await calc.$close();
  });

  test('"no responders" is retried for a moment, so a cell coming back in time takes the call', async () => {
    const calc = await grow(Svc);
    await membrane.close();
    const pending = calc.add({ a: 1, b: 2 });
    await new Promise((r) => setTimeout(r, 300));
    membrane = await bindCalc(dir, url, seen);
    assert.equal(await pending, 3);
    await membrane.close();
    const t0 = Date.now();
    await assert.rejects(calc.add({ a: 1, b: 2 }), { code: 'E_CELL_NOT_FOUND' });
    assert.ok(Date.now() - t0 >= 1_500);
    membrane = await bindCalc(dir, url, seen);
    // The failed call told the Synapse to find the cell again: the next call does.
    assert.equal(await calc.add({ a: 2, b: 2 }), 4);
    await calc.$close();
  });
});

test('a process without CELL_NATS never loads the NATS client', () => {
  const script = fileURLToPath(new URL('./no-nats-fixture.js', import.meta.url));
  const env = { ...process.env };
  delete env.CELL_NATS;
  const dir = mkdtempSync(join(tmpdir(), 'cell-nats-off-'));
  try {
    const r = spawnSync(process.execPath, [script], {
      env: { ...env, CELL_SOCKET_DIR: join(dir, 'run') },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim()), { served: 3, notFound: 'E_CELL_NOT_FOUND', natsModules: 0 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
