// Stem cells (docs/SANDBOX.md § Stem cells) under a real Root with bubblewrap and cgroups: cells
// grown from the pool stay apart, keep their own limits and identity, inherit nothing from an earlier
// holder; a stem that dies while waiting is replaced; `cell down` leaves nothing; CELL_STEM_CELLS=0
// starts every cell on its own.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Synapse } from '../../../src/index.js';
import { t } from '../../../src/protein/index.js';
import { rpc, service } from '../../../src/service/index.js';
import {
  canSandbox,
  cellCgroupsOf,
  makeSandbox,
  processesMentioning,
  type Sandbox,
  useSandboxEnv,
  waitFor,
} from './harness.js';

const skip = canSandbox() ? false : 'needs bubblewrap and writable cgroups';

/** A cell that reports what it can see and do from inside its sandbox. */
function probeCell(name: string): string {
  return `import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Membrane, rpc, service, t } from 'cell';
const Svc = service(${JSON.stringify(name)}, { look: rpc(t.string, t.string) });
const attempt = (fn) => { try { fn(); return 'ok'; } catch (e) { return e.code ?? String(e); } };
await Membrane.bind(Svc, {
  look: (other) => {
    const boot = globalThis[Symbol.for('cell.boot')];
    const run = process.env.CELL_SOCKET_DIR;
    const pids = readdirSync('/proc').filter((e) => /^\\d+$/.test(e));
    const seen = pids.map((p) => { try { return readFileSync('/proc/' + p + '/environ', 'latin1'); } catch { return ''; } });
    return JSON.stringify({
      name: process.env.CELL_NAME,
      key: createHash('sha256').update(boot.identity.key).digest('hex'),
      writeOwn: attempt(() => writeFileSync(run + '/' + process.env.CELL_NAME + '/probe', 'x')),
      writeOther: attempt(() => writeFileSync(run + '/' + other + '/probe', 'x')),
      writeRun: attempt(() => writeFileSync(run + '/probe', 'x')),
      otherTap: existsSync(process.env.CELL_TAP_PATH.replace(/[^/]+\\/tap\\.sock$/, other)),
      pids: pids.length,
      seesOther: seen.some((e) => e.includes('CELL_NAME=' + other)),
      tmpMarker: attempt(() => readFileSync('/tmp/marker')),
      markTmp: attempt(() => writeFileSync('/tmp/marker', 'earlier holder')),
    });
  },
});
`;
}

const contract = (name: string) => service(name, { look: rpc(t.string, t.string) });

interface Look {
  name: string;
  key: string;
  writeOwn: string;
  writeOther: string;
  writeRun: string;
  otherTap: boolean;
  pids: number;
  seesOther: boolean;
  tmpMarker: string;
  markTmp: string;
}

interface StemState {
  ready: number;
  starting: number;
  off: string;
}

async function stemState(sb: Sandbox): Promise<StemState | undefined> {
  const r = await sb.cli('status', '--json');
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { stemCells?: StemState }).stemCells;
}

/**
 * Node processes of this test's Root started with `--stem` that no cell took yet: an adopted stem
 * keeps its command line, so those in the cgroup of a running cell's process are left out.
 */
async function waitingStems(sb: Sandbox): Promise<number[]> {
  const r = await sb.cli('status', '--json');
  const rows = (JSON.parse(r.stdout) as { cells: { pid: number }[] }).cells;
  const taken = new Set(rows.filter((c) => c.pid > 0).map((c) => cgroupText(c.pid)));
  return processesMentioning(sb.dir).filter((pid) => {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
      return cmd[0] === process.execPath && cmd.includes('--stem') && !taken.has(cgroupText(pid));
    } catch {
      return false;
    }
  });
}

function cgroupText(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return `gone ${pid}`;
  }
}

function slotsLeft(sb: Sandbox): string[] {
  const home = sb.env.CELL_HOME as string;
  const dirs = [sb.env.CELL_SOCKET_DIR as string, join(home, 'cells'), join(home, 'root', 'stems')];
  return dirs.flatMap((d) => (existsSync(d) ? readdirSync(d).filter((e) => /^\.stem-|^[0-9a-f]{12}$/.test(e)) : []));
}

