// Protocol edges (docs/PROTOCOL.md § 2): what the cell does with each of them, byte for byte.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isCellError } from '../../../src/errors/index.js';
import { BuiltinMethod, decodeHandshake, encodeFrame, FrameType } from '../../../src/frame/index.js';
import { Synapse } from '../../../src/index.js';
import { cellSocketPath } from '../../../src/paths/index.js';
import { EchoService, Id } from './fixtures/contract.js';
import { helloFrame, RawClient, type RunningCell, removeDir, startCell, stopCell, tempSocketDir } from './helpers.js';

const { echo, blob } = EchoService.methods;

describe('wire: protocol edges', () => {
  let dir: string;
  let cell: RunningCell;
  const raws: RawClient[] = [];
  const raw = async () => {
    const r = await RawClient.connect(cellSocketPath('echo'));
    raws.push(r);
    return r;
  };
  const welcomeOf = (r: RawClient) => {
    const w = r.frames.find((f) => f.type === FrameType.WELCOME);
    assert.ok(w !== undefined, 'WELCOME');
    return decodeHandshake(w.payload, 0, w.payload.length);
  };
  const replyTo = (r: RawClient, id: number) => r.until(() => r.frames.some((f) => f.id === id), 5000);

  before(async () => {
    dir = tempSocketDir();
    process.env.CELL_SOCKET_DIR = dir;
    cell = await startCell(dir);
  });
  after(async () => {
    for (const r of raws) r.socket.destroy();
    await stopCell(cell);
    removeDir(dir);
    delete process.env.CELL_SOCKET_DIR;
  });

  test("a reply larger than the caller's announced maximum fails that call only (E_FRAME_TOO_LARGE)", async () => {
    const r = await raw();
    r.hello(EchoService.fingerprint, 'echo', { maxFrame: 64 * 1024 });
    r.request(blob.id, 1, blob.input.encode(1024 * 1024));
    r.request(blob.id, 2, blob.input.encode(64 * 1024 - 12 - 4)); // header + u32 length + bytes: exactly 64 KiB
    r.request(blob.id, 3, blob.input.encode(64 * 1024));
    await replyTo(r, 3);
    const err = r.errorOf(1);
    assert.equal(err?.code, 'E_FRAME_TOO_LARGE');
    assert.match(err?.message ?? '', /caller accepts at most 65536/);
    assert.equal(r.frames.find((f) => f.id === 2)?.type, FrameType.REPLY);
    assert.equal(r.errorOf(3)?.code, 'E_FRAME_TOO_LARGE');
    assert.equal(r.closed, false);
    // A Synapse that accepts less than the cell may send keeps its connection too.
    const small = await Synapse.grow(EchoService, { maxFrameSize: 64 * 1024 });
    try {
      const e = await small.blob(1024 * 1024).catch((x: unknown) => x);
      assert.ok(isCellError(e, 'E_FRAME_TOO_LARGE'), String(e));
      assert.equal((await small.blob(100)).length, 100);
    } finally {
      await small.$close();
    }
  });

  test('request id 0 is refused as a protocol error (ERROR id 0 is about the connection)', async () => {
    const r = await raw();
    r.hello(EchoService.fingerprint);
    r.request(echo.id, 0, echo.input.encode({ id: 5, delay: 0 }));
    await r.until(() => r.closed);
    assert.equal(r.errorOf(0)?.code, 'E_PROTOCOL');
    assert.match(r.errorOf(0)?.message ?? '', /request id 0/);
    assert.equal(
      r.frames.some((f) => f.type === FrameType.REPLY),
      false,
      'the request did not run',
    );
  });

  test('unknown HELLO flag bits and bytes after the service name are ignored', async () => {
    const r = await raw();
    r.hello(EchoService.fingerprint, 'echo', { flags: 0xfffe, trailing: new Uint8Array(32).fill(0xab) });
    r.request(echo.id, 1, echo.input.encode({ id: 41, delay: 0 }));
    await replyTo(r, 1);
    assert.equal(welcomeOf(r).name, 'echo');
    assert.equal(Id.decode(r.frames.find((f) => f.id === 1)!.payload).id, 41);
  });

  test('bytes after a payload: a struct ignores them, a fixed-width input is E_DECODE for that call', async () => {
    const r = await raw();
    r.hello(EchoService.fingerprint);
    r.request(echo.id, 1, Buffer.concat([echo.input.encode({ id: 7, delay: 0 }), Buffer.from([1, 2, 3, 4, 5])]));
    r.request(blob.id, 2, Buffer.concat([blob.input.encode(3), Buffer.from([9])]));
    r.request(echo.id, 3, echo.input.encode({ id: 8, delay: 0 }));
    await replyTo(r, 3);
    assert.equal(Id.decode(r.frames.find((f) => f.id === 1)!.payload).id, 7);
    assert.equal(r.errorOf(2)?.code, 'E_DECODE');
    assert.equal(r.closed, false);
  });

  test('fingerprint 0 with any service name opens an inspection connection; WELCOME names the real service', async () => {
    const r = await raw();
    r.hello(0n, 'not-the-service');
    r.request(BuiltinMethod.HEALTH, 1, new Uint8Array(0));
    r.request(echo.id, 2, echo.input.encode({ id: 1, delay: 0 }));
    await replyTo(r, 2);
    assert.equal(welcomeOf(r).name, 'echo');
    assert.equal(JSON.parse(r.frames.find((f) => f.id === 1)!.payload.toString('utf8')).status, 'ok');
    assert.equal(r.errorOf(2)?.code, 'E_SCHEMA_MISMATCH');
  });

  test('a payload on a built-in call is ignored', async () => {
    const r = await raw();
    r.hello(EchoService.fingerprint);
    r.request(BuiltinMethod.GENOME, 1, Buffer.from('{"please":"ignore me"}'));
    await replyTo(r, 1);
    const reply = r.frames.find((f) => f.id === 1)!;
    assert.equal(reply.type, FrameType.REPLY);
    assert.equal(JSON.parse(reply.payload.toString('utf8')).service, 'echo');
  });

  test('HELLO and a request in one write: WELCOME, then the reply', async () => {
    const r = await raw();
    r.socket.write(
      Buffer.concat([
        helloFrame(EchoService.fingerprint),
        encodeFrame(FrameType.REQUEST, echo.id, 9, echo.input.encode({ id: 99, delay: 0 })),
      ]),
    );
    await replyTo(r, 9);
    assert.deepEqual(
      r.frames.map((f) => f.type),
      [FrameType.WELCOME, FrameType.REPLY],
    );
    assert.equal(Id.decode(r.frames[1]!.payload).id, 99);
  });
});
