import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { isCellError } from '../../../src/errors/index.js';
import { Synapse, unixConnector } from '../../../src/index.js';
import { t } from '../../../src/protein/index.js';
import { RootService } from '../../../src/root/contract.js';
import {
  cellCgroupsOf,
  echoCell,
  echoContract,
  makeSandbox,
  processesMentioning,
  useSandboxEnv,
  waitFor,
} from './harness.js';

interface Row {
  name: string;
  state: string;
  pid: number;
  sandbox: string;
  transport: string;
  generation: number;
  error: string;
}

test('cell up, status, grow on demand through the Root, unknown names, malformed requests, swap, cell down', async (t0) => {
  const sb = makeSandbox();
  const restoreEnv = useSandboxEnv(sb);
  t0.after(async () => {
    restoreEnv();
    await sb.cleanup();
  });
  sb.cell('echo', echoCell('echo'));
  sb.cell('adder', echoCell('adder'));
  sb.manifest({ echo: { dna: './dna/echo' }, adder: { dna: './dna/adder', autostart: false } });

  const up = await sb.cli('up', sb.dir, '--no-sandbox');
  assert.equal(up.code, 0, up.stderr);
  assert.match(up.stdout, /echo\s+running/);
  assert.match(up.stdout, /adder\s+stopped/);
  assert.match(up.stdout, /WITHOUT A SANDBOX/);
  const umbilical = join(sb.env.CELL_HOME as string, 'root', 'mitosis.sock');
  assert.equal(statSync(umbilical).mode & 0o777, 0o600);

  const status = await sb.cli('status', '--json');
  assert.equal(status.code, 0, status.stderr);
  const list = JSON.parse(status.stdout) as { cells: Row[]; noSandbox: boolean };
  assert.equal(list.noSandbox, true);
  const echo = list.cells.find((c) => c.name === 'echo');
  assert.equal(echo?.state, 'running');
  assert.equal(echo?.sandbox, 'none');
  assert.ok((echo?.pid ?? 0) > 0);
  assert.equal(list.cells.find((c) => c.name === 'adder')?.state, 'stopped');

  // A second `cell up` finds the Root running and does not start another.
  const again = await sb.cli('up', sb.dir, '--no-sandbox');
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /already running/);

  // Registered but not running: Synapse.grow asks the Root (order 200), which builds and starts it.
  assert.equal(existsSync(join(sb.env.CELL_SOCKET_DIR as string, 'adder', 'adder.sock')), false);
  const adder = await Synapse.grow(echoContract('adder'), { waitMs: 20_000 });
  t0.after(() => adder.$close());
  assert.equal(await adder.add({ a: 2, b: 40 }), 42);
  assert.equal(await adder.echo('hi'), 'adder:hi');
  const adderRow = JSON.parse((await sb.cli('status', 'adder', '--json')).stdout) as Row;
  assert.equal(adderRow.state, 'running');

  // Unknown names: the CLI says so with the fix; grow reports not found and how to start/register it.
  const unknown = await sb.cli('spawn', 'ghost');
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /^cell: cell 'ghost': no DNA is registered/m);
  assert.match(unknown.stderr, /fix: register it: `cell add ghost <dir>`/);
  await assert.rejects(Synapse.grow(echoContract('ghost'), { waitMs: 300 }), (err) => {
    assert.ok(isCellError(err, 'E_CELL_NOT_FOUND'), String(err));
    assert.match((err as Error).message, /root spawn: nothing/);
    return true;
  });
  const invalid = await sb.cli('spawn', '../etc');
  assert.equal(invalid.code, 2);
  assert.match(invalid.stderr, /invalid cell name/);

  // Malformed traffic on the umbilical socket: fixed cases (text, an oversized frame header, a half
  // frame) and seeded random ones, some starting with a plausible frame length.
  const seed = Number(process.env.CELL_TEST_SEED ?? Date.now() % 1_000_000);
  let x = seed || 1;
  const rand = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
  const junks = [
    Buffer.from('definitely not a frame, just bytes \u0000\u00ff'),
    Buffer.from([0xff, 0xff, 0xff, 0x7f, 1, 2, 3]),
    Buffer.from([16, 0, 0, 0, 1]),
  ];
  for (let i = 0; i < 40; i++) {
    const b = Buffer.alloc(1 + Math.floor(rand() * 300));
    for (let j = 0; j < b.length; j++) b[j] = Math.floor(rand() * 256);
    if (i % 2 === 0 && b.length >= 4) b.writeUInt32LE(Math.floor(rand() * 64), 0);
    junks.push(b);
  }
  t0.diagnostic(`malformed-traffic seed ${seed} (CELL_TEST_SEED to replay)`);
  for (const junk of junks) {
    await new Promise<void>((resolve) => {
      const s = connect(umbilical);
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.on('connect', () => {
        s.write(junk);
        setTimeout(() => s.destroy(), 20);
      });
    });
  }
  // A real connection calling a method the Root does not have, and a request with a hostile name.
  const inspect = await Synapse.grow(RootService, {
    name: 'mitosis',
    waitMs: 0,
    inspectOnly: true,
    resolvers: [{ name: 'u', order: 0, resolve: () => unixConnector(umbilical) }],
  });
  await assert.rejects(
    inspect.$synapse.call({ id: 77, name: 'bogus', input: t.unit, output: t.unit }, undefined),
    (err) => isCellError(err),
  );
  await inspect.$close();
  const root = await Synapse.grow(RootService, {
    name: 'mitosis',
    waitMs: 0,
    resolvers: [{ name: 'u', order: 0, resolve: () => unixConnector(umbilical) }],
  });
  await assert.rejects(root.spawn({ name: '../../etc/passwd', wait: true }), (err) =>
    isCellError(err, 'E_NAME_INVALID'),
  );
  await assert.rejects(root.add({ name: 'x', dna: '' } as never), (err) => isCellError(err));
  await assert.rejects(root.load({ path: '/dev/zero', start: true }), (err) => isCellError(err, 'E_INVALID_ARGUMENT'));
  await assert.rejects(root.logs({ name: 'echo/../..', lines: 1e9 }), (err) => isCellError(err, 'E_NAME_INVALID'));
  assert.ok((await root.logs({ name: 'echo', lines: 1e9 })).lines.length > 0);
  // Still serving after all of it.
  assert.equal((await root.list(undefined)).cells.length, 2);
  const rootLog = readFileSync(join(sb.env.CELL_HOME as string, 'logs', 'root.log'), 'utf8');
  assert.doesNotMatch(rootLog, /uncaught|unhandled/);
  await root.$close();

  // Hot swap through the CLI: a new generation serves, the caller's Synapse keeps working.
  const echoClient = await Synapse.grow(echoContract('echo'), { waitMs: 5000 });
  t0.after(() => echoClient.$close());
  assert.equal(await echoClient.echo('a'), 'echo:a');
  const swap = await sb.cli('swap', 'echo', '--json');
  assert.equal(swap.code, 0, swap.stderr);
  const swapped = JSON.parse(swap.stdout) as {
    generation: number;
    previousGeneration: number;
    pid: number;
    previousPid: number;
  };
  assert.equal(swapped.generation, swapped.previousGeneration + 1);
  assert.notEqual(swapped.pid, swapped.previousPid);
  assert.equal(await echoClient.echo('b'), 'echo:b');
  const afterSwap = JSON.parse((await sb.cli('status', 'echo', '--json')).stdout) as Row;
  assert.equal(afterSwap.generation, swapped.generation);
  // Failed swaps leave the running generation serving and say why: a compile error, then a new
  // version that dies while starting.
  const echoDir = join(sb.dir, 'dna', 'echo');
  writeFileSync(join(echoDir, 'index.ts'), 'const x: number = ;\n');
  const badBuild = await sb.cli('swap', 'echo');
  assert.equal(badBuild.code, 1);
  assert.match(badBuild.stderr, /did not build; the running version keeps serving/);
  assert.match(badBuild.stderr, /index\.ts:1:/);
  assert.equal(await echoClient.echo('c'), 'echo:c');
  writeFileSync(join(echoDir, 'index.ts'), 'console.log("new version gives up"); process.exit(7);\n');
  const badStart = await sb.cli('swap', 'echo');
  assert.equal(badStart.code, 1);
  assert.match(badStart.stderr, /failed its readiness check; the running version keeps serving/);
  assert.match(badStart.stderr, /new version gives up/);
  assert.equal(await echoClient.echo('d'), 'echo:d');
  const kept = JSON.parse((await sb.cli('status', 'echo', '--json')).stdout) as Row;
  assert.equal(kept.state, 'running');
  assert.equal(kept.generation, swapped.generation);
  writeFileSync(join(echoDir, 'index.ts'), echoCell('echo'));
  await echoClient.$close();
  await adder.$close();

  // Down: every process of this test gone, no socket or lock left, no pid file.
  const pidsBefore = processesMentioning(sb.dir);
  assert.ok(pidsBefore.length >= 3, `expected the Root and two cells, found ${pidsBefore.length}`);
  const cgroups = pidsBefore.flatMap(cellCgroupsOf);
  const down = await sb.cli('down');
  assert.equal(down.code, 0, down.stderr);
  assert.match(down.stdout, /stopped 2 cell\(s\) and the Root/);
  await waitFor('every process to exit', () => processesMentioning(sb.dir).length === 0 || undefined, 10_000);
  assert.deepEqual(
    cgroups.filter((d) => existsSync(d)),
    [],
    'cgroups left behind',
  );
  const left = readdirSync(sb.env.CELL_SOCKET_DIR as string);
  assert.deepEqual(left, [], `left behind: ${left.join(', ')}`);
  const downAgain = await sb.cli('down');
  assert.equal(downAgain.code, 0);
  assert.match(downAgain.stdout, /no Root is running/);

  // Registrations outlive the Root: a new one (started where there is no manifest) knows both cells.
  const upBare = await sb.cliAt(join(sb.dir, 'dna'), 'up', '--no-sandbox', '--json');
  assert.equal(upBare.code, 0, upBare.stderr);
  const restored = JSON.parse(upBare.stdout) as { cells: Row[] };
  assert.deepEqual(
    restored.cells.map((c) => [c.name, c.state]),
    [
      ['adder', 'stopped'],
      ['echo', 'stopped'],
    ],
  );
  assert.equal((await sb.cli('down')).code, 0);
});

