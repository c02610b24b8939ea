import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
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
  assert.equal((r.stdout.match(/summary: .* 0 integrity failures, 0 errors/g) ?? []).length, 4);
  assert.match(r.stdout, /orders\/s/);
  assert.match(r.stdout, /MB\/s/);
  // the exchange stopped gracefully: its socket and lock are gone
  assert.ok(existsSync(dir));
  assert.deepEqual(readdirSync(dir), []);
});
