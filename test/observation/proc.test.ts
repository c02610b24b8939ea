import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { ProcessSampler, readProcess } from '../../src/observation/index.js';

test('reads CPU seconds and RSS of a real busy process and reports its CPU %', async (t) => {
  // A child that spins for a while: its CPU share must show up, and its name has spaces and parens.
  const child = spawn(
    process.execPath,
    ['-e', 'process.title = "busy (cell) x"; const end = Date.now() + 20000; while (Date.now() < end) {}'],
    {
      stdio: 'ignore',
    },
  );
  t.after(() => child.kill('SIGKILL'));
  const sampler = new ProcessSampler();
  const first = sampler.sample(child.pid!);
  assert.ok(first, 'the child is readable');
  assert.equal(first.cpuPercent, undefined);
  let pct: number | undefined;
  for (let i = 0; i < 100 && !(pct !== undefined && pct > 20); i++) {
    await new Promise((r) => setTimeout(r, 100));
    pct = sampler.sample(child.pid!)?.cpuPercent;
  }
  assert.ok(pct !== undefined && pct > 20 && pct < 150, `cpu ${pct}%`);
  const self = readProcess(process.pid)!;
  assert.ok(self.rssBytes > 10 * 1024 * 1024 && self.rssBytes < 4 * 1024 ** 3, `rss ${self.rssBytes}`);
  assert.ok(self.cpuSeconds > 0);
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.equal(readProcess(child.pid!), undefined);
  assert.equal(sampler.sample(child.pid!), undefined);
});
