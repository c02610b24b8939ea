import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { generationSocketPath, type SwapPhase, type SwapSteps, swapGenerations } from '../../src/swap/index.js';

/** A "generation" here is a real Unix-socket server in this process that answers with its number. */
interface Gen {
  generation: number;
  pid: number;
  server: Server;
  sockets: Set<Socket>;
}

function serve(generation: number, path: string): Promise<Gen> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('data', () => s.write(`gen${generation}\n`));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve({ generation, pid: process.pid, server, sockets }));
  });
}

function ask(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = createConnection(path);
    c.once('error', reject);
    c.once('data', (d) => {
      resolve(d.toString().trim());
      c.destroy();
    });
    c.write('?');
  });
}

function steps(overrides: Partial<SwapSteps<Gen>> = {}): SwapSteps<Gen> {
  return {
    build: async () => {},
    start: (g, path) => serve(g, path),
    ready: async (_p, path) => {
      await ask(path);
    },
    drain: (p) =>
      new Promise<void>((resolve) => {
        for (const s of p.sockets) s.end();
        p.server.close(() => resolve());
      }),
    discard: (p) => new Promise<void>((resolve) => p.server.close(() => resolve())),
    ...overrides,
  };
}

test('generations bind unique paths; renames keep the public path alive across closes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-swap-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pub = join(dir, 'market.sock');
  assert.equal(generationSocketPath(pub, 3), join(dir, 'market.3.sock'));

  let current = (
    await swapGenerations({ cell: 'market', publicPath: pub, current: undefined, nextGeneration: 1, steps: steps() })
  ).next;
  assert.equal(await ask(pub), 'gen1');
  // A client connected to gen1 before the swap stays with it until it drains.
  const early = createConnection(pub);
  await new Promise((r) => early.once('connect', r));
  t.after(() => early.destroy());

  for (let g = 2; g <= 4; g++) {
    const phases: SwapPhase[] = [];
    const r = await swapGenerations({
      cell: 'market',
      publicPath: pub,
      current,
      nextGeneration: g,
      steps: steps(),
      onPhase: (p) => phases.push(p),
    });
    assert.deepEqual(phases, ['building', 'starting', 'waiting-ready', 'published', 'draining', 'done']);
    assert.equal(r.previous?.generation, g - 1);
    // The old generation closed (unlinking only its own, already renamed, path): public still works.
    assert.ok(existsSync(pub));
    assert.equal(await ask(pub), `gen${g}`);
    // The new generation keeps its own name; the drained one's is gone with it.
    assert.ok(existsSync(generationSocketPath(pub, g)));
    assert.ok(!existsSync(generationSocketPath(pub, g - 1)));
    current = r.next;
  }
  t.after(() => current.server.close());
});

test('a failed build, start or readiness check leaves the old generation serving', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-swap-'));
  const pub = join(dir, 'market.sock');
  const first = (
    await swapGenerations({ cell: 'market', publicPath: pub, current: undefined, nextGeneration: 1, steps: steps() })
  ).next;
  t.after(() => {
    first.server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  await assert.rejects(
    swapGenerations({
      cell: 'market',
      publicPath: pub,
      current: first,
      nextGeneration: 2,
      steps: steps({ build: async () => Promise.reject(new Error('syntax error in dna/index.ts')) }),
    }),
    { code: 'E_SWAP_FAILED', message: /did not build.*syntax error/ },
  );
  await assert.rejects(
    swapGenerations({
      cell: 'market',
      publicPath: pub,
      current: first,
      nextGeneration: 2,
      steps: steps({ start: async () => Promise.reject(new Error('spawn ENOENT')) }),
    }),
    { code: 'E_SWAP_FAILED', message: /did not start/ },
  );
  let discarded = 0;
  await assert.rejects(
    swapGenerations({
      cell: 'market',
      publicPath: pub,
      current: first,
      nextGeneration: 2,
      steps: steps({
        ready: async () => Promise.reject(new Error('health said: not ready')),
        discard: (p) => {
          discarded++;
          return new Promise<void>((r) => p.server.close(() => r()));
        },
      }),
    }),
    { code: 'E_SWAP_FAILED', message: /readiness check.*not ready/ },
  );
  assert.equal(discarded, 1);
  assert.ok(!existsSync(generationSocketPath(pub, 2)));
  assert.equal(await ask(pub), 'gen1');
});
