// A real process appends to a WAL on the real disk and is killed with SIGKILL at random moments;
// after each kill the log must reopen with every acknowledged entry intact and in order. (A process
// kill keeps the page cache, so this checks the recovery path and record framing under real
// interruption; power loss is covered by the simulated disk in test/consensus/wal.test.ts.)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Wal } from '../../../src/consensus/wal/index.js';

const WRITER = fileURLToPath(new URL('./fixtures/wal-writer.js', import.meta.url));

test('wal: kill -9 during appends never loses an acknowledged entry', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-wal-kill-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let acked = 0;
  for (let round = 0; round < 6; round++) {
    const child = spawn(process.execPath, [WRITER, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let out = '';
    let started = -1;
    const target = acked + 200 + Math.floor(Math.random() * 2000);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`writer made no progress past ${acked} in 20 s`)), 20_000);
      child.stdout?.on('data', (d) => {
        out += d;
        const lines = out.split('\n');
        out = lines.pop() ?? '';
        for (const l of lines) {
          if (l.startsWith('start ')) started = Number(l.slice(6));
          if (l.startsWith('ack ')) acked = Math.max(acked, Number(l.slice(4)));
        }
        if (acked >= target && child.exitCode === null) {
          child.kill('SIGKILL');
          clearTimeout(timer);
          resolve();
        }
      });
    });
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
    assert.ok(started >= 0 && started <= acked, `round ${round}: writer restarted at ${started}`);
    const { wal, state } = await Wal.open({ dir, segmentBytes: 256 * 1024 });
    await wal.close();
    assert.ok(
      state.entries.length >= acked,
      `round ${round}: ${state.entries.length} entries recovered, ${acked} acknowledged`,
    );
    state.entries.forEach((e, i) => {
      assert.equal(e.index, i + 1);
      assert.equal(new TextDecoder().decode(e.data), `entry-${e.index}-${'x'.repeat(e.index % 300)}`);
    });
  }
  assert.ok(acked > 1000);
});
