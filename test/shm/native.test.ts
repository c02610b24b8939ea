import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { ftruncateSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadNative, type NativeAddon } from '../../src/shm/native.js';

// dist/test/shm → the repository root
const addonPath = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'native',
  'build',
  'Release',
  'cell_native.node',
);
const native = loadNative();
const addon = native.addon as NativeAddon;
if (addon === undefined) throw new Error(`native addon unavailable: ${native.reason}`);

test('memfds are sealed against growing and shrinking; mappings of one fd share memory', () => {
  const fd = addon.memfdCreate('cell-test', 8192);
  try {
    assert.throws(() => ftruncateSync(fd, 4096), /EPERM/);
    assert.throws(() => ftruncateSync(fd, 16384), /EPERM/);
    const a = addon.mmapShared(fd, 8192);
    const b = addon.mmapShared(fd, 8192);
    assert.ok(a instanceof SharedArrayBuffer);
    Atomics.store(new Int32Array(a), 100, 42);
    assert.equal(Atomics.load(new Int32Array(b), 100), 42);
    assert.throws(() => addon.mmapShared(fd, 8193), /smaller than requested/);
    addon.releaseMemory(fd, 8192);
    assert.equal(Atomics.load(new Int32Array(b), 100), 0, 'punched-out pages read as zeros');
  } finally {
    addon.closeFd(fd);
  }
});

test('futexWait returns not-equal and timed-out without blocking forever', () => {
  const sab = new SharedArrayBuffer(64);
  assert.equal(addon.futexWait(sab, 0, 1, 1_000_000), 'not-equal');
  assert.equal(addon.futexWait(sab, 0, 0, 1_000_000), 'timed-out');
  assert.throws(() => addon.futexWait(sab, 16, 0, 1), /out of range/);
});

test('a FutexWatcher is woken by FUTEX_WAKE from another process', async () => {
  const fd = addon.memfdCreate('cell-futex', 4096);
  const sab = addon.mmapShared(fd, 4096);
  const words = new Int32Array(sab);
  let woken = 0;
  const watcher = new addon.FutexWatcher(sab, 5, () => {
    woken++;
  });
  try {
    watcher.arm(0);
    const script = `
      const a = require(${JSON.stringify(addonPath)});
      const sab = a.mmapShared(3, 4096);
      Atomics.add(new Int32Array(sab), 5, 1);
      a.futexWake(sab, 5, 1);`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'inherit', 'inherit', fd] });
    const code = await new Promise((r) => child.on('exit', r));
    assert.equal(code, 0);
    const deadline = Date.now() + 5000;
    while (woken === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    assert.equal(woken, 1);
    assert.equal(Atomics.load(words, 5), 1);
  } finally {
    watcher.close();
    addon.closeFd(fd);
  }
});

test('an eventfd doorbell signalled by another process calls the FdWatcher back on the event loop', async () => {
  const bell = addon.eventfdCreate();
  let calls = 0;
  const watcher = new addon.FdWatcher(bell, () => {
    calls++;
  });
  try {
    const script = `
      const a = require(${JSON.stringify(addonPath)});
      a.eventfdSignal(3); a.eventfdSignal(3);`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'inherit', 'inherit', bell] });
    assert.equal(await new Promise((r) => child.on('exit', r)), 0);
    const deadline = Date.now() + 5000;
    while (calls === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    assert.ok(calls >= 1, 'woken');
    const seen = calls;
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(calls, seen, 'the counter was drained: no further callbacks without a new signal');
  } finally {
    watcher.close();
    addon.closeFd(bell);
  }
});

test('peerCred reports the connecting process; fetchFds receives SCM_RIGHTS fds on its own connection', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-native-'));
  const path = join(dir, 's.sock');
  const memfd = addon.memfdCreate('cell-pass', 4096);
  const seen: Array<{ pid: number; uid: number }> = [];
  const server = createServer((socket: Socket) => {
    const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
    seen.push(addon.peerCred(fd));
    socket.once('data', (req: Buffer) => {
      addon.sendFds(fd, [memfd], Buffer.concat([Buffer.from('re:'), req]));
      socket.end();
    });
  });
  try {
    await new Promise<void>((r) => server.listen(path, r));
    const sab = addon.mmapShared(memfd, 4096);
    Atomics.store(new Int32Array(sab), 3, 7);
    const got = await addon.fetchFds(path, Buffer.from('hello'), 2000);
    assert.equal(got.payload.toString(), 're:hello');
    assert.equal(got.fds.length, 1);
    assert.equal(got.peer.pid, process.pid);
    assert.equal(seen[0]?.pid, process.pid);
    assert.equal(seen[0]?.uid, process.getuid?.());
    const mapped = addon.mmapShared(got.fds[0] as number, 4096);
    assert.equal(Atomics.load(new Int32Array(mapped), 3), 7, 'the received fd is the same memory');
    addon.closeFd(got.fds[0] as number);
    await assert.rejects(addon.fetchFds(join(dir, 'nobody.sock'), Buffer.from('x'), 500), /connect/);
    // A connection that never answers times out instead of hanging.
    const silent = createServer(() => {});
    const silentPath = join(dir, 'silent.sock');
    await new Promise<void>((r) => silent.listen(silentPath, r));
    await assert.rejects(addon.fetchFds(silentPath, Buffer.from('x'), 200), /recvmsg/);
    silent.close();
  } finally {
    server.close();
    addon.closeFd(memfd);
    rmSync(dir, { recursive: true, force: true });
  }
});
