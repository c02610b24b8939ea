import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isCellError } from '../../../src/errors/index.js';
import { Synapse, type SynapseClient } from '../../../src/index.js';
import { t as types } from '../../../src/protein/index.js';
import { rpc, service } from '../../../src/service/index.js';
import { makeSandbox, sandboxFlags, useSandboxEnv, waitFor } from '../root/harness.js';

const Counter = service('counter', {
  call: rpc(
    types.struct('Call', { client: types.u32, seq: types.u32 }),
    types.struct('Answer', { client: types.u32, seq: types.u32, version: types.string }),
  ),
});

/** The DNA of one version: tags replies with it and logs what it answered when it exits. */
function counterSource(version: string): string {
  return `import { writeSync } from 'node:fs';
import { Membrane, rpc, service, t } from 'cell';
const version = ${JSON.stringify(version)};
const Counter = service('counter', {
  call: rpc(
    t.struct('Call', { client: t.u32, seq: t.u32 }),
    t.struct('Answer', { client: t.u32, seq: t.u32, version: t.string }),
  ),
});
let served = 0;
process.on('exit', () => {
  writeSync(1, 'SERVED ' + JSON.stringify({ version, served }) + '\\n');
});
await Membrane.bind(Counter, {
  call(input) {
    served++;
    const reply = { client: input.client, seq: input.seq, version };
    // Every fourth call answers on a later turn, so a drain always has something in flight.
    if (input.seq % 4 === 0) return new Promise((r) => setImmediate(() => r(reply)));
    return reply;
  },
}, { drainTimeoutMs: 10_000 });
console.log('counter ' + version + ' ready');
`;
}

const CLIENTS = 8;
const SWAPS = 4;

test('cell swap through the Root under load (shared-memory and socket callers); a version that does not compile is refused', async (t) => {
  const sb = makeSandbox();
  const restoreEnv = useSandboxEnv(sb);
  let clients: SynapseClient<typeof Counter>[] = [];
  let stop = false;
  t.after(async () => {
    stop = true;
    await Promise.all(clients.map((c) => c.$close().catch(() => {})));
    restoreEnv();
    await sb.cleanup();
  });
  const dna = sb.cell('counter', counterSource('v1'));
  sb.manifest({ counter: { dna: './dna/counter' } });
  // In the real sandbox (bubblewrap + cgroup) when this host has one.
  const up = await sb.cli('up', ...sandboxFlags(), '--json');
  assert.equal(up.code, 0, up.stderr);
  const sandbox = (JSON.parse((await sb.cli('status', 'counter', '--json')).stdout) as { sandbox: string }).sandbox;

  const wantsShm = (id: number) => id % 2 === 0;
  clients = await Promise.all(
    Array.from({ length: CLIENTS }, (_, id) => Synapse.grow(Counter, { waitMs: 10_000, shm: wantsShm(id) })),
  );
  for (const [id, c] of clients.entries()) {
    assert.equal(
      c.$synapse.transport?.transport,
      wantsShm(id) ? 'shm' : 'socket',
      JSON.stringify(c.$synapse.transport),
    );
  }
  const failures: string[] = [];
  const tally = new Map<string, number>();
  const carriers = new Map<string, Set<string>>();
  let calls = 0;
  const loops = clients.map(async (client, id) => {
    let last = 0;
    for (let seq = 0; !stop; seq++) {
      const carrier = client.$synapse.transport?.transport;
      try {
        const r = await client.call({ client: id, seq });
        if (r.client !== id || r.seq !== seq) failures.push(`client ${id} seq ${seq} got ${r.client}/${r.seq}`);
        const v = Number(r.version.slice(1));
        if (v < last) failures.push(`client ${id} went back from v${last} to ${r.version}`);
        last = v;
        tally.set(r.version, (tally.get(r.version) ?? 0) + 1);
        if (carrier !== undefined) carriers.set(r.version, (carriers.get(r.version) ?? new Set()).add(carrier));
        calls++;
      } catch (err) {
        failures.push(`client ${id} seq ${seq}: ${isCellError(err) ? err.code : ''} ${(err as Error).message}`);
      }
    }
  });
  const progress = async (n: number) => {
    const target = calls + n;
    await waitFor(`${n} more calls (failures: ${failures.slice(0, 3)})`, () => calls >= target || undefined, 20_000);
  };

  const swapMs: number[] = [];
  for (let v = 2; v <= SWAPS + 1; v++) {
    await progress(300);
    writeFileSync(join(dna, 'index.ts'), counterSource(`v${v}`));
    const swap = await sb.cli('swap', 'counter', '--json');
    assert.equal(swap.code, 0, swap.stderr);
    const r = JSON.parse(swap.stdout) as {
      generation: number;
      previousGeneration: number;
      drainError: string;
      durationMs: number;
    };
    swapMs.push(r.durationMs);
    assert.equal(r.generation, v);
    assert.equal(r.previousGeneration, v - 1);
    assert.equal(r.drainError, '');
  }
  await progress(300);

  // A version that does not compile: refused before anything starts, the running one keeps serving.
  writeFileSync(join(dna, 'index.ts'), `${counterSource('v99')}\nconst broken: number = ;\n`);
  const refused = await sb.cli('swap', 'counter', '--json');
  assert.equal(refused.code, 1, refused.stdout);
  const error = (JSON.parse(refused.stdout) as { error: { code: string; message: string } }).error;
  assert.equal(error.code, 'E_SWAP_FAILED', refused.stdout);
  assert.match(error.message, /did not build; the running version keeps serving/);
  assert.match(refused.stderr, /Expected|Unexpected|error/i);
  await progress(300);
  const status = JSON.parse((await sb.cli('status', 'counter', '--json')).stdout) as {
    state: string;
    generation: number;
  };
  assert.equal(status.state, 'running');
  assert.equal(status.generation, SWAPS + 1);

  stop = true;
  await Promise.all(loops);
  await Promise.all(clients.map((c) => c.$close()));
  clients = [];
  const down = await sb.cli('down');
  assert.equal(down.code, 0, down.stderr);

  assert.deepEqual(failures, []);
  assert.ok(!tally.has('v99'));
  // Every generation logged what it served as it exited; the Root keeps the cell's log.
  const served = new Map<string, number>();
  const reports = await waitFor('every generation to report', async () => {
    const logs = await sb.cli('logs', 'counter', '-n', '5000');
    const lines = logs.stdout.split('\n').filter((l) => l.includes('SERVED '));
    return lines.length === SWAPS + 1 ? lines : undefined;
  });
  for (const line of reports) {
    const r = JSON.parse(line.slice(line.indexOf('SERVED ') + 7)) as { version: string; served: number };
    served.set(r.version, (served.get(r.version) ?? 0) + r.served);
  }
  const sorted = (m: Map<string, number>) => [...m.entries()].sort();
  assert.deepEqual(sorted(served), sorted(tally));
  assert.equal(tally.size, SWAPS + 1);
  for (const [version, seen] of carriers) {
    assert.ok(seen.has('shm') && seen.has('socket'), `${version} answered over ${[...seen]}`);
  }
  t.diagnostic(
    `${calls} calls: ${sorted(tally).map(([v, n]) => `${v}=${n}`)}; cell swap ms (build → old drained): ${swapMs}; sandbox ${sandbox}`,
  );
});
