import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isCellError } from '../../src/errors/index.js';
import { LineSplitter, parseLogLine, RotatingLog, tailLines } from '../../src/root/log.js';
import {
  DEFAULT_RESTART_POLICY,
  type DnaSpec,
  loadManifest,
  manifestPath,
  restartPolicy,
} from '../../src/root/manifest.js';

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

test('log: a directory removed under it, or rotation failing, loses lines but never throws, and writes resume', (t) => {
  const dir = tmp(t);
  const path = join(dir, 'logs', 'x.log');
  const log = new RotatingLog(path, 100, 2);
  log.write('first\n');
  rmSync(join(dir, 'logs'), { recursive: true, force: true });
  // The next rotation finds neither the directory nor the file: nothing may escape write().
  for (let i = 0; i < 20; i++) assert.doesNotThrow(() => log.write(`line ${i} ..............................\n`));
  assert.ok(existsSync(path), 'the log is written again by name');
  assert.match(readFileSync(path, 'utf8'), /line 19/);
  log.close();
  assert.doesNotThrow(() => log.write('after close\n'));
  assert.doesNotMatch(readFileSync(path, 'utf8'), /after close/);
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

test('manifest: a typo at every level is refused with the nearest field as the fix', (t) => {
  const dir = tmp(t);
  const path = join(dir, 'cell.json');
  const cases: Array<[unknown, RegExp, RegExp]> = [
    [{ cels: { a: { dna: '.' } } }, /unknown field "cels"/, /did you mean "cells"/],
    [{ cells: { a: { dna: '.' } }, $shema: 'x' }, /unknown field "\$shema"/, /did you mean "\$schema"/],
    [{ cells: { a: { dna: '.', autoStart: false } } }, /entry 'a' has an unknown field "autoStart"/, /"autostart"/],
    [{ cells: { a: { dna: '.', contract: [] } } }, /unknown field "contract"/, /did you mean "contracts"/],
    [{ cells: { a: { dna: '.', limits: { memroy: '1G' } } } }, /limits\.memroy/, /did you mean "memory"/],
    [{ cells: { a: { dna: '.', restart: { failure: 3 } } } }, /"restart" has an unknown field "failure"/, /"failures"/],
    [{ cells: { a: { dna: '.', restart: { windowMS: 3 } } } }, /unknown field "windowMS"/, /"windowMs"/],
    [{ cells: { a: { dna: '.', restart: { failures: 0 } } } }, /restart\.failures must be an integer from 1/, /5/],
    [{ cells: { a: { dna: '.', restart: { backoffMs: 1.5 } } } }, /restart\.backoffMs/, /100/],
    [{ cells: { a: { dna: '.', restart: 3 } } }, /"restart" must be an object/, /failures/],
    [{ cells: { a: { dna: '.', restart: { backoffMs: 5000, maxBackoffMs: 100 } } } }, /maxBackoffMs is below/, /raise/],
  ];
  for (const [manifest, message, fix] of cases) {
    writeFileSync(path, JSON.stringify(manifest));
    assert.throws(
      () => loadManifest(path),
      (err) => isCellError(err, 'E_INVALID_ARGUMENT') && message.test(err.message) && fix.test(err.fix ?? ''),
      JSON.stringify(manifest),
    );
  }
});

test('manifest: a restart policy overrides the defaults field by field', (t) => {
  const dir = tmp(t);
  const path = join(dir, 'cell.json');
  writeFileSync(
    path,
    JSON.stringify({
      $schema: './node_modules/cell-runtime/schemas/cell.schema.json',
      cells: { a: { dna: '.', restart: { failures: 3, windowMs: 2000 } }, b: { dna: '.' } },
    }),
  );
  const [a, b] = loadManifest(path);
  assert.deepEqual(restartPolicy(a as DnaSpec), { ...DEFAULT_RESTART_POLICY, failures: 3, windowMs: 2000 });
  assert.deepEqual(restartPolicy(b as DnaSpec), DEFAULT_RESTART_POLICY);
  assert.equal(b?.restart, undefined);
});

test('log: lines carry stream, time and cell; partial lines wait for the rest and no byte is lost', (t) => {
  const dir = tmp(t);
  const path = join(dir, 'c.log');
  const log = new RotatingLog(path);
  log.cell = 'echo';
  const out = new LineSplitter(log, 'stdout');
  const err = new LineSplitter(log, 'stderr');
  out.push(Buffer.from('hel'));
  err.push(Buffer.from('oops: half'));
  out.push(Buffer.from('lo\nsecond line\nthird '));
  err.push(Buffer.from(' an error\n'));
  log.note('the Root speaks');
  out.push(Buffer.from([0xff, 0x00, 0x41]));
  out.end();
  err.end();
  log.close();
  const lines = readFileSync(path).toString('latin1').split('\n');
  assert.equal(lines.pop(), '');
  const entries = lines.map((l) => parseLogLine(l, 'echo'));
  assert.deepEqual(
    entries.map((e) => [e.stream, e.cell, e.line]),
    [
      ['stdout', 'echo', 'hello'],
      ['stdout', 'echo', 'second line'],
      ['stderr', 'echo', 'oops: half an error'],
      ['root', 'echo', 'the Root speaks'],
      ['stdout', 'echo', 'third \xff\x00A'],
    ],
  );
  for (const e of entries) {
    assert.ok(e.time !== null && Math.abs(Date.parse(e.time) - Date.now()) < 60_000, String(e.time));
  }
  // A line without the prefix (an older log) keeps its text; a partial line that never ends is
  // written once it is long enough rather than held without bound.
  assert.deepEqual(parseLogLine('plain', 'x'), { time: null, cell: 'x', stream: null, line: 'plain' });
  const big = new RotatingLog(join(dir, 'big.log'));
  big.cell = 'big';
  const s = new LineSplitter(big, 'stdout');
  s.push(Buffer.alloc(70 * 1024, 0x61));
  big.close();
  assert.ok(readFileSync(join(dir, 'big.log')).length > 70 * 1024);
});
