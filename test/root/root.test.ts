import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isCellError } from '../../src/errors/index.js';
import { RotatingLog, tailLines } from '../../src/root/log.js';
import { loadManifest, manifestPath } from '../../src/root/manifest.js';

function tmp(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'cell-root-unit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('manifest: entries resolved against the manifest folder, defaults, and clear refusals', (t) => {
  const dir = tmp(t);
  mkdirSync(join(dir, 'a'));
  const path = join(dir, 'cell.json');
  writeFileSync(
    path,
    JSON.stringify({
      cells: {
        exchange: {
          dna: './a',
          entry: 'main.ts',
          limits: { memory: '256M', cpu: 0.5, pids: 64 },
          network: true,
          env: { MODE: 'x' },
        },
        trader: { dna: '/abs/trader', autostart: false, lan: true },
      },
    }),
  );
  assert.equal(manifestPath(dir), path);
  const [exchange, trader] = loadManifest(path);
  assert.equal(exchange?.dir, join(dir, 'a'));
  assert.equal(exchange?.entry, 'main.ts');
  assert.equal(exchange?.limits.memoryBytes, 256 * 1024 * 1024);
  assert.equal(exchange?.limits.cpu, 0.5);
  assert.equal(exchange?.network, true);
  assert.equal(exchange?.autostart, true);
  assert.deepEqual(exchange?.env, { MODE: 'x' });
  assert.equal(trader?.dir, '/abs/trader');
  assert.equal(trader?.autostart, false);
  assert.equal(trader?.lan, true);
  assert.equal(trader?.network, false);

  const refuse = (cells: unknown, pattern: RegExp) => {
    writeFileSync(path, typeof cells === 'string' ? cells : JSON.stringify({ cells }));
    assert.throws(
      () => loadManifest(path),
      (err) => isCellError(err) && pattern.test(err.message),
    );
  };
  refuse('{ not json', /not valid JSON/);
  refuse([], /needs a "cells" object/);
  refuse({ '../evil': { dna: '.' } }, /invalid cell name/);
  refuse({ ok: {} }, /needs "dna"/);
  refuse({ ok: { dna: '.', network: 'yes' } }, /"network" must be true or false/);
  refuse({ ok: { dna: '.', entry: '../../etc/passwd' } }, /"entry" must be a file name/);
  refuse({ ok: { dna: '.', env: { 'A B': 'x' } } }, /env/);
  refuse({ ok: { dna: '.', limits: { memory: 'lots' } } }, /memory/);
  assert.throws(() => loadManifest(join(dir, 'missing.json')), /cannot read the manifest/);
  assert.throws(() => loadManifest('/dev/zero'), /not a regular file/);
});

test('manifest: a parse error gives a position and never the text (a secret first line stays unseen)', (t) => {
  const dir = tmp(t);
  const path = join(dir, 'cell.json');
  const secret = 'hunter2-TOPSECRET-token';
  for (const text of [
    `${secret}\n{ "cells": {} }\n`,
    `{ "cells": { "a": { "dna": "./a" } } }\n${secret}\n`,
    `{ "cells": { "${secret}": { "dna": "./a" }, } }`,
    `{ "cells": ${secret} }`,
    `"${secret}`,
    `\ufeff{ "cells": { "a": ${secret} } }`,
  ]) {
    writeFileSync(path, text);
    assert.throws(
      () => loadManifest(path),
      (err: unknown) => {
        assert.ok(isCellError(err, 'E_INVALID_ARGUMENT'), String(err));
        assert.ok(!err.message.includes('hunter2'), err.message);
        assert.ok(!JSON.stringify(err.toJSON()).includes('hunter2'));
        assert.equal(err.cause, undefined);
        assert.match(err.message, /cell\.json is not valid JSON near byte \d+ \(line \d+, column \d+\)/);
        return true;
      },
      text,
    );
  }
  // The position is the first byte JSON.parse could not take.
  writeFileSync(path, '{\n  "cells": {,\n}');
  assert.throws(() => loadManifest(path), /near byte 14 \(line 2, column 13\)/);
});

test('manifest: contracts are files or folders relative to the manifest; the manifest folder travels along', (t) => {
  const dir = tmp(t);
  const path = join(dir, 'cell.json');
  writeFileSync(
    path,
    JSON.stringify({
      cells: { a: { dna: './a', contracts: ['./shared/contract.ts', '/abs/contracts'] }, b: { dna: './b' } },
    }),
  );
  const [a, b] = loadManifest(path);
  assert.deepEqual(a?.contracts, [join(dir, 'shared', 'contract.ts'), '/abs/contracts']);
  assert.equal(a?.manifestDir, dir);
  assert.deepEqual(b?.contracts, []);
  assert.equal(b?.manifestDir, dir);
  for (const contracts of ['./shared', [''], [1], {}]) {
    writeFileSync(path, JSON.stringify({ cells: { a: { dna: './a', contracts } } }));
    assert.throws(
      () => loadManifest(path),
      (err: unknown) => isCellError(err, 'E_INVALID_ARGUMENT') && /"contracts" must be a list/.test(err.message),
    );
  }
});

test('log: appends, rotates by size keeping N files, tails the last lines', (t) => {
  const dir = tmp(t);
  const path = join(dir, 'logs', 'x.log');
  const log = new RotatingLog(path, 100, 2);
  for (let i = 0; i < 30; i++) log.write(`line ${String(i).padStart(2, '0')} ..........\n`);
  log.note('from the root');
  log.close();
  assert.ok(existsSync(`${path}.1`));
  assert.ok(existsSync(`${path}.2`));
  assert.ok(!existsSync(`${path}.3`));
  for (const f of [path, `${path}.1`, `${path}.2`]) assert.ok(readFileSync(f).length <= 100, f);
  const all = [...tailLines(`${path}.1`, 10), ...tailLines(path, 10)];
  assert.match(all.at(-1) as string, /^\[root .*\] from the root$/);
  assert.match(all.at(-2) as string, /^line 29/);
  assert.equal(tailLines(path, 1).length, 1);
  assert.deepEqual(tailLines(join(dir, 'nope.log'), 5), []);
});
