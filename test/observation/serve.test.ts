import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCellError } from '../../src/errors/index.js';
import { ServiceMetrics } from '../../src/metrics/index.js';
import { serveMetrics } from '../../src/observation/index.js';

test('serveMetrics: exporter text from collect, 500 with the reason when collecting fails, port errors', async (t) => {
  const m = new ServiceMetrics('svc', ['get']);
  m.begin(0, 10);
  m.end(0, 5_000, 20, false);
  let fail = false;
  const server = await serveMetrics({
    port: 0,
    collect: async () => {
      if (fail) throw new Error('the Root is gone');
      return [{ name: 'svc', state: 'running', restarts: 0, transport: 'socket', metrics: m.snapshot() }];
    },
  });
  t.after(() => server.close());
  const ok = await fetch(server.url);
  assert.equal(ok.status, 200);
  assert.match(await ok.text(), /^cell_requests_total\{cell="svc",method="get"\} 1$/m);
  const head = await fetch(server.url, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), '');
  fail = true;
  const broken = await fetch(server.url);
  assert.equal(broken.status, 500);
  assert.match(await broken.text(), /collecting metrics failed: the Root is gone/);
  assert.equal(server.scrapes, 2);

  await assert.rejects(serveMetrics({ port: server.port, collect: async () => [] }), (err) => {
    assert.ok(isCellError(err, 'E_INVALID_ARGUMENT'), String(err));
    assert.match((err as Error).message, /EADDRINUSE|address already in use/);
    return true;
  });
  await assert.rejects(serveMetrics({ port: 70_000, collect: async () => [] }), (err) =>
    isCellError(err, 'E_INVALID_ARGUMENT'),
  );
});

test('serveMetrics: scrapes that arrive while a collection runs share it', async (t) => {
  let collections = 0;
  let release: () => void = () => {};
  const gate = new Promise<void>((r) => (release = r));
  const server = await serveMetrics({
    port: 0,
    collect: async () => {
      collections++;
      await gate;
      return [{ name: 'svc', state: 'running', restarts: 0, transport: 'socket' }];
    },
  });
  t.after(() => server.close());
  const burst = Promise.all(Array.from({ length: 5 }, () => fetch(server.url).then((r) => r.status)));
  // Every scrape is in before the (held) collection finishes.
  const deadline = Date.now() + 10_000;
  while (server.waiting < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(server.waiting, 5);
  release();
  assert.deepEqual(await burst, [200, 200, 200, 200, 200]);
  assert.equal(collections, 1);
  assert.equal(server.waiting, 0);
});
