import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { renderToString } from 'ink';
import { createElement as h } from 'react';
import { ServiceMetrics } from '../../src/metrics/index.js';
import {
  type CellSample,
  formatLatency,
  formatUptime,
  plainLines,
  runTop,
  screenLines,
  sparkline,
  type TopDataSource,
  TopModel,
  TopScreen,
} from '../../src/top/index.js';

test('sparkline scales to the largest value and pads on the left', () => {
  assert.equal(sparkline([], 4), '    ');
  assert.equal(sparkline([0, 0], 3), '   ');
  assert.equal(sparkline([1, 2, 4, 8], 4), '▂▃▅█');
  assert.equal(sparkline([8, 8, 8, 8, 8, 1], 3), '██▂');
  assert.equal(formatLatency(850), '850ns');
  assert.equal(formatLatency(12_345), '12µs');
  assert.equal(formatLatency(2_500_000), '2.5ms');
  assert.equal(formatUptime(3725), '1h02m');
});

/** A data source over in-process ServiceMetrics: real counters, no Root. */
class MemorySource implements TopDataSource {
  metrics = new Map<string, ServiceMetrics>();
  actions: string[] = [];
  samples: Array<Omit<CellSample, 'metrics'>> = [];
  async sample(): Promise<CellSample[]> {
    return this.samples.map((s) => ({ ...s, metrics: this.metrics.get(s.name)?.snapshot() }));
  }
  async logTail(name: string, n: number): Promise<string[]> {
    return Array.from({ length: n }, (_, i) => `${name} log line ${i}`).slice(-3);
  }
  async swap(name: string): Promise<string> {
    this.actions.push(`swap ${name}`);
    return `swapped ${name} to generation 2`;
  }
  async restart(name: string): Promise<string> {
    this.actions.push(`restart ${name}`);
    throw new Error('no such luck');
  }
}

function source(): MemorySource {
  const s = new MemorySource();
  s.samples = [
    {
      name: 'exchange',
      state: 'running',
      pid: 101,
      startedAt: 0,
      restarts: 0,
      transport: 'shm',
      cpuPercent: 50,
      rssBytes: 40e6,
    },
    {
      name: 'trader',
      state: 'running',
      pid: 102,
      startedAt: 0,
      restarts: 2,
      transport: 'socket',
      cpuPercent: 5,
      rssBytes: 30e6,
    },
    { name: 'ledger', state: 'backoff', restarts: 7, transport: '-' },
  ];
  s.metrics.set('exchange', new ServiceMetrics('exchange', ['ping']));
  s.metrics.set('trader', new ServiceMetrics('trader', ['run']));
  return s;
}

function call(m: ServiceMetrics, n: number, ns: number): void {
  for (let i = 0; i < n; i++) {
    m.begin(0, 8);
    m.end(0, ns, 8, false);
  }
}

test('rates and interval percentiles come from consecutive samples', async () => {
  const src = source();
  const model = new TopModel(src);
  call(src.metrics.get('exchange')!, 100, 1_000_000);
  model.ingest(await src.sample(), 10_000);
  const first = model.rows.find((r) => r.name === 'exchange')!;
  assert.equal(first.rate, undefined);
  assert.equal(first.uptimeSeconds, 10);
  call(src.metrics.get('exchange')!, 500, 20_000);
  model.ingest(await src.sample(), 12_000);
  const second = model.rows.find((r) => r.name === 'exchange')!;
  assert.equal(second.rate, 250);
  // Only the last interval's 20 µs calls count, not the earlier 1 ms ones.
  assert.ok(second.p99! >= 20_000 && second.p99! < 21_000, `p99 ${second.p99}`);
  assert.deepEqual(second.history, [250]);
  // A new pid (restart or swap) resets the baseline instead of showing a negative rate.
  src.samples[0] = { ...src.samples[0], pid: 999 };
  src.metrics.set('exchange', new ServiceMetrics('exchange', ['ping']));
  model.ingest(await src.sample(), 13_000);
  assert.equal(model.rows.find((r) => r.name === 'exchange')!.rate, undefined);
});

