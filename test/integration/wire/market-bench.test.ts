import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const demo = fileURLToPath(new URL('../../../examples/market-bench/demo.js', import.meta.url));

test('the market demo runs every mode with integrity checks, exits 0 and cleans up', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-demo-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = spawnSync(process.execPath, [demo, '--seconds', '1'], {
    env: { ...process.env, CELL_SOCKET_DIR: dir },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /All integrity checks passed/);
  assert.equal((r.stdout.match(/summary: .* 0 integrity failures, 0 errors/g) ?? []).length, 5);
  assert.match(r.stdout, /runs of many\(64\)/);
  assert.match(r.stdout, /orders\/s/);
  assert.match(r.stdout, /MB\/s/);
  // it says which transport carried the calls (shared memory unless unavailable, with the reason)
  assert.equal((r.stdout.match(/; transport: (shm|socket \(.+\))$/gm) ?? []).length, 5);
  // the exchange stopped gracefully: its socket and lock are gone
  assert.ok(existsSync(dir));
  assert.deepEqual(readdirSync(dir), []);
});

test('the trader detects corrupted answers in every mode and exits non-zero', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-liar-'));
  const liar = spawn(process.execPath, [fileURLToPath(new URL('./fixtures/lying-exchange.js', import.meta.url))], {
    env: { ...process.env, CELL_SOCKET_DIR: dir },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => {
    liar.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  await new Promise<void>((resolve, reject) => {
    liar.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    liar.once('exit', (c) => reject(new Error(`lying exchange exited ${c}`)));
  });
  const trader = fileURLToPath(new URL('../../../examples/market-bench/trader.js', import.meta.url));
  for (const args of [
    ['1', 'ping'],
    ['1', 'ping', '--many', '16'],
    ['1', 'batch', '10'],
    ['1', 'bytes', '256'],
  ]) {
    const r = spawnSync(process.execPath, [trader, ...args, '--duration', '0.5'], {
      env: { ...process.env, CELL_SOCKET_DIR: dir },
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /INTEGRITY FAILURE/);
  }
});
