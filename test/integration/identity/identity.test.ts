// Root-attested identity end to end: real cell processes, real Unix sockets, a private CELL_HOME,
// socket dir and HOME per test (docs/PROTOCOL.md § 2.3.1, § 3.2).
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isCellError } from '../../../src/errors/index.js';
import {
  decodeHandshake,
  encodeFrame,
  encodeHandshake,
  FrameDecoder,
  FrameType,
  HandshakeFlag,
  PROTOCOL_VERSION,
} from '../../../src/frame/index.js';
import { exportRootPublicKey, issueIdentity, loadOrCreateRootKey } from '../../../src/identity/index.js';
import { Synapse } from '../../../src/index.js';
import { type CellBoot, cellSocketPath, ensurePrivateDir } from '../../../src/paths/index.js';
import { t as types } from '../../../src/protein/index.js';
import { loadNative } from '../../../src/shm/native.js';
import { Bank } from './fixtures/contract.js';

const BANK = fileURLToPath(new URL('./fixtures/bank.js', import.meta.url));
const ENV_KEYS = ['CELL_HOME', 'CELL_SOCKET_DIR', 'HOME', 'CELL_UMBILICAL', 'CELL_LAN', 'CELL_PEER'] as const;

interface Sandbox {
  dir: string;
  home: string;
}

/** A private CELL_HOME, socket dir and HOME for this test process and the cells it starts. */
function sandbox(t: TestContext): Sandbox {
  const dir = mkdtempSync(join(tmpdir(), 'cell-id-'));
  const saved = ENV_KEYS.map((k) => [k, process.env[k]] as const);
  const home = join(dir, 'home');
  process.env.CELL_HOME = home;
  process.env.CELL_SOCKET_DIR = join(dir, 'run');
  process.env.HOME = join(dir, 'user');
  mkdirSync(process.env.HOME);
  process.env.CELL_LAN = '0';
  delete process.env.CELL_UMBILICAL;
  delete process.env.CELL_PEER;
  t.after(() => {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, home };
}

/** Starts fixtures/bank.js in `mode`; resolves with the child once it listens. */
async function startBank(
  t: TestContext,
  mode: string,
  env: Record<string, string> = {},
  boot?: CellBoot,
): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BANK, mode], {
    env: { ...process.env, ...env },
    stdio: boot === undefined ? ['ignore', 'pipe', 'inherit'] : ['ignore', 'pipe', 'inherit', 'pipe'],
  });
  if (boot !== undefined) (child.stdio[3] as NodeJS.WritableStream).end(JSON.stringify(boot));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d) => {
      out += d;
      if (out.includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`bank (${mode}) exited with ${code}`)));
  });
  return child;
}

