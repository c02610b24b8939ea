// The `cell` command (bin/cell.js runs this file). Exit codes: 0 ok, 1 failure, 2 usage.
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  realpathSync,
  rmSync,
  statSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CellError, isCellError } from '../errors/index.js';
import { logDir, rootSocketPath, validateCellName } from '../paths/index.js';
import type { Infer } from '../protein/index.js';
import {
  connectRoot,
  isSocket,
  processAlive,
  type RootClient,
  rootPid,
  rootPidPath,
  unwrapRootError,
  withRoot,
} from '../root/client.js';
import type { CellStatusRow } from '../root/contract.js';
import { tailLines } from '../root/log.js';
import { MANIFEST_FILE, manifestPath } from '../root/manifest.js';
import { formatBytes, formatUptime } from '../top/format.js';

type Row = Infer<typeof CellStatusRow>;

class UsageError extends Error {
  constructor(
    message: string,
    readonly usage: string,
  ) {
    super(message);
  }
}

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const err = (s: string) => process.stderr.write(s.endsWith('\n') ? s : `${s}\n`);

export const USAGE = `usage: cell <command> [options]

Cells: small sandboxed services on this host, grown on demand by the Root daemon.

  up [dir] [--no-sandbox]      start the Root (detached) and the cells of dir/cell.json
  status [name] [--json]       a table of the cells: state, pid, uptime, restarts, transport, sandbox, memory
  status --mesh [--json]       every host's cells on the NATS cluster (CELL_NATS, docs/NATS.md)
  down                         stop every cell gracefully, then the Root
  spawn|stop|restart <name>    start, stop or restart one cell (spawn/restart clear a crash-loop mark)
  add <name> <dir> [--entry f] register a cell's DNA (a folder with its TypeScript source)
  swap <name>                  hot-swap a cell to a fresh build without failing a call
  logs <name> [-f] [-n N]      the cell's log (~/.cell/logs/<name>.log); -f follows it
  doctor [--json]              what this host supports: bwrap, user namespaces, cgroups, shared memory
  top | metrics | tap          live dashboard, Prometheus metrics, live call stream (see their --help)
  mesh …                       cells across hosts (init, join, sign, status)

Options: --json (machine-readable output), --help (per command), --version.
Environment: CELL_HOME (~/.cell), CELL_SOCKET_DIR (~/.cell/run), CELL_UMBILICAL (the Root's socket).`;

const HELP: Record<string, string> = {
  up: `usage: cell up [dir|manifest] [--no-sandbox] [--metrics-port <port>] [--json]

Starts the Root daemon (detached; pid in <socket dir>/root.pid, log in ~/.cell/logs/root.log) unless it
runs, loads dir/${MANIFEST_FILE} (default: the current folder's, if any) and starts every cell whose entry
does not say "autostart": false, printing build progress. --no-sandbox runs cells without bubblewrap
(development only; \`cell status\` says so loudly). --metrics-port makes the Root serve every cell's
metrics in the Prometheus text format on http://127.0.0.1:<port>/metrics. Exit 1 when a cell failed to
start.`,
  status: `usage: cell status [name] [--json]
       cell status --mesh [--json]

One row per cell the Root knows: NAME STATE PID UPTIME RESTARTS TRANSPORT SANDBOX MEMORY LAST-EXIT.
States: stopped, building, starting, running, crashed (restart scheduled), crash-loop (5 failures within
10 s; not restarted until \`cell restart\`), stopping. --json prints the rows as JSON. --mesh lists every
host's cells on the NATS cluster instead (through $SRV.INFO; docs/NATS.md).`,
  down: `usage: cell down [--json]

Stops every cell gracefully (SIGTERM: the cell drains in-flight calls; SIGKILL after 5 s), then the
Root. Leaves no process, socket or cgroup behind.`,
  spawn: `usage: cell spawn <name> [--json]

Builds the cell's DNA if it changed and starts it; waits until it answers its health check.`,
  stop: `usage: cell stop <name> [--json]

Stops the cell gracefully; the Root will not restart it until \`cell spawn\`.`,
  restart: `usage: cell restart <name> [--json]

Stops and starts the cell (rebuilding if its source changed) and clears a crash-loop mark.`,
  add: `usage: cell add <name> <dir> [--entry <file>] [--network] [--lan] [--json]

Registers a cell's DNA with the running Root without starting it (\`cell spawn\` or Synapse.grow start it).`,
  swap: `usage: cell swap <name> [--json]

Rebuilds the DNA, starts the new generation beside the old one, waits until it is healthy, publishes
its socket atomically and drains the old one. On any failure the old generation keeps serving.`,
  logs: `usage: cell logs <name> [-f|--follow] [-n <lines>]

Prints the last lines (default 50) of ~/.cell/logs/<name>.log, the cell's stdout and stderr plus the
Root's notes (starts, exits, restarts). -f keeps printing new lines until interrupted.`,
  doctor: `usage: cell doctor [--json]

Checks what this host supports (bubblewrap, user namespaces, cgroups, the shared-memory addon, …) and
what each missing piece disables. Exit 1 when a check fails.`,
};

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

