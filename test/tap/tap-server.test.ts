import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Codec } from '../../src/protein/types.js';
import type { ServiceDef } from '../../src/service/types.js';
import { formatTapRecord, openTap, TapServer } from '../../src/tap/index.js';

/** A JSON codec satisfying the protein contract, so this test does not depend on the schema compiler. */
function jsonCodec<T>(): Codec<T> {
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  return {
    genome: { kind: 'json' },
    fingerprint: 1n,
    sizeOf: (v) => enc.encode(JSON.stringify(v)).byteLength,
    encode: (v) => enc.encode(JSON.stringify(v)),
    encodeInto: (v, target, offset) => offset + enc.encodeInto(JSON.stringify(v), target.subarray(offset)).written,
    view: (b, o = 0, l = b.byteLength - o) => JSON.parse(dec.decode(b.subarray(o, o + l))),
    decode: (b, o = 0, l = b.byteLength - o) => JSON.parse(dec.decode(b.subarray(o, o + l))),
  };
}

const methods = {
  ping: { id: 0, name: 'ping', input: jsonCodec<null>(), output: jsonCodec<null>() },
  place_order: {
    id: 1,
    name: 'place_order',
    input: jsonCodec<{ amount: number }>(),
    output: jsonCodec<{ ok: boolean }>(),
  },
};
const service: ServiceDef = {
  name: 'market',
  methods,
  byId: [methods.ping, methods.place_order],
  genome: { kind: 'service' },
  fingerprint: 2n,
};

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('a tap client receives filtered, decoded events; no client means inactive', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-tap-'));
  const path = join(dir, 'market.tap.sock');
  const server = new TapServer({ cell: 'market', service, path });
  t.after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const changes: boolean[] = [];
  server.onActiveChange = (a) => changes.push(a);
  await server.listen();
  assert.equal(server.active, false);

  await assert.rejects(openTap('market', 'amount >', path), { code: 'E_INVALID_ARGUMENT', message: /unexpected end/ });
  const session = await openTap('market', 'method == place_order && amount > 100', path);
  assert.equal(session.hello.service, 'market');
  await until(() => server.active, 'the subscriber');
  const enc = new TextEncoder();
  const publish = (method: number, id: number, req: unknown, reply: unknown) => {
    const bytes = enc.encode(JSON.stringify(req));
    server.publish(method, id, server.decodeRequest(method, bytes), reply, undefined, 1500, bytes.byteLength, 9);
  };
  publish(0, 1, null, null);
  publish(1, 2, { amount: 50 }, { ok: true });
  publish(1, 3, { amount: 150 }, { ok: false });
  server.publish(1, 4, { amount: 500 }, undefined, 'E_OVERLOADED', 2_000_000, 12, 0);
  const it = session.records();
  const a = (await it.next()).value;
  const b = (await it.next()).value;
  assert.ok(a && !('dropped' in a) && b && !('dropped' in b));
  assert.deepEqual(
    [a.id, a.method, a.request, a.reply, a.ok, a.latency_ns],
    [3, 'place_order', { amount: 150 }, { ok: false }, true, 1500],
  );
  assert.deepEqual([b.id, b.ok, b.error], [4, false, 'E_OVERLOADED']);
  assert.match(formatTapRecord(a), /^\d\d:\d\d:\d\d\.\d{3} #3 place_order 1\.5µs \{"amount":150\} → \{"ok":false\}$/);
  assert.match(formatTapRecord(b), /#4 place_order 2\.0ms \{"amount":500\} → ERROR E_OVERLOADED$/);
  session.close();
  await until(() => !server.active, 'the subscriber to detach');
  assert.deepEqual(changes, [true, false]);
});
