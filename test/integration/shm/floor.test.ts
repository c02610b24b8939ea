import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const floor = fileURLToPath(new URL('../../../bench/transport/node-ring-floor.js', import.meta.url));

// The floor's positions start just short of 2^31, so each run crosses the int32 sign change: a
// position compared without wrapping reads stale records (the floor throws "reply out of order") or
// finds the ring full forever (no pipelined rate).
for (const layout of ['headtail', 'commit']) {
  test(`the Node shared-memory floor (${layout}) echoes in order across the position wrap, with and without a promise per call`, () => {
    const r = spawnSync(process.execPath, [floor, layout, '0.3'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const out = JSON.parse(r.stdout.trim()) as Record<string, number>;
    for (const k of ['medianNs', 'awaitMedianNs'])
      assert.ok((out[k] as number) > 0 && Number.isFinite(out[k]), `${k}: ${r.stdout}`);
    for (const k of ['seqPerSec', 'pipelinedPerSec', 'awaitSeqPerSec', 'awaitPipelinedPerSec'])
      assert.ok((out[k] as number) > 1000, `${k}: ${r.stdout}`);
  });
}
