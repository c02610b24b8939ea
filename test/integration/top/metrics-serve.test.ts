import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { CellProbe, collectCellSamples, serveMetrics } from '../../../src/observation/index.js';
import { CLI, LiveMesh } from './mesh.js';

const requestsOf = (text: string, cell: string) => {
  const m = new RegExp(`^cell_requests_total\\{cell="${cell}",method="work"\\} (\\d+)$`, 'm').exec(text);
  return m === null ? undefined : Number(m[1]);
};

test('serveMetrics over a CellProbe: live cells, a silent process by pid, shared scrapes, 404', async (t) => {
  const mesh = new LiveMesh();
  // The probe checks each cell's identity against the operator's root key: the mesh's CELL_HOME.
  const saved = { home: process.env.CELL_HOME, dir: process.env.CELL_SOCKET_DIR };
  Object.assign(process.env, mesh.env);
  const probe = new CellProbe(mesh.dir, 1000);
  let server: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  t.after(async () => {
    await server?.close();
    await probe.close();
    await mesh.stop();
    for (const [key, value] of [
      ['CELL_HOME', saved.home],
      ['CELL_SOCKET_DIR', saved.dir],
    ] as const) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  });
  await mesh.start();
  // What the Root knows: two running cells, and one whose process runs but does not answer (yet).
  const silentPid = process.pid;
  server = await serveMetrics({
    port: 0,
    collect: () =>
      probe.collect([
        { name: 'alpha', state: 'running', restarts: 2, socketPath: join(mesh.dir, 'alpha', 'alpha.sock') },
        { name: 'beta', state: 'running' },
        { name: 'gamma', state: 'starting', pid: silentPid, socketPath: join(mesh.dir, 'gamma', 'gamma.sock') },
      ]),
  });
  assert.equal(server.host, '127.0.0.1');
  assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);

  const first = await fetch(server.url);
  assert.equal(first.status, 200);
  assert.match(first.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const a = await first.text();
  assert.match(a, /^cell_up\{cell="alpha",state="running"\} 1$/m);
  assert.match(a, /^cell_restarts_total\{cell="alpha"\} 2$/m);
  assert.match(a, /^cell_up\{cell="gamma",state="starting"\} 0$/m);
  // The silent process still has its CPU and memory read from /proc by pid.
  assert.match(a, /^cell_resident_memory_bytes\{cell="gamma"\} [1-9]\d*$/m);
  assert.match(a, /^cell_resident_memory_bytes\{cell="alpha"\} [1-9]\d*$/m);
  const before = requestsOf(a, 'alpha');
  assert.ok(before !== undefined && before > 0, a.slice(0, 1500));

  // beta keeps calling alpha: a later scrape sees more requests, and CPU percent (a delta) appears.
  let b = '';
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    b = await (await fetch(server.url)).text();
    if ((requestsOf(b, 'alpha') ?? 0) > before && /^cell_cpu_percent\{cell="alpha"\} [\d.]+$/m.test(b)) break;
  }
  assert.ok((requestsOf(b, 'alpha') ?? 0) > before, b.slice(0, 1500));
  assert.match(b, /^cell_cpu_percent\{cell="alpha"\} [\d.]+$/m);
  assert.match(b, /^cell_cpu_seconds_total\{cell="beta"\} [\d.e-]+$/m);

  // Concurrent scrapes all answer (that they share one collection is tested in test/metrics/serve.test.ts,
  // where the collection can be held open; here its timing is up to the machine).
  const burst = await Promise.all(Array.from({ length: 5 }, () => fetch(server!.url).then((r) => r.text())));
  assert.ok(burst.every((text) => requestsOf(text, 'alpha') !== undefined));

  assert.equal((await fetch(server.url.replace('/metrics', '/other'))).status, 404);
  assert.equal((await fetch(server.url, { method: 'POST' })).status, 405);

  // The one-shot helper (no CPU percent: that needs two samples).
  const once = await collectCellSamples([{ name: 'alpha', socketPath: join(mesh.dir, 'alpha', 'alpha.sock') }]);
  assert.equal(once[0]?.state, 'running');
  assert.ok((once[0]?.metrics?.methods.find((m) => m.method === 'work')?.requests ?? 0) > 0);
  assert.ok((once[0]?.rssBytes ?? 0) > 0);
});

test('cell metrics --serve 0 answers /metrics for the cells in the socket directory until stopped', async (t) => {
  const mesh = new LiveMesh();
  t.after(() => mesh.stop());
  await mesh.start();
  const child = spawn(process.execPath, [CLI, 'metrics', '--serve', '0'], {
    env: { ...process.env, ...mesh.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL announced: ${stderr}`)), 15_000);
    child.stderr.on('data', (d) => {
      stderr += d;
      const m = /serving Prometheus metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    });
  });
  const text = await (await fetch(url)).text();
  assert.ok((requestsOf(text, 'alpha') ?? 0) > 0, text.slice(0, 1500));
  assert.match(text, /^cell_up\{cell="beta",state="running"\} 1$/m);
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});
