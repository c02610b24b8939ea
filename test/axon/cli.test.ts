import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { meshCommand } from '../../src/axon/cli.js';

test('cell mesh init / join / sign / join --cert / status, as an operator runs them', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-mesh-cli-'));
  const saved = process.env.CELL_HOME;
  t.after(() => {
    if (saved === undefined) delete process.env.CELL_HOME;
    else process.env.CELL_HOME = saved;
    rmSync(dir, { recursive: true, force: true });
  });
  const lines: string[] = [];
  const print = (l: string) => lines.push(l);
  const as = (host: string) => {
    process.env.CELL_HOME = join(dir, host);
  };

  as('alpha');
  assert.equal(await meshCommand(['init', '--host', 'alpha'], print), 0);
  const caFingerprint = /CA fingerprint \(sha-256\): ([0-9a-f]{64})/.exec(lines.join('\n'))?.[1];
  assert.ok(caFingerprint);
  assert.equal(await meshCommand(['init', '--host', 'alpha'], print), 1, 'a second init without --force is refused');

  as('beta');
  assert.equal(await meshCommand(['join', '--host', 'beta'], print), 0);
  as('alpha');
  const bundle = join(dir, 'beta.bundle.pem');
  assert.equal(await meshCommand(['sign', join(dir, 'beta', 'mesh', 'host.csr'), '--out', bundle], print), 0);
  assert.ok(existsSync(bundle));
  as('beta');
  assert.equal(
    await meshCommand(['join', '--cert', bundle, '--ca-fingerprint', '00'.repeat(32)], print),
    1,
    'wrong CA fingerprint',
  );
  assert.equal(await meshCommand(['join', '--cert', bundle, '--ca-fingerprint', caFingerprint], print), 0);
  lines.length = 0;
  assert.equal(await meshCommand(['status'], print), 0);
  assert.match(lines[0] ?? '', /^host beta /);
  assert.match(lines[1] ?? '', new RegExp(`^mesh CA ${caFingerprint}$`));
  assert.equal(await meshCommand(['sign'], print), 2, 'no CSR was named: a usage error');
  assert.equal(await meshCommand(['sign', join(dir, 'nowhere.csr')], print), 1, 'no such CSR');
  assert.equal(await meshCommand(['sign', join(dir, 'beta', 'mesh', 'host.csr')], print), 1, 'beta has no CA key');
  assert.equal(await meshCommand(['bogus'], print), 2);
});
