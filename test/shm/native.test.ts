import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { ftruncateSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { t } from '../../src/protein/index.js';
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

test('takeCopy copies into memory of its own, recycled once the buffer is collected; trimCopyPool frees the idle chunks', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const take = addon.takeCopy as NonNullable<NativeAddon['takeCopy']>;
  const stats = addon.copyPoolStats as NonNullable<NativeAddon['copyPoolStats']>;
  const src = new Uint8Array(new SharedArrayBuffer(300_000)).fill(5);
  src[299_999] = 6;
  const copy = new Uint8Array(take(src, 1000, 299_000));
  assert.ok(copy.buffer instanceof ArrayBuffer && !(copy.buffer instanceof SharedArrayBuffer));
  assert.equal(copy.length, 299_000);
  src.fill(9);
  assert.equal(copy[0], 5, 'the copy does not follow the source');
  assert.equal(copy[298_999], 6);
  assert.throws(() => take(src, 1, 300_000), /outside/);
  addon.trimCopyPool?.();
  const live = stats().liveChunks;
  // The garbage collector frees the buffer; its chunk goes back to the pool (possibly from a helper thread).
  await (async () => {
    for (let i = 0; i < 5; i++) take(src, 0, 200_000);
    for (let i = 0; i < 50 && stats().idleBytes === 0; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  assert.ok(stats().idleBytes > 0, 'collected copies return their chunks to the pool');
  assert.ok(stats().liveChunks <= live + 4, 'chunks of the dropped copies are no longer counted live');
  const reused = stats().reused;
  const again = new Uint8Array(take(src, 0, 200_000));
  assert.equal(stats().reused, reused + 1, 'a copy of the same size class reuses an idle chunk');
  assert.equal(again[199_999], 9);
  assert.ok((addon.trimCopyPool?.() ?? 0) > 0);
  assert.equal(stats().idleBytes, 0);
});

test('with the addon loaded, decode copies big bytes fields into the pool: the value is the caller’s own', () => {
  const stats = addon.copyPoolStats as NonNullable<NativeAddon['copyPoolStats']>;
  const source = Buffer.from(new SharedArrayBuffer(256 << 10)).fill(3);
  const takes = () => stats().mapped + stats().reused;
  const before = takes();
  const small = t.bytes.decode(source, 0, 1000);
  const big = t.bytes.decode(source, 0, 128 << 10);
  assert.equal(takes(), before + 1, 'only the copy over 64 KiB comes from the pool');
  source.fill(4);
  assert.equal(small[999], 3);
  assert.equal(big[(128 << 10) - 1], 3);
  assert.ok(!(big.buffer instanceof SharedArrayBuffer));
  // Between 16 and 64 KiB: a fresh buffer filled by memcpy, from any offset of the shared source.
  for (let i = 0; i < 40_000; i++) source[i] = (i * 7) & 0xff;
  const mid = t.bytes.decode(source, 13, 30_000);
  assert.equal(takes(), before + 1);
  assert.ok(Buffer.from(mid).equals(source.subarray(13, 30_013)));
  source.fill(0);
  assert.equal(mid[0], 91);
});

test('copyInto copies a whole source into a shared target at any offset; encode writes big bytes with it', () => {
  const copyInto = addon.copyInto as NonNullable<NativeAddon['copyInto']>;
  const target = new Uint8Array(new SharedArrayBuffer(100_000));
  const source = new Uint8Array(50_000);
  for (let i = 0; i < source.length; i++) source[i] = i & 0xff;
  copyInto(target, 13, source);
  assert.equal(target[12], 0);
  assert.equal(target[13], 0);
  assert.equal(target[14], 1);
  assert.equal(target[13 + 49_999], 49_999 & 0xff);
  assert.equal(target[13 + 50_000], 0);
  assert.throws(() => copyInto(target, 50_001, source), /does not fit/);
  assert.throws(() => copyInto(target, -1, source), /does not fit/);
  // The same through the codec (a frame puts its payload 12 bytes into the slot).
  const slot = Buffer.from(new SharedArrayBuffer(100_000));
  assert.equal(t.bytes.encodeInto(source, slot, 12), 12 + 50_000);
  assert.ok(slot.subarray(12, 12 + 50_000).equals(source));
});
