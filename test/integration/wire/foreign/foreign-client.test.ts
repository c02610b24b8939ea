// A client in another language, written from docs/PROTOCOL.md alone (./client.py), against a real
// cell: the document is the contract other-language clients are built from, so it is tested as one.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { removeDir, startCell, stopCell, tempSocketDir } from '../helpers.js';

const CLIENT = fileURLToPath(new URL('./client.py', import.meta.url));
const SHM_CLIENT = fileURLToPath(new URL('./shm_client.py', import.meta.url));
const CHECKS = [
  'welcome',
  'genome fingerprint',
  'dense method ids',
  'user method on inspection connection',
  'welcome first',
  'echo struct',
  'sum bytes -> u32',
  'handler CellError',
  'unknown method',
  'undecodable input',
  'health',
  'request id 0',
  'malformed length',
  'schema mismatch',
];

const python = spawnSync('python3', ['--version']).status === 0;

const SHM_CHECKS = [
  'challenge',
  'pickup',
  'sealed rings',
  'ring headers',
  'calls through the rings, wrapping',
  'pipelined echoes',
  'big reply over the socket',
  'wakes a sleeping server',
];

/** Runs a Python client against a fresh echo cell; every check it prints must pass, none missing. */
async function runClient(t: TestContext, script: string, checks: string[]): Promise<void> {
  const dir = tempSocketDir();
  const cell = await startCell(dir);
  t.after(async () => {
    await stopCell(cell);
    removeDir(dir);
  });
  const r = spawnSync('python3', [script, join(dir, 'echo', 'echo.sock')], { encoding: 'utf8', timeout: 120_000 });
  const results = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { check: string; ok: boolean; detail: unknown });
  for (const x of results) assert.ok(x.ok, `${x.check}: ${JSON.stringify(x.detail)}`);
  assert.equal(r.status, 0, `${script} failed: ${r.stderr}`);
  assert.deepEqual(
    results.map((x) => x.check),
    checks,
  );
}

test(
  'a Python client built from docs/PROTOCOL.md: handshake, genome fingerprint, calls, errors',
  {
    skip: python ? false : 'python3 is not installed (apt-get install python3)',
  },
  (t) => runClient(t, CLIENT, CHECKS),
);

test(
  'a Python client built from docs/PROTOCOL.md § 3: upgrade, pickup, rings past several wraps, doorbell',
  {
    skip: python ? false : 'python3 is not installed (apt-get install python3)',
  },
  (t) => runClient(t, SHM_CLIENT, SHM_CHECKS),
);