test('sorting, selection, log pane and actions', async () => {
  const src = source();
  const model = new TopModel(src);
  call(src.metrics.get('trader')!, 10, 5_000);
  await model.refresh(1000);
  call(src.metrics.get('trader')!, 10, 5_000);
  await model.refresh(2000);
  assert.deepEqual(
    model.rows.map((r) => r.name),
    ['exchange', 'ledger', 'trader'],
  );
  model.setSort('cpu');
  assert.deepEqual(
    model.rows.map((r) => r.name),
    ['exchange', 'trader', 'ledger'],
  );
  model.setSort('cpu');
  assert.deepEqual(
    model.rows.map((r) => r.name),
    ['ledger', 'trader', 'exchange'],
  );
  model.setSort('restarts');
  assert.deepEqual(
    model.rows.map((r) => r.name),
    ['ledger', 'trader', 'exchange'],
  );
  assert.equal(model.selected, 'exchange');
  model.moveSelection(-1);
  assert.equal(model.selected, 'trader');
  model.moveSelection(-5);
  assert.equal(model.selected, 'ledger');
  model.toggleLogs();
  await model.refresh(3000);
  assert.deepEqual(model.logLines, ['ledger log line 9', 'ledger log line 10', 'ledger log line 11']);
  await model.act('swap');
  assert.equal(model.message, 'swapped ledger to generation 2');
  await model.act('restart');
  assert.match(model.message, /restart ledger failed: no such luck/);
  assert.deepEqual(src.actions, ['swap ledger', 'restart ledger']);

  const lines = screenLines(model, 3000);
  assert.match(lines[1], /RST↓/);
  assert.match(lines.find((l) => l.startsWith('>'))!, /^>ledger\s+backoff/);
  assert.ok(lines.includes('── logs: ledger ──'));
});

test('the ink screen renders rows, selection, sparkline and the log pane', async () => {
  const src = source();
  const model = new TopModel(src);
  model.toggleLogs();
  for (let i = 0; i < 6; i++) {
    call(src.metrics.get('exchange')!, 100 * (i + 1), 3_000);
    await model.refresh(1000 * (i + 1));
  }
  const out = renderToString(h(TopScreen, { model, now: 6000 }), { columns: 160 });
  assert.match(out, /cell top — 3 cells/);
  assert.match(out, /CELL↑\s+STATE\s+PID\s+UPTIME\s+RST\s+TRANSPORT\s+REQ\/S/);
  assert.match(out, />exchange\s+running\s+101\s+6s\s+0\s+shm\s+600\s+\s*[▁▂▃▄▅▆▇█]{5}\s+3\.0µs\s+3\.0µs/);
  assert.match(out, / ledger\s+backoff\s+-\s+-\s+7\s+-\s+-\s+-/);
  assert.match(out, /logs: exchange/);
  assert.match(out, /exchange log line 11/);
});

test('plain mode prints one key=value line per cell per interval', async () => {
  const src = source();
  const out = new PassThrough();
  let text = '';
  out.on('data', (d) => {
    text += d;
  });
  call(src.metrics.get('trader')!, 3, 1_000);
  await runTop({ source: src, stdout: out as unknown as NodeJS.WriteStream, intervalMs: 10, iterations: 2 });
  const lines = text.trim().split('\n');
  assert.equal(lines.length, 6);
  assert.match(lines[0], /cell=exchange state=running pid=101 .* transport=shm .*cpu=50\.0% rss=38\.1M/);
  assert.match(lines[5], /cell=trader .* req_s=0 /);
});

test('the Root-only fields: source label in the title, detail line of the selected cell, plain fields', async () => {
  const source: TopDataSource = {
    label: 'Root',
    sample: async () => [
      {
        name: 'alpha',
        state: 'crashed',
        restarts: 3,
        transport: '-',
        generation: 2,
        sandbox: 'bwrap',
        lastExit: 'signal SIGKILL',
        error: 'readiness check timed out',
      },
    ],
    logTail: async () => [],
    swap: async () => '',
    restart: async () => '',
  };
  const model = new TopModel(source);
  await model.refresh(1_000);
  const lines = screenLines(model, 1_000);
  assert.match(lines[0] as string, /^cell top — 1 cell \(Root\) — /);
  assert.ok(
    lines.includes(' alpha generation 2 · sandbox bwrap · last exit signal SIGKILL · error: readiness check timed out'),
    lines.join('\n'),
  );
  const [plain] = plainLines(model.rows, 1_000);
  assert.match(plain as string, / sandbox=bwrap last_exit="signal SIGKILL"$/);
});