test('cells grown from stem cells are isolated, limited, fresh; dead stems are replaced; down leaves nothing', {
  skip,
}, async (t0) => {
  const sb = makeSandbox();
  const restoreEnv = useSandboxEnv(sb);
  t0.after(async () => {
    restoreEnv();
    await sb.cleanup();
  });
  sb.cell('alpha', probeCell('alpha'));
  sb.cell('beta', probeCell('beta'));
  sb.manifest({
    alpha: { dna: './dna/alpha', autostart: false, limits: { memory: '96M', pids: 64 } },
    beta: { dna: './dna/beta', autostart: false },
  });
  const up = await sb.cliWith({ CELL_STEM_CELLS: '2' }, 'up', sb.dir);
  assert.equal(up.code, 0, up.stderr);
  await waitFor('two stem cells waiting', async () => (await stemState(sb))?.ready === 2, 60_000);
  const firstStems = await waitingStems(sb);
  assert.equal(firstStems.length, 2, 'two waiting stem processes');

  const alpha = await Synapse.grow(contract('alpha'), { waitMs: 30_000 });
  const beta = await Synapse.grow(contract('beta'), { waitMs: 30_000 });
  t0.after(() => Promise.all([alpha.$close(), beta.$close()]));
  const a = JSON.parse(await alpha.look('beta')) as Look;
  const b = JSON.parse(await beta.look('alpha')) as Look;
  const log = (n: string) => readFileSync(join(sb.env.CELL_HOME as string, 'logs', `${n}.log`), 'utf8');
  assert.match(log('alpha'), /started generation 1 \(bubblewrap pid \d+, sandbox bwrap, stem cell\)/);
  assert.match(log('beta'), /started generation 1 \(bubblewrap pid \d+, sandbox bwrap, stem cell\)/);
  for (const [me, other] of [
    [a, 'beta'],
    [b, 'alpha'],
  ] as const) {
    assert.equal(me.writeOwn, 'ok', `${me.name} writes its own run dir`);
    assert.equal(me.writeOther, 'EROFS', `${me.name} cannot write ${other}'s run dir`);
    assert.equal(me.writeRun, 'EROFS', `${me.name} cannot write the rendezvous dir`);
    assert.equal(me.otherTap, false, `${me.name} does not see ${other}'s private dir`);
    assert.equal(me.seesOther, false, `${me.name} sees no process of ${other}`);
    assert.ok(me.pids <= 3, `${me.name} sees only its own processes (${me.pids})`);
    assert.equal(me.tmpMarker, 'ENOENT', 'a stem starts with an empty /tmp');
  }
  assert.equal(a.name, 'alpha');
  assert.equal(b.name, 'beta');
  assert.notEqual(a.key, b.key, 'each cell holds its own identity key');

  // alpha's manifest limits replaced the stem's defaults before its code ran.
  const alphaRow = JSON.parse((await sb.cli('status', 'alpha', '--json')).stdout) as { pid: number };
  const mem = cellCgroupsOf(alphaRow.pid).find((d) => existsSync(join(d, 'memory.limit_in_bytes')));
  if (mem !== undefined) {
    assert.equal(readFileSync(join(mem, 'memory.limit_in_bytes'), 'utf8').trim(), String(96 * 1024 * 1024));
  }
  const pidsDir = cellCgroupsOf(alphaRow.pid).find((d) => existsSync(join(d, 'pids.max')));
  if (pidsDir !== undefined) assert.equal(readFileSync(join(pidsDir, 'pids.max'), 'utf8').trim(), '64');

  // A stem is used once: the next alpha is another process, with nothing of the first one's /tmp.
  await waitFor('the pool refilled', async () => (await stemState(sb))?.ready === 2, 60_000);
  assert.equal((await sb.cli('stop', 'alpha')).code, 0);
  const again = await Synapse.grow(contract('alpha'), { waitMs: 30_000 });
  t0.after(() => again.$close());
  const a2 = JSON.parse(await again.look('beta')) as Look;
  assert.equal(a2.tmpMarker, 'ENOENT', 'nothing of the earlier holder');
  assert.notEqual(a2.key, a.key, 'a new generation, a new identity key');
  assert.match(log('alpha'), /started generation 2 \(bubblewrap pid \d+, sandbox bwrap, stem cell\)/);

  // A stem that dies while waiting is replaced.
  await waitFor('the pool refilled', async () => (await stemState(sb))?.ready === 2, 60_000);
  const before = await waitingStems(sb);
  assert.equal(before.length, 2);
  process.kill(before[0] as number, 'SIGKILL');
  await waitFor(
    'a replacement stem',
    async () => {
      const now = await waitingStems(sb);
      return now.length === 2 && !now.includes(before[0] as number) && (await stemState(sb))?.ready === 2;
    },
    60_000,
  );
  const stemCgroups = (await waitingStems(sb)).flatMap((pid) => cellCgroupsOf(pid));
  assert.ok(stemCgroups.length > 0, 'stems run in cgroups of their own');
  const grown = await Synapse.grow(contract('beta'), { waitMs: 30_000 });
  assert.equal(JSON.parse(await grown.look('alpha')).name, 'beta');
  await grown.$close();

  // `cell down`: no stem process, cgroup or slot is left.
  await Promise.all([alpha.$close(), beta.$close(), again.$close()]);
  const down = await sb.cli('down');
  assert.equal(down.code, 0, down.stderr);
  await waitFor('every process gone', () => processesMentioning(sb.dir).length === 0);
  assert.deepEqual(
    stemCgroups.filter((d) => existsSync(d)),
    [],
    'stem cgroups removed',
  );
  assert.deepEqual(slotsLeft(sb), [], 'stem slots removed');
});

test('CELL_STEM_CELLS=0 turns the pool off: cells start their own sandbox as before', { skip }, async (t0) => {
  const sb = makeSandbox();
  const restoreEnv = useSandboxEnv(sb);
  t0.after(async () => {
    restoreEnv();
    await sb.cleanup();
  });
  sb.cell('alpha', probeCell('alpha'));
  sb.manifest({ alpha: { dna: './dna/alpha', autostart: false } });
  const up = await sb.cliWith({ CELL_STEM_CELLS: '0' }, 'up', sb.dir);
  assert.equal(up.code, 0, up.stderr);
  assert.equal(await stemState(sb), undefined);
  const alpha = await Synapse.grow(contract('alpha'), { waitMs: 30_000 });
  t0.after(() => alpha.$close());
  const a = JSON.parse(await alpha.look('beta')) as Look;
  assert.equal(a.writeOwn, 'ok');
  assert.equal(a.writeRun, 'EROFS');
  const log = readFileSync(join(sb.env.CELL_HOME as string, 'logs', 'alpha.log'), 'utf8');
  assert.match(log, /started generation 1 \(bubblewrap pid \d+, sandbox bwrap\)/);
  assert.doesNotMatch(log, /stem cell/);
  assert.deepEqual(await waitingStems(sb), []);
  assert.deepEqual(slotsLeft(sb), []);
});