test('a host that cannot sandbox: the Root refuses to start cells, says why and how to fix it', async (t) => {
  const sb = makeSandbox();
  sb.env.CELL_BWRAP = join(sb.dir, 'no-such-bwrap');
  t.after(() => sb.cleanup());
  sb.cell('echo', echoCell('echo'));
  sb.manifest({ echo: { dna: './dna/echo' } });
  const up = await sb.cli('up', '--json');
  assert.equal(up.code, 1, up.stderr);
  const row = (JSON.parse(up.stdout) as { cells: Row[] }).cells[0] as Row;
  assert.equal(row.state, 'stopped');
  assert.match(row.error, /cannot be sandboxed/);
  const spawn = await sb.cli('spawn', 'echo');
  assert.equal(spawn.code, 1);
  assert.match(spawn.stderr, /^cell: cell 'echo': cannot be sandboxed/m);
  assert.match(spawn.stderr, /fix: .*--no-sandbox/);
  assert.equal(existsSync(join(sb.env.CELL_SOCKET_DIR as string, 'echo', 'echo.sock')), false);
});

test('a Root killed with SIGKILL takes its unsandboxed cells with it (they watch their parent)', async (t) => {
  const sb = makeSandbox();
  t.after(() => sb.cleanup());
  sb.cell('orphan', echoCell('orphan'));
  sb.manifest({ orphan: { dna: './dna/orphan' } });
  const up = await sb.cli('up', '--no-sandbox', '--json');
  assert.equal(up.code, 0, up.stderr);
  const row = (JSON.parse(up.stdout) as { cells: Row[] }).cells[0] as Row;
  assert.equal(row.state, 'running');
  assert.equal(row.sandbox, 'none');
  const cellPid = row.pid;
  const rootPid = Number(readFileSync(join(sb.env.CELL_HOME as string, 'root', 'root.pid'), 'utf8'));
  assert.ok(cellPid > 0 && rootPid > 0);
  process.kill(rootPid, 'SIGKILL');
  // The cell notices within its 500 ms check, drains (no calls) and exits; its socket goes with it.
  const gone = () => {
    try {
      // A zombie counts: whoever adopted it may not have reaped it yet.
      return / Z /.test(readFileSync(`/proc/${cellPid}/stat`, 'latin1')) || undefined;
    } catch {
      return true;
    }
  };
  await waitFor('the orphaned cell to exit', gone, 10_000);
  assert.equal(existsSync(join(sb.env.CELL_SOCKET_DIR as string, 'orphan', 'orphan.sock')), false);
});
