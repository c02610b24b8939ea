import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Histogram, parseServiceMetricsSnapshot, ServiceMetrics, totalsOf } from '../../src/metrics/index.js';
import { escapeLabelValue, formatCellMetrics, PrometheusText } from '../../src/observation/index.js';

test('label values and HELP text are escaped', () => {
  assert.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  const text = new PrometheusText()
    .counter('x_total', 'line one\nback\\slash "quoted"', [{ labels: { name: 'we"ird\n' }, value: 3 }])
    .toString();
  assert.equal(
    text,
    '# HELP x_total line one\\nback\\\\slash "quoted"\n# TYPE x_total counter\nx_total{name="we\\"ird\\n"} 3\n',
  );
});

test('invalid names are refused and families are written once', () => {
  assert.throws(() => new PrometheusText().gauge('1bad', 'h', []), { code: 'E_INVALID_ARGUMENT' });
  assert.throws(() => new PrometheusText().gauge('ok', 'h', [{ labels: { 'bad-label': 'v' }, value: 1 }]), {
    code: 'E_INVALID_ARGUMENT',
  });
  const p = new PrometheusText().gauge('g', 'h', []);
  assert.throws(() => p.gauge('g', 'h', []), { code: 'E_INVALID_ARGUMENT' });
  assert.equal(
    new PrometheusText()
      .gauge('g', 'h', [{ value: Number.POSITIVE_INFINITY }])
      .toString()
      .split('\n')[2],
    'g +Inf',
  );
});

test('histograms are cumulative with le labels, +Inf, _sum and _count', () => {
  const h = new Histogram();
  for (const ns of [500, 2_000, 2_000, 40_000, 3_000_000_000]) h.record(ns);
  const text = new PrometheusText()
    .histogram(
      'lat_seconds',
      'latency',
      [{ labels: { method: 'ping' } }].map((s) => ({ ...s, histogram: h })),
      [0.000001, 0.00001, 0.001, 1],
    )
    .toString();
  const lines = text.trim().split('\n');
  assert.deepEqual(lines, [
    '# HELP lat_seconds latency',
    '# TYPE lat_seconds histogram',
    'lat_seconds_bucket{method="ping",le="0.000001"} 1',
    'lat_seconds_bucket{method="ping",le="0.00001"} 3',
    'lat_seconds_bucket{method="ping",le="0.001"} 4',
    'lat_seconds_bucket{method="ping",le="1"} 4',
    'lat_seconds_bucket{method="ping",le="+Inf"} 5',
    `lat_seconds_sum{method="ping"} ${3_000_044_500 / 1e9}`,
    'lat_seconds_count{method="ping"} 5',
  ]);
});

test('ServiceMetrics counts per method and formatCellMetrics exports the Root view', () => {
  const m = new ServiceMetrics('market', ['ping', 'place_order']);
  m.begin(0, 10);
  m.end(0, 1_500, 12, false);
  m.begin(1, 100);
  m.begin(1, 100);
  m.end(1, 80_000, 0, true);
  const snap = parseServiceMetricsSnapshot(JSON.parse(JSON.stringify(m.snapshot())));
  assert.deepEqual(
    snap.methods.map((x) => [x.method, x.requests, x.errors, x.inFlight, x.bytesIn, x.bytesOut, x.latency.count]),
    [
      ['ping', 1, 0, 0, 10, 12, 1],
      ['place_order', 2, 1, 1, 200, 0, 1],
    ],
  );
  const totals = totalsOf(snap);
  assert.equal(totals.requests, 3);
  assert.equal(totals.latency.count, 2);

  const text = formatCellMetrics([
    {
      cell: 'market',
      state: 'running',
      pid: 42,
      restarts: 1,
      uptimeSeconds: 12.5,
      cpuSecondsTotal: 0.25,
      cpuPercent: 3.5,
      rssBytes: 50_000_000,
      methods: snap.methods,
    },
  ]);
  assert.match(text, /^# HELP cell_up /m);
  assert.match(text, /^cell_up\{cell="market",state="running"\} 1$/m);
  assert.match(text, /^cell_requests_total\{cell="market",method="place_order"\} 2$/m);
  assert.match(text, /^cell_request_errors_total\{cell="market",method="place_order"\} 1$/m);
  assert.match(text, /^cell_requests_in_flight\{cell="market",method="place_order"\} 1$/m);
  assert.match(text, /^cell_resident_memory_bytes\{cell="market"\} 50000000$/m);
  assert.match(text, /^cell_request_duration_seconds_bucket\{cell="market",method="ping",le="\+Inf"\} 1$/m);
  assert.match(text, /^cell_request_duration_seconds_count\{cell="market",method="ping"\} 1$/m);
  // Every sample line belongs to a family announced by a TYPE line above it.
  const types = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((x) => x[1]));
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const name = line.split(/[{ ]/)[0].replace(/_(bucket|sum|count)$/, '');
    assert.ok(types.has(name) || types.has(line.split(/[{ ]/)[0]), `no TYPE for ${line}`);
  }
  assert.throws(() => parseServiceMetricsSnapshot({ service: 'x', methods: [{ method: 'a' }] }), { code: 'E_DECODE' });
});
