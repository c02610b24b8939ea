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

/** A tap socket that answers whatever `lines` say: what a cell that does not run Cell's tap can do. */
async function hostileTap(t: { after(fn: () => void): void }, payload: string): Promise<string> {
  const { createServer } = await import('node:net');
  const dir = mkdtempSync(join(tmpdir(), 'cell-tap-hostile-'));
  const path = join(dir, 'tap.sock');
  const server = createServer((s) => {
    s.on('error', () => {});
    s.write(payload);
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return path;
}

test('a hostile tap socket: unreadable greetings and records are E_PROTOCOL naming the cell; escapes are shown, not obeyed', async (t) => {
  const hello = `${JSON.stringify({ hello: { cell: 'evil', service: 'evil', pid: 7 } })}\n`;
  const badGreetings = [
    'not json\n',
    'null\n',
    '[1]\n',
    '{"hello": 5}\n',
    '{"hello": {"cell": "x", "service": "y"}}\n',
  ];
  for (const g of badGreetings) {
    const path = await hostileTap(t, g);
    await assert.rejects(openTap('evil', '', path), (err: unknown) => {
      const e = err as { code?: string; cell?: string; fix?: string };
      assert.equal(e.code, 'E_PROTOCOL', g);
      assert.equal(e.cell, 'evil');
      assert.match(e.fix ?? '', /cell restart evil/);
      return true;
    });
  }
  const badRecords = [
    'garbage\n',
    'null\n',
    '{"dropped": "x"}\n',
    '{"t": 1e300, "method": "m", "id": 1, "ok": true}\n',
  ];
  for (const r of badRecords) {
    const session = await openTap('evil', '', await hostileTap(t, hello + r));
    await assert.rejects(
      (async () => {
        for await (const _ of session.records()) {
        }
      })(),
      (err: unknown) => (err as { code?: string }).code === 'E_PROTOCOL',
      r,
    );
  }
  const record = {
    t: 0,
    method: 'pay\x1b]52;c;ZXZpbA==\x07',
    id: 1,
    ok: false,
    error: 'E_X\r[forged line]\x1b[2J',
    latency_ns: 1000,
    bytesIn: 1,
    bytesOut: 1,
  };
  const session = await openTap('evil', '', await hostileTap(t, `${hello}${JSON.stringify(record)}\n`));
  for await (const r of session.records()) {
    const line = formatTapRecord(r);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the printed line must hold no control character
    assert.doesNotMatch(line, /[\x00-\x08\x0b-\x1f\x7f-\x9f]/, line);
    assert.match(line, /pay\\x1b\]52/);
    break;
  }
  session.close();
});

test('a tap line that never ends is cut off, not buffered without bound', async (t) => {
  const hello = `${JSON.stringify({ hello: { cell: 'evil', service: 'evil', pid: 7 } })}\n`;
  const session = await openTap('evil', '', await hostileTap(t, hello + 'x'.repeat(3 << 20)));
  await assert.rejects(
    (async () => {
      for await (const _ of session.records()) {
      }
    })(),
    (err: unknown) => (err as { code?: string }).code === 'E_PROTOCOL',
  );
});
