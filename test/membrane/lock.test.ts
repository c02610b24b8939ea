import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isCellError } from '../../src/errors/index.js';
import { InstanceLock, probeSocket, processStartTime } from '../../src/membrane/lock.js';

test('the lock holds against a live owner and is taken over from a dead one', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'x.lock');
  const lock = InstanceLock.acquire(path, 'x');
  assert.match(readFileSync(path, 'utf8'), new RegExp(`^${process.pid} `));
  assert.throws(
    () => InstanceLock.acquire(path, 'x'),
    (e: unknown) => isCellError(e, 'E_CELL_ALREADY_RUNNING'),
  );
  lock.release();
  assert.equal(existsSync(path), false);

  // a live process that is not us
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  t.after(() => child.kill('SIGKILL'));
  writeFileSync(path, `${child.pid} ${processStartTime(child.pid!)}\n`);
  assert.throws(
    () => InstanceLock.acquire(path, 'x'),
    (e: unknown) => isCellError(e, 'E_CELL_ALREADY_RUNNING'),
  );
  // same pid, different start time: the pid was reused, the lock is stale
  writeFileSync(path, `${child.pid} 1\n`);
  InstanceLock.acquire(path, 'x').release();
  // a dead process
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  writeFileSync(path, `${child.pid} ${processStartTime(process.pid)}\n`);
  const taken = InstanceLock.acquire(path, 'x');
  assert.match(readFileSync(path, 'utf8'), new RegExp(`^${process.pid} `));
  taken.release();
});

test('probeSocket tells live, stale and absent sockets apart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-probe-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 's.sock');
  assert.equal(await probeSocket(path), 'absent');
  const server = createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(path, r));
  assert.equal(await probeSocket(path), 'live');
  // a stale socket file: bound by a process that died without cleaning up
  const child = spawn(
    process.execPath,
    [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(join(dir, 'dead.sock'))}, () => process.kill(process.pid, 'SIGKILL'))`,
    ],
    { stdio: 'ignore' },
  );
  await new Promise((r) => child.once('exit', r));
  assert.equal(await probeSocket(join(dir, 'dead.sock')), 'stale');
  await new Promise((r) => server.close(r));
});