interface Parsed {
  positional: string[];
  flags: Set<string>;
  values: Map<string, string>;
}

/** Flags with a value; everything else starting with - is boolean. */
const VALUE_FLAGS = new Set(['-n', '--lines', '--entry', '--metrics-port']);

function parse(args: string[], allowed: string[], usage: string): Parsed {
  const p: Parsed = { positional: [], flags: new Set(), values: new Map() };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a.startsWith('-') && a !== '-') {
      if (!allowed.includes(a)) throw new UsageError(`unknown option ${a}`, usage);
      if (VALUE_FLAGS.has(a)) {
        const v = args[++i];
        if (v === undefined) throw new UsageError(`${a} needs a value`, usage);
        p.values.set(a, v);
      } else p.flags.add(a);
    } else p.positional.push(a);
  }
  return p;
}

function oneName(p: Parsed, usage: string): string {
  if (p.positional.length !== 1) throw new UsageError('expected exactly one cell name', usage);
  return validateCellName(p.positional[0] as string);
}

// ---- formatting ---------------------------------------------------------------------------------

function pad(s: string, w: number): string {
  return s.length >= w ? s : s + ' '.repeat(w - s.length);
}

export function statusTable(rows: readonly Row[], noSandbox: boolean): string {
  const head = ['NAME', 'STATE', 'PID', 'UPTIME', 'RESTARTS', 'TRANSPORT', 'SANDBOX', 'MEMORY', 'LAST EXIT'];
  const lines = rows.map((r) => [
    r.name,
    r.state,
    r.pid === 0 ? '-' : String(r.pid),
    r.uptimeMs === 0 ? '-' : formatUptime(r.uptimeMs / 1000),
    String(r.restarts),
    r.transport,
    r.sandbox === 'none' ? 'NONE!' : r.sandbox,
    r.memoryBytes === 0 ? '-' : formatBytes(r.memoryBytes),
    r.lastExit === '' ? '-' : r.lastExit,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
  const fmt = (cols: string[]) =>
    cols
      .map((c, i) => pad(c, widths[i] as number))
      .join('  ')
      .trimEnd();
  const text = [fmt(head), ...lines.map(fmt)];
  if (rows.length === 0) text.push('(no cells registered: `cell up` in a folder with a cell.json, or `cell add`)');
  for (const r of rows) if (r.error !== '') text.push(`  ${r.name}: ${r.error.split('\n').join('\n    ')}`);
  if (noSandbox || rows.some((r) => r.sandbox === 'none')) {
    text.push(
      '',
      '!!! WARNING: cells run WITHOUT A SANDBOX (--no-sandbox): no bubblewrap, full access to your files and network.',
    );
  }
  return `${text.join('\n')}\n`;
}

function rowLine(r: Row): string {
  const build = r.build === undefined ? '' : r.build.cached ? ', cached build' : `, built in ${r.build.buildMs} ms`;
  const pid = r.pid === 0 ? '' : ` (pid ${r.pid}${build})`;
  return `${r.name}: ${r.state}${pid}${r.sandbox === 'none' ? ' — NO SANDBOX' : ''}`;
}

// ---- progress -----------------------------------------------------------------------------------

/**
 * Shows what the Root is doing while a long request (spawn, up, restart) runs: polls the states on a
 * second connection and prints each change (building → starting → running) to stderr.
 */
function watchProgress(names: string[] | null, quiet: boolean): () => Promise<void> {
  if (quiet) return async () => {};
  let stopped = false;
  const seen = new Map<string, string>();
  const loop = (async () => {
    let root: RootClient;
    try {
      root = await connectRoot({ timeoutMs: 5000 });
    } catch {
      return;
    }
    try {
      while (!stopped) {
        try {
          const rows =
            names === null
              ? (await root.list(undefined)).cells
              : await Promise.all(names.map((name) => root.status({ name })));
          for (const r of rows) {
            if (seen.get(r.name) !== r.state) {
              seen.set(r.name, r.state);
              if (r.state === 'building') err(`${r.name}: building its DNA…`);
              else if (r.state === 'starting') err(`${r.name}: starting…`);
            }
          }
        } catch {
          // best effort
        }
        await new Promise((res) => setTimeout(res, 150));
      }
    } finally {
      await root.$close().catch(() => {});
    }
  })();
  return async () => {
    stopped = true;
    await loop;
  };
}

// ---- commands -----------------------------------------------------------------------------------

const rootMain = fileURLToPath(new URL('../root/main.js', import.meta.url));

async function rootAnswers(): Promise<boolean> {
  if (!isSocket(rootSocketPath())) return false;
  try {
    const r = await connectRoot({ timeoutMs: 2000 });
    await r.$close();
    return true;
  } catch {
    return false;
  }
}

async function startRootDaemon(noSandbox: boolean, metricsPort: string | undefined): Promise<void> {
  const logPath = join(logDir(), 'root.log');
  mkdirSync(logDir(), { recursive: true, mode: 0o700 });
  const fd = openSync(logPath, 'a', 0o600);
  const before = existsSync(logPath) ? statSync(logPath).size : 0;
  const flags = [
    ...(noSandbox ? ['--no-sandbox'] : []),
    ...(metricsPort === undefined ? [] : ['--metrics-port', metricsPort]),
  ];
  const child = spawn(process.execPath, [rootMain, ...flags], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: process.env,
  });
  closeSync(fd);
  let exited: string | null = null;
  child.once('exit', (code, signal) => {
    exited = signal ?? `exit ${code}`;
  });
  child.unref();
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (exited !== null) break;
    if (await rootAnswers()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  const tail = readFrom(logPath, before).trim();
  if (exited === null && child.pid !== undefined) child.kill('SIGKILL');
  throw new CellError(
    'E_ROOT_UNAVAILABLE',
    `the Root did not start (${exited ?? 'no answer within 15 s'}).${tail === '' ? '' : `\n${tail}`}`,
    { fix: `see ${logPath}.` },
  );
}

function readFrom(path: string, offset: number): string {
  try {
    const size = statSync(path).size;
    if (size <= offset) return '';
    const buf = Buffer.alloc(Math.min(size - offset, 64 * 1024));
    const fd = openSync(path, 'r');
    try {
      readSync(fd, buf, 0, buf.length, size - buf.length);
    } finally {
      closeSync(fd);
    }
    return buf.toString('utf8');
  } catch {
    return '';
  }
}

async function cmdUp(args: string[]): Promise<number> {
  const p = parse(args, ['--no-sandbox', '--json', '--metrics-port'], HELP.up as string);
  const metricsPort = p.values.get('--metrics-port');
  if (metricsPort !== undefined && !/^\d+$/.test(metricsPort)) {
    throw new UsageError(`--metrics-port takes a port number, not '${metricsPort}'`, HELP.up as string);
  }
  if (p.positional.length > 1) throw new UsageError('expected at most one folder or manifest', HELP.up as string);
  const json = p.flags.has('--json');
  const noSandbox = p.flags.has('--no-sandbox');
  let manifest: string | null = null;
  if (p.positional.length === 1) {
    manifest = manifestPath(p.positional[0] as string);
    if (!existsSync(manifest)) {
      throw new CellError('E_INVALID_ARGUMENT', `no manifest at ${manifest}.`, {
        fix: `create ${MANIFEST_FILE} ({ "cells": { "<name>": { "dna": "./dir" } } }), see docs/CLI.md.`,
      });
    }
  } else if (existsSync(manifestPath('.'))) manifest = manifestPath('.');

  if (await rootAnswers()) {
    if (!json) err(`Root already running (${rootSocketPath()}).`);
    if (metricsPort !== undefined)
      err('--metrics-port applies when the Root starts; run `cell down` first to change it.');
  } else {
    await startRootDaemon(noSandbox, metricsPort);
    if (!json) err(`Root started (pid ${rootPid() ?? '?'}, ${rootSocketPath()})${noSandbox ? ' — NO SANDBOX' : ''}.`);
  }
  const stop = watchProgress(null, json);
  let list: Awaited<ReturnType<RootClient['list']>>;
  try {
    list = await withRoot((root) =>
      manifest === null ? root.list(undefined) : root.load({ path: manifest, start: true }),
    );
  } finally {
    await stop();
  }
  if (json) out(JSON.stringify(list));
  else {
    if (list.noSandbox !== noSandbox) {
      err(
        `note: the running Root was started ${list.noSandbox ? 'WITH' : 'without'} --no-sandbox; \`cell down\` and \`cell up\` again to change it.`,
      );
    }
    out(statusTable(list.cells, list.noSandbox));
  }
  return list.cells.some((c) => c.error !== '' && c.state !== 'running') ? 1 : 0;
}

async function cmdStatus(args: string[]): Promise<number> {
  if (args.includes('--mesh')) return cmdStatusMesh(args);
  const p = parse(args, ['--json'], HELP.status as string);
  if (p.positional.length > 1) throw new UsageError('expected at most one cell name', HELP.status as string);
  const json = p.flags.has('--json');
  if (p.positional.length === 1) {
    const name = validateCellName(p.positional[0] as string);
    const row = await withRoot((root) => root.status({ name }));
    out(json ? JSON.stringify(row) : statusTable([row], false));
    return 0;
  }
  const list = await withRoot((root) => root.list(undefined));
  out(json ? JSON.stringify(list) : statusTable(list.cells, list.noSandbox));
  return 0;
}

/** `cell status --mesh`: every host's cells through NATS (src/nats/cli.ts; loads the NATS client only here). */
async function cmdStatusMesh(args: string[]): Promise<number> {
  const { listMeshCells, meshTable, MESH_STATUS_HELP } = await import('../nats/cli.js');
  const p = parse(args, ['--mesh', '--json'], MESH_STATUS_HELP);
  if (p.positional.length > 0) throw new UsageError('--mesh lists every cell; it takes no name', MESH_STATUS_HELP);
  const rows = await listMeshCells();
  out(p.flags.has('--json') ? JSON.stringify({ cells: rows }) : meshTable(rows));
  return 0;
}

async function cmdDown(args: string[]): Promise<number> {
  const p = parse(args, ['--json'], HELP.down as string);
  if (p.positional.length > 0) throw new UsageError('cell down takes no arguments', HELP.down as string);
  const json = p.flags.has('--json');
  if (!(await rootAnswers())) {
    const stale = rootPid();
    if (stale !== null && !processAlive(stale)) rmSync(rootPidPath(), { force: true });
    out(json ? JSON.stringify({ running: false, stopped: 0 }) : 'no Root is running.');
    return 0;
  }
  // The pid to wait for (and kill, if it hangs) is the one the Root reports over its control socket,
  // which lives in a directory only this user can write — never what a pid file says.
  const { pid, stopped } = await withRoot(
    async (root) => {
      const { rootPid: proven } = await root.list(undefined);
      const reply = await root.shutdown(undefined);
      return { pid: proven > 0 ? proven : null, stopped: reply.stopped };
    },
    { timeoutMs: 60_000 },
  );
  // The Root exits right after its reply: wait for the process and its socket to go.
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && ((pid !== null && processAlive(pid)) || isSocket(rootSocketPath()))) {
    await new Promise((r) => setTimeout(r, 25));
  }
  if (pid !== null && processAlive(pid)) {
    process.kill(pid, 'SIGKILL');
    err(`the Root (pid ${pid}) did not exit in 10 s and was killed.`);
  }
  out(json ? JSON.stringify({ running: false, stopped }) : `stopped ${stopped} cell(s) and the Root.`);
  return 0;
}

async function cmdOne(command: 'spawn' | 'stop' | 'restart', args: string[]): Promise<number> {
  const usage = HELP[command] as string;
  const p = parse(args, ['--json'], usage);
  const name = oneName(p, usage);
  const json = p.flags.has('--json');
  const stop = command === 'stop' ? async () => {} : watchProgress([name], json);
  let row: Row;
  try {
    row = await withRoot((root) => (command === 'stop' ? root.stop({ name }) : root[command]({ name, wait: true })));
  } finally {
    await stop();
  }
  out(json ? JSON.stringify(row) : rowLine(row));
  return 0;
}

async function cmdAdd(args: string[]): Promise<number> {
  const usage = HELP.add as string;
  const p = parse(args, ['--json', '--entry', '--network', '--lan'], usage);
  if (p.positional.length !== 2) throw new UsageError('expected a name and a folder', usage);
  const name = validateCellName(p.positional[0] as string);
  // Resolved here: the Root's working directory is not the caller's.
  const dna = resolve(p.positional[1] as string);
  const row = await withRoot((root) =>
    root.add({
      name,
      dna,
      entry: p.values.get('--entry'),
      limitsJson: undefined,
      network: p.flags.has('--network') ? true : undefined,
      lan: p.flags.has('--lan') ? true : undefined,
      autostart: undefined,
      envJson: undefined,
    }),
  );
  out(
    p.flags.has('--json')
      ? JSON.stringify(row)
      : `${name}: registered (DNA ${row.dna}); start it with \`cell spawn ${name}\`.`,
  );
  return 0;
}

async function cmdSwap(args: string[]): Promise<number> {
  const usage = HELP.swap as string;
  const p = parse(args, ['--json'], usage);
  const name = oneName(p, usage);
  const r = await withRoot((root) => root.swap({ name }));
  if (p.flags.has('--json')) out(JSON.stringify(r));
  else {
    out(
      `${name}: generation ${r.previousGeneration} (pid ${r.previousPid}) → ${r.generation} (pid ${r.pid}) in ${r.durationMs} ms`,
    );
    if (r.drainError !== '') err(`warning: the old generation did not drain cleanly: ${r.drainError}`);
  }
  return 0;
}

async function cmdLogs(args: string[]): Promise<number> {
  const usage = HELP.logs as string;
  const p = parse(args, ['-f', '--follow', '-n', '--lines'], usage);
  const name = oneName(p, usage);
  const nText = p.values.get('-n') ?? p.values.get('--lines') ?? '50';
  const n = Number(nText);
  if (!Number.isInteger(n) || n < 0) throw new UsageError('-n needs a whole number of lines', usage);
  const path = join(logDir(), `${name}.log`);
  if (!existsSync(path)) {
    throw new CellError('E_DNA_UNKNOWN', `no log at ${path}.`, {
      cell: name,
      fix: 'the Root writes it once the cell was spawned; check the name with `cell status`.',
    });
  }
  for (const line of tailLines(path, n)) out(line);
  if (!p.flags.has('-f') && !p.flags.has('--follow')) return 0;
  const first = statSync(path);
  let offset = first.size;
  let inode = first.ino;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      let size: number;
      try {
        const st = statSync(path);
        size = st.size;
        // Rotated: the name now holds a new file, read it from its start.
        if (st.ino !== inode || size < offset) {
          inode = st.ino;
          offset = 0;
        }
      } catch {
        return;
      }
      if (size > offset) {
        const fd = openSync(path, 'r');
        try {
          const buf = Buffer.alloc(size - offset);
          readSync(fd, buf, 0, buf.length, offset);
          process.stdout.write(buf);
        } finally {
          closeSync(fd);
        }
        offset = size;
      }
    }, 200);
    const end = () => {
      clearInterval(timer);
      resolve();
    };
    process.once('SIGINT', end);
    process.once('SIGTERM', end);
  });
  return 0;
}

