import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { Synapse } from '../../../src/index.js';
import { echoCell, echoContract, makeSandbox, useSandboxEnv, waitFor } from './harness.js';

/** A port nothing listens on right now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

test('cell up --metrics-port: the Root serves every cell it runs as Prometheus text on localhost', async (t) => {
  const sb = makeSandbox();
  const restoreEnv = useSandboxEnv(sb);
  t.after(async () => {
    restoreEnv();
    await sb.cleanup();
  });
  sb.cell('echo', echoCell('echo'));
  sb.cell('idle', echoCell('idle'));
  sb.manifest({ echo: { dna: './dna/echo' }, idle: { dna: './dna/idle', autostart: false } });

  const bad = await sb.cli('up', sb.dir, '--no-sandbox', '--metrics-port', 'eighty');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--metrics-port takes a whole number/);

  const port = await freePort();
  const up = await sb.cli('up', sb.dir, '--no-sandbox', '--metrics-port', String(port));
  assert.equal(up.code, 0, up.stderr);
  const url = `http://127.0.0.1:${port}/metrics`;

  const echo = await Synapse.grow(echoContract('echo'), { waitMs: 20_000 });
  t.after(() => echo.$close());
  for (let i = 0; i < 25; i++) assert.equal(await echo.echo(`m${i}`), `echo:m${i}`);

  // Counters are sampled at scrape time; the cell's calls show up within a scrape or two.
  const text = await waitFor('the echo calls in the Root metrics', async () => {
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const body = await res.text();
    const m = /^cell_requests_total\{cell="echo",method="echo"\} (\d+)$/m.exec(body);
    return m !== null && Number(m[1]) >= 25 ? body : undefined;
  });
  assert.match(text, /^cell_up\{cell="echo",state="running"\} 1$/m);
  assert.match(text, /^cell_up\{cell="idle",state="stopped"\} 0$/m);
  assert.match(text, /^cell_resident_memory_bytes\{cell="echo"\} [1-9]\d*$/m);
  assert.equal((await fetch(`http://127.0.0.1:${port}/nope`)).status, 404);

  const down = await sb.cli('down');
  assert.equal(down.code, 0, down.stderr);
  await assert.rejects(fetch(url), 'the endpoint goes away with the Root');
});
