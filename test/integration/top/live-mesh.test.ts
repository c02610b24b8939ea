import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadNative } from '../../../src/shm/native.js';
import { CLI, LiveMesh, runCli } from './mesh.js';

/** beta calls alpha over shared memory whenever the addon loads: the column shows what is in use. */
const TRANSPORT = loadNative().addon === undefined ? 'socket' : 'socket\\+shm';

import { TmuxSession } from './tmux.js';

test('cell top in tmux against a live mesh: live rates and latencies, sorting, actions without a Root', {
  skip: !TmuxSession.available() && 'tmux is not installed',
}, async (t) => {
  const mesh = new LiveMesh();
  const tmuxDir = mkdtempSync(join(tmpdir(), 'cell-tmux-'));
  const tmux = new TmuxSession('toplive', join(tmuxDir, 'tmux.sock'));
  t.after(async () => {
    tmux.kill();
    await mesh.stop();
    rmSync(tmuxDir, { recursive: true, force: true });
  });
  await mesh.start();
  tmux.start(`${process.execPath} ${CLI} top --interval 300`, {
    ...mesh.env,
    TERM: 'xterm-256color',
    CLI_SAY_EXIT: '1',
  });

  // alpha serves beta's calls: a non-zero rate, a sparkline, and latencies in µs or ms.
  const alphaLive = new RegExp(
    `^[ >]alpha +running +\\d+ +\\d+s +0 ${TRANSPORT} +[\\d.]+k? +[▁▂▃▄▅▆▇█ ]*[▁▂▃▄▅▆▇█] +[\\d.]+(µs|ms|ns) +[\\d.]+(µs|ms|ns) +0 +[\\d.]+% +[\\d.]+M`,
    'm',
  );
  let screen = await tmux.waitFor((s) => alphaLive.test(s) && /^[ >]beta +running/m.test(s), 'alpha with live metrics');
  assert.match(screen, /cell top — 2 cells/);
  tmux.sendKeys('t');
  screen = await tmux.waitFor((s) => /REQ\/S↓/.test(s), 'sorting by req/s');
  const order = screen
    .split('\n')
    .filter((l) => /^[ >](alpha|beta) /.test(l))
    .map((l) => l.slice(1).split(' ')[0]);
  assert.deepEqual(order, ['alpha', 'beta']);
  tmux.sendKeys('w');
  await tmux.waitFor(
    (s) => /swap alpha failed: .*needs the Root/.test(s),
    'the swap action to explain it needs the Root',
  );
  tmux.sendKeys('q');
  await tmux.waitFor((s) => /cli exited 0/.test(s), 'the dashboard to quit');
});

test('cell top without a terminal prints plain lines; cell metrics prints Prometheus text', async (t) => {
  const mesh = new LiveMesh();
  t.after(() => mesh.stop());
  await mesh.start();
  const top = await runCli(mesh, ['top', '--interval', '200', '--count', '3']);
  assert.equal(top.code, 0, top.stderr);
  const lines = top.stdout.trim().split('\n');
  assert.equal(lines.length, 6, top.stdout);
  assert.match(
    lines[4],
    new RegExp(`cell=alpha state=running pid=\\d+ .*transport=${TRANSPORT} .*req_s=[\\d.]+k? p50=[\\d.]+(ns|µs|ms) `),
  );
  assert.doesNotMatch(lines[4], /req_s=0 /);

  const metrics = await runCli(mesh, ['metrics']);
  assert.equal(metrics.code, 0, metrics.stderr);
  const requests = /^cell_requests_total\{cell="alpha",method="work"\} (\d+)$/m.exec(metrics.stdout);
  assert.ok(requests && Number(requests[1]) > 0, metrics.stdout.slice(0, 2000));
  assert.match(metrics.stdout, /^cell_up\{cell="beta",state="running"\} 1$/m);
  assert.match(metrics.stdout, /^cell_resident_memory_bytes\{cell="alpha"\} \d+$/m);
  assert.match(metrics.stdout, /^cell_request_duration_seconds_bucket\{cell="alpha",method="work",le="\+Inf"\} \d+$/m);
  assert.match(metrics.stdout, /^# TYPE cell_request_duration_seconds histogram$/m);
});

test('cell tap streams decoded, filtered requests of a live cell', async (t) => {
  const mesh = new LiveMesh();
  t.after(() => mesh.stop());
  await mesh.start();
  const tap = await runCli(mesh, ['tap', 'alpha', 'method == work && amount > 150 && symbol ~ "C"', '--count', '5']);
  assert.equal(tap.code, 0, tap.stderr);
  assert.match(tap.stderr, /tapping alpha \(pid \d+\) where method == work/);
  const lines = tap.stdout.trim().split('\n');
  assert.equal(lines.length, 5, tap.stdout);
  for (const line of lines) {
    const m =
      /^\d\d:\d\d:\d\d\.\d{3} #\d+ work [\d.]+(ns|µs|ms) \{"symbol":"(\w+)","amount":(\d+)\} → \{"total":\d+,"by":"alpha"\}$/.exec(
        line,
      );
    assert.ok(m, `unexpected tap line: ${line}`);
    assert.ok(m[2].includes('C') && Number(m[3]) > 150, line);
  }
  const json = await runCli(mesh, ['tap', 'alpha', '--json', '--count', '2']);
  const rec = JSON.parse(json.stdout.trim().split('\n')[0]);
  assert.equal(rec.method, 'work');
  assert.equal(rec.reply.by, 'alpha');
  const bad = await runCli(mesh, ['tap', 'alpha', 'amount >']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /tap filter "amount >": unexpected end/);
});