async function grow(t: TestContext, options: Parameters<typeof Synapse.grow>[1] = {}) {
  const c = await Synapse.grow(Bank, { waitMs: 10_000, ...options });
  t.after(() => c.$close());
  return c;
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

test('a genuine cell: identity verified, shared memory without any token file', async (t) => {
  const sb = sandbox(t);
  await startBank(t, 'honest');
  const c = await grow(t);
  const status = c.$synapse.transport;
  assert.equal(status?.identity, 'verified');
  if (loadNative().addon !== undefined)
    assert.deepEqual(status, { transport: 'shm', shmDeclined: undefined, identity: 'verified' });
  assert.equal(await c.balance('abc'), 300n);
  assert.equal(await c.whoami(undefined), 'honest');
  const key = join(sb.home, 'root', 'identity.key');
  assert.equal(statSync(key).mode & 0o777, 0o600);
  // Caller and cell share this test's HOME, CELL_HOME and socket dir: nothing there is a token.
  assert.deepEqual(
    filesUnder(sb.dir).filter((f) => /token/i.test(f)),
    [],
  );
});

test("a process holding another cell's identity at the victim's socket: E_IDENTITY_MISMATCH at once, not 'not found'", async (t) => {
  sandbox(t);
  await startBank(t, 'mallory');
  const started = Date.now();
  await assert.rejects(Synapse.grow(Bank, { waitMs: 30_000 }), (e: unknown) => {
    assert.ok(isCellError(e, 'E_IDENTITY_MISMATCH'), String(e));
    assert.equal(e.cell, 'bank');
    assert.match(e.message, /^the process answering at \S+bank\.sock \(pid \d+ by its own account\)/);
    assert.match(e.message, /presented a certificate for cell 'mallory'/);
    assert.equal(e.details?.presented, 'mallory');
    assert.match(String(e.fix), /cell spawn bank/);
    return true;
  });
  assert.ok(Date.now() - started < 20_000, 'refused, not waited for as a missing cell');
  // With verification turned off the caller reaches whoever is there, and its status says so.
  const blind = await grow(t, { verifyIdentity: false });
  assert.equal(blind.$synapse.transport?.identity, 'unverified (turned off in the Synapse options)');
  assert.equal(await blind.whoami(undefined), 'mallory');
});

test('an impostor taking over the socket of a cell the caller already used: the reconnecting call fails', async (t) => {
  sandbox(t);
  const honest = await startBank(t, 'honest');
  const c = await grow(t, { waitMs: 20_000 });
  assert.equal(await c.whoami(undefined), 'honest');
  const gone = new Promise((r) => honest.once('exit', r));
  honest.kill('SIGKILL');
  await gone;
  await startBank(t, 'mallory');
  await assert.rejects(
    (async () => {
      // The first call may still meet the dying connection; the reconnect meets the impostor.
      for (let i = 0; i < 3; i++) {
        try {
          await c.whoami(undefined);
        } catch (err) {
          if (isCellError(err, 'E_CONNECTION_LOST')) continue;
          throw err;
        }
        throw new Error('the impostor answered');
      }
    })(),
    (e: unknown) => isCellError(e, 'E_IDENTITY_MISMATCH') && /certificate for cell 'mallory'/.test(e.message),
  );
});

test('a server that answers WELCOME without attestation is refused; every HELLO carries a fresh challenge', async (t) => {
  sandbox(t);
  const path = cellSocketPath('bank');
  ensurePrivateDir(join(path, '..'));
  const hellos: { flags: number; challenge: string }[] = [];
  const server = createServer((socket: Socket) => {
    const decoder = new FrameDecoder({
      onFrame(type, _f, _m, _id, bytes, start, end) {
        if (type !== FrameType.HELLO) return;
        const h = decodeHandshake(bytes, start, end);
        hellos.push({ flags: h.flags ?? 0, challenge: h.trailer?.toString('hex') ?? '' });
        const welcome = { ...h, flags: 0, trailer: undefined, fingerprint: Bank.fingerprint, maxInFlight: 16, pid: 1 };
        socket.write(encodeFrame(FrameType.WELCOME, 0, 0, encodeHandshake(welcome)));
      },
    });
    socket.on('data', (d: Buffer) => decoder.push(d));
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.after(() => server.close());
  for (let i = 0; i < 2; i++) {
    await assert.rejects(
      Synapse.grow(Bank, { waitMs: 2000 }),
      (e: unknown) => isCellError(e, 'E_IDENTITY_MISMATCH') && /presented no identity/.test(e.message),
    );
  }
  assert.equal(hellos.length, 2);
  for (const h of hellos) {
    assert.equal(h.flags, HandshakeFlag.ATTEST);
    assert.equal(h.challenge.length, 64);
  }
  assert.notEqual(hellos[0]?.challenge, hellos[1]?.challenge);
});

test('a client that sends flags 0 (a HELLO built by hand from PROTOCOL.md) is served unchanged', async (t) => {
  sandbox(t);
  await startBank(t, 'honest');
  const socket = netConnect(cellSocketPath('bank'));
  t.after(() => socket.destroy());
  const name = Buffer.from('bank');
  const hello = Buffer.alloc(12 + 30 + name.length);
  hello.writeUInt32LE(8 + 30 + name.length, 0); // length
  hello[4] = 0x01; // HELLO; flags, method and requestId stay 0
  hello.write('CELL', 12, 'latin1');
  hello.writeUInt16LE(PROTOCOL_VERSION, 16);
  hello.writeUInt16LE(0, 18); // handshake flags: no attestation asked
  hello.writeBigUInt64LE(Bank.fingerprint, 20);
  hello.writeUInt32LE(process.pid, 36);
  hello.writeUInt16LE(name.length, 40);
  name.copy(hello, 42);
  const arg = types.string.encode('abcd');
  const request = Buffer.alloc(12 + arg.length);
  request.writeUInt32LE(8 + arg.length, 0);
  request[4] = 0x03;
  request.writeUInt16LE(Bank.methods.balance.id, 6);
  request.writeUInt32LE(9, 8);
  request.set(arg, 12);
  const frames: { type: number; payload: Buffer; id: number }[] = [];
  const decoder = new FrameDecoder({
    onFrame(type, _f, _m, id, bytes, start, end) {
      frames.push({ type, id, payload: Buffer.from(bytes.subarray(start, end)) });
    },
  });
  const got = new Promise<void>((resolve) => {
    socket.on('data', (d: Buffer) => {
      decoder.push(d);
      if (frames.length >= 2) resolve();
    });
  });
  socket.write(Buffer.concat([hello, request]));
  await got;
  const [welcome, reply] = frames as [(typeof frames)[0], (typeof frames)[0]];
  assert.equal(welcome.type, FrameType.WELCOME);
  assert.equal(welcome.payload.readUInt16LE(6), 0, 'no attestation flag');
  assert.equal(welcome.payload.length, 30 + name.length, 'nothing after the name');
  assert.equal(reply.type, FrameType.REPLY);
  assert.equal(reply.id, 9);
  assert.equal(types.u64.decode(reply.payload), 400n);
});

test('a cell given its identity in the boot contract (as the Root does) is accepted', async (t) => {
  const sb = sandbox(t);
  // What the Root does: a fresh identity for this name and generation, and the Root's public key.
  const rootKey = loadOrCreateRootKey();
  const cellHome = join(sb.dir, 'cell-home');
  const boot: CellBoot = {
    name: 'bank',
    generation: 4,
    socketDir: String(process.env.CELL_SOCKET_DIR),
    bindPath: cellSocketPath('bank'),
    tapPath: join(sb.dir, 'bank.tap.sock'),
    inspectPath: join(sb.dir, 'bank.inspect.sock'),
    umbilical: join(sb.dir, 'no-root.sock'),
    lan: false,
    env: {},
    identity: issueIdentity(rootKey, { cell: 'bank', generation: 4 }),
    rootKey: exportRootPublicKey(rootKey),
  };
  // The cell cannot reach the operator's key: a CELL_HOME of its own, which it must not use.
  await startBank(t, 'boot', { CELL_HOME: cellHome }, boot);
  const c = await grow(t);
  assert.equal(c.$synapse.transport?.identity, 'verified');
  assert.equal(await c.whoami(undefined), 'boot');
  assert.equal(existsSync(join(cellHome, 'root', 'identity.key')), false, 'the cell did not issue itself one');
});

test('without a usable Root key the caller skips the check and says why', async (t) => {
  const sb = sandbox(t);
  // The caller's CELL_HOME is a file: no key can be read or made there. (The cell has a home of its own.)
  writeFileSync(sb.home, 'not a directory');
  await startBank(t, 'honest', { CELL_HOME: join(sb.dir, 'cell-home') });
  const c = await grow(t);
  assert.match(String(c.$synapse.transport?.identity), /^unverified \(no Root key to check it with: .*identity\.key/);
  assert.equal(await c.whoami(undefined), 'honest');
});