async function cmdDoctor(args: string[]): Promise<number> {
  const p = parse(args, ['--json'], HELP.doctor as string);
  const { diagnose } = await import('../root/engine.js');
  const checks = await diagnose();
  if (p.flags.has('--json')) out(JSON.stringify({ checks }));
  else {
    for (const c of checks) {
      out(`${c.ok ? '✓' : '✗'} ${c.name}: ${c.detail}${c.ok ? '' : `\n    disables: ${c.disables}`}`);
    }
  }
  return checks.every((c) => c.ok) ? 0 : 1;
}

async function rootSource() {
  const { RootTopSource } = await import('../root/top-source.js');
  return RootTopSource.connect();
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined) {
    err(USAGE);
    return 2;
  }
  if (command === '--version' || command === '-V' || command === 'version') {
    out(`cell ${version()}`);
    return 0;
  }
  if (command === '--help' || command === '-h' || command === 'help') {
    const topic = args[0];
    out(topic !== undefined && HELP[topic] !== undefined ? (HELP[topic] as string) : USAGE);
    return 0;
  }
  if ((args.includes('--help') || args.includes('-h')) && HELP[command] !== undefined) {
    out(HELP[command] as string);
    return 0;
  }
  const json = args.includes('--json');
  try {
    switch (command) {
      case 'up':
        return await cmdUp(args);
      case 'status':
      case 'ps':
        return await cmdStatus(args);
      case 'down':
        return await cmdDown(args);
      case 'spawn':
      case 'stop':
      case 'restart':
        return await cmdOne(command, args);
      case 'add':
        return await cmdAdd(args);
      case 'swap':
        return await cmdSwap(args);
      case 'logs':
        return await cmdLogs(args);
      case 'doctor':
        return await cmdDoctor(args);
      case 'top': {
        const { runTopCommand } = await import('../top/command.js');
        return await runTopCommand(args, { rootSource });
      }
      case 'metrics': {
        const { runMetricsCommand } = await import('../metrics/command.js');
        return await runMetricsCommand(args, { rootSource });
      }
      case 'tap': {
        const { runTapCommand } = await import('../tap/command.js');
        return await runTapCommand(args);
      }
      case 'mesh': {
        const { meshCommand } = await import('../axon/cli.js');
        return await meshCommand(args);
      }
      default:
        err(`cell: unknown command '${command}'\n\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    const error = unwrapRootError(e);
    if (error instanceof UsageError) {
      err(`cell: ${error.message}\n\n${error.usage}`);
      return 2;
    }
    if (json) out(JSON.stringify({ error: isCellError(error) ? error.toJSON() : { message: String(error) } }));
    if (isCellError(error)) {
      const fix = error.fix === undefined ? '' : ` Fix: ${error.fix}`;
      const message = fix !== '' && error.message.endsWith(fix) ? error.message.slice(0, -fix.length) : error.message;
      err(`cell: ${message}${error.fix === undefined ? '' : `\n  fix: ${error.fix}`}`);
      if (isCellError(error, 'E_NAME_INVALID')) return 2;
    } else err(`cell: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return 1;
  }
}

/** The process entry: bin/cell.js calls this (through npm's bin links, whatever their names). */
export function run(argv: string[]): void {
  main(argv).then(
    // Pipes and files are written synchronously on Linux, so exiting here loses no output.
    (code) => process.exit(code),
    (e) => {
      err(`cell: ${(e as Error).stack ?? String(e)}`);
      process.exitCode = 1;
    },
  );
}

// `node dist/src/cli/main.js …` runs it too; importing the module (tests, bin/cell.js) does not.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  run(process.argv.slice(2));
}
