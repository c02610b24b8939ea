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
import { CellError, formatCellError, isCellError } from '../errors/index.js';
import { visible } from '../terminal/visible.js';
// `cell call` and the other commands grow cells the way a program does: through the Root and the mesh.
import '../runtime.js';
import { logDir, rootSocketPath, validateCellName } from '../paths/index.js';
import type { Infer } from '../protein/index.js';
import {
  type CellStatusRow,
  connectRoot,
  isSocket,
  MANIFEST_FILE,
  manifestPath,
  parseLogLine,
  processAlive,
  type RootClient,
  rootPid,
  rootPidPath,
  tailLines,
  withRoot,
} from '../root/index.js';
import {
  type CommandSpec,
  intOption,
  type OptionSpec,
  parseCommand,
  suggestion,
  UsageError,
  type Values,
} from '../terminal/args.js';
import { colorEnabled, type Paint, paint } from '../terminal/color.js';
import { formatBytes, formatUptime } from '../top/format.js';

type Row = Infer<typeof CellStatusRow>;

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const err = (s: string) => process.stderr.write(s.endsWith('\n') ? s : `${s}\n`);

/** The package's root folder (dist/src/cli → three levels up; src/cli → two). */
function packageRoot(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  for (const up of ['../../..', '../..']) {
    const dir = resolve(here, up);
    if (existsSync(join(dir, 'package.json'))) return dir;
  }
  return resolve(here, '../../..');
}

export const USAGE = `usage: cell <command> [options]

Cells: small sandboxed services on this host, grown on demand by the Root daemon.

Start here
  new <name>                    scaffold a cell: contract, cell, caller, cell.json, tsconfig
  up [dir]                      start the Root (detached) and the cells of dir/cell.json
  call <cell> <method> [json]   call a method from the terminal; prints the reply as JSON
  down                          stop every cell gracefully, then the Root

Cells
  status [name]                 state, pid, uptime, restarts, transport, sandbox, memory
  status --mesh                 every host's cells on the NATS cluster (CELL_NATS, docs/NATS.md)
  spawn|stop|restart <name>     start, stop or restart one cell (spawn/restart clear a crash-loop mark)
  add <name> <dir>              register a cell's DNA (a folder with its TypeScript source)
  rm <name>                     stop a cell and forget its registration
  swap <name>                   hot-swap a cell to a fresh build without failing a call
  logs <name> [-f] [-n N]       the cell's log (~/.cell/logs/<name>.log); -f follows it
  genome <cell>                 a cell's contract: methods, their input and output types, fingerprint

Watching
  top | metrics | tap           live dashboard, Prometheus metrics, live call stream

This host
  doctor                        what this host supports: bwrap, user namespaces, cgroups, shared memory
  startup                       write a systemd user unit that starts the Root at login
  mesh …                        cells across hosts (init, join, sign, status)

Every command takes --help (and --opt=value or --opt value); read commands take --json.
cell --version prints the version, cell --about the credits (ATTRIBUTION).
Exit status: 0 success, 1 failure, 2 usage error (unknown command or option, bad argument).
Environment: CELL_HOME (~/.cell), CELL_SOCKET_DIR (~/.cell/run), CELL_UMBILICAL (the Root's socket),
NO_COLOR (no colour).`;

// ---- formatting ---------------------------------------------------------------------------------

function pad(s: string, w: number): string {
  return s.length >= w ? s : s + ' '.repeat(w - s.length);
}

function stateColor(state: string): Paint | undefined {
  if (state === 'running') return 'green';
  if (state === 'starting' || state === 'building' || state === 'stopping') return 'yellow';
  if (state === 'crashed' || state === 'crash-loop') return 'red';
  return undefined;
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
  const color = colorEnabled(process.stdout);
  const fmt = (cols: string[], header: boolean) =>
    cols
      .map((c, i) => {
        const cell = pad(c, widths[i] as number);
        if (!color || header) return cell;
        const tint = i === 1 ? stateColor(c) : i === 6 && c === 'NONE!' ? 'red' : undefined;
        return tint === undefined ? cell : paint(cell, tint, process.stdout);
      })
      .join('  ')
      .trimEnd();
  const text = [fmt(head, true), ...lines.map((l) => fmt(l, false))];
  if (rows.length === 0) text.push('(no cells registered: `cell up` in a folder with a cell.json, or `cell add`)');
  for (const r of rows) if (r.error !== '') text.push(`  ${r.name}: ${r.error.split('\n').join('\n    ')}`);
  if (noSandbox || rows.some((r) => r.sandbox === 'none')) {
    text.push(
      '',
      paint(
        '!!! WARNING: cells run WITHOUT A SANDBOX (--no-sandbox): no bubblewrap, full access to your files and network.',
        'red',
        process.stdout,
      ),
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

// ---- the Root daemon ----------------------------------------------------------------------------

export const rootMain = fileURLToPath(new URL('../root/main.js', import.meta.url));

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

async function startRootDaemon(noSandbox: boolean, metricsPort: number | undefined): Promise<void> {
  const logPath = join(logDir(), 'root.log');
  mkdirSync(logDir(), { recursive: true, mode: 0o700 });
  const fd = openSync(logPath, 'a', 0o600);
  const before = existsSync(logPath) ? statSync(logPath).size : 0;
  const flags = [
    ...(noSandbox ? ['--no-sandbox'] : []),
    ...(metricsPort === undefined ? [] : ['--metrics-port', String(metricsPort)]),
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

// ---- commands -----------------------------------------------------------------------------------

/** One `cell` command: its help, its options and positionals, and what it does with them. */
interface Command<O extends Record<string, OptionSpec> = Record<string, OptionSpec>> extends CommandSpec<O> {
  run(values: { [K in keyof O]?: unknown }, positionals: string[]): Promise<number>;
}

/** Declares a command with its option types checked against what `run` reads. */
function command<O extends Record<string, OptionSpec>>(
  spec: CommandSpec<O> & {
    run(values: Values<O>, positionals: string[]): Promise<number>;
  },
): Command {
  return spec as unknown as Command;
}

const JSON_OPTION = { json: { type: 'boolean' } } as const;

const up = command({
  usage: `usage: cell up [dir|manifest] [--no-sandbox] [--metrics-port <port>] [--replace] [--json]

Starts the Root daemon (detached; pid in ~/.cell/root/root.pid, log in ~/.cell/logs/root.log) unless it
runs, loads dir/${MANIFEST_FILE} (default: the current folder's, if any) and starts every cell whose entry
does not say "autostart": false, printing build progress. --no-sandbox runs cells without bubblewrap
(development only; \`cell status\` says so loudly). --metrics-port makes the Root serve every cell's
metrics in the Prometheus text format on http://127.0.0.1:<port>/metrics. A cell name registered from
another manifest is refused unless --replace takes it over. Exit 1 when a cell failed to start.`,
  options: {
    'no-sandbox': { type: 'boolean' },
    'metrics-port': { type: 'string' },
    replace: { type: 'boolean' },
    ...JSON_OPTION,
  },
  positionals: [0, 1],
  expects: 'at most one folder or manifest',
  async run(values, positionals) {
    const metricsPort = intOption(values['metrics-port'], '--metrics-port', up.usage, { min: 0, max: 65535 });
    const json = values.json === true;
    const noSandbox = values['no-sandbox'] === true;
    let manifest: string | null = null;
    if (positionals.length === 1) {
      manifest = manifestPath(positionals[0] as string);
      if (!existsSync(manifest)) {
        throw new CellError('E_INVALID_ARGUMENT', `no manifest at ${manifest}.`, {
          fix: `create ${MANIFEST_FILE} ({ "cells": { "<name>": { "dna": "./dir" } } }) or run \`cell new <name>\`; see docs/CLI.md.`,
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
        manifest === null
          ? root.list(undefined)
          : root.load({ path: manifest, start: true, replace: values.replace === true }),
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
  },
});

const status = command({
  usage: `usage: cell status [name] [--json]
       cell status --mesh [--json]

One row per cell the Root knows: NAME STATE PID UPTIME RESTARTS TRANSPORT SANDBOX MEMORY LAST-EXIT.
States: stopped, building, starting, running, crashed (restart scheduled), crash-loop (its restart policy's
failures: 5 within 10 s or in a row by default; not restarted until \`cell restart\`), stopping. --json prints the rows as JSON. --mesh lists every
host's cells on the NATS cluster instead (through $SRV.INFO; docs/NATS.md).`,
  options: { mesh: { type: 'boolean' }, ...JSON_OPTION },
  positionals: [0, 1],
  expects: 'at most one cell name',
  async run(values, positionals) {
    const json = values.json === true;
    if (values.mesh === true) {
      if (positionals.length > 0) throw new UsageError('--mesh lists every cell; it takes no name', status.usage);
      // Loads the NATS client only here.
      const { listMeshCells, meshTable } = await import('../nats/cli.js');
      const rows = await listMeshCells();
      // Rows come from every host on the bus: shown, never obeyed by the terminal.
      out(json ? JSON.stringify({ cells: rows }) : visible(meshTable(rows)));
      return 0;
    }
    if (positionals.length === 1) {
      const name = validateCellName(positionals[0] as string);
      const row = await withRoot((root) => root.status({ name }));
      out(json ? JSON.stringify(row) : statusTable([row], false));
      return 0;
    }
    const list = await withRoot((root) => root.list(undefined));
    out(json ? JSON.stringify(list) : statusTable(list.cells, list.noSandbox));
    return 0;
  },
});

const down = command({
  usage: `usage: cell down [--json]

Stops every cell gracefully (SIGTERM: the cell drains in-flight calls; SIGKILL after 5 s), then the
Root. Leaves no process, socket or cgroup behind.`,
  options: { ...JSON_OPTION },
  positionals: [0, 0],
  async run(values) {
    const json = values.json === true;
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
  },
});

function oneCell(verb: 'spawn' | 'stop' | 'restart', usage: string): Command {
  return command({
    usage,
    options: { ...JSON_OPTION },
    positionals: [1, 1],
    expects: 'exactly one cell name',
    async run(values, positionals) {
      const name = validateCellName(positionals[0] as string);
      const json = values.json === true;
      const stop = verb === 'stop' ? async () => {} : watchProgress([name], json);
      let row: Row;
      try {
        row = await withRoot((root) => (verb === 'stop' ? root.stop({ name }) : root[verb]({ name, wait: true })));
      } finally {
        await stop();
      }
      out(json ? JSON.stringify(row) : rowLine(row));
      return 0;
    },
  });
}

const add = command({
  usage: `usage: cell add <name> <dir> [--entry <file>] [--network] [--lan] [--json]

Registers a cell's DNA with the running Root without starting it (\`cell spawn\` or Synapse.grow start it).`,
  options: { entry: { type: 'string' }, network: { type: 'boolean' }, lan: { type: 'boolean' }, ...JSON_OPTION },
  positionals: [2, 2],
  expects: 'a cell name and a folder',
  async run(values, positionals) {
    const name = validateCellName(positionals[0] as string);
    // Resolved here: the Root's working directory is not the caller's.
    const dna = resolve(positionals[1] as string);
    const row = await withRoot((root) =>
      root.add({
        name,
        dna,
        entry: values.entry,
        limitsJson: undefined,
        network: values.network === true ? true : undefined,
        lan: values.lan === true ? true : undefined,
        autostart: undefined,
        envJson: undefined,
      }),
    );
    out(
      values.json === true
        ? JSON.stringify(row)
        : `${name}: registered (DNA ${row.dna}); start it with \`cell spawn ${name}\`.`,
    );
    return 0;
  },
});

const rm = command({
  usage: `usage: cell rm <name> [--json]

Stops the cell (gracefully, as \`cell stop\`) and makes the Root forget it: its registration
(~/.cell/dna/<name>.json) is deleted, its log stays. A manifest that still lists it registers it again
on the next \`cell up\`.`,
  options: { ...JSON_OPTION },
  positionals: [1, 1],
  expects: 'exactly one cell name',
  async run(values, positionals) {
    const name = validateCellName(positionals[0] as string);
    const row = await withRoot((root) => root.rm({ name }));
    out(
      values.json === true
        ? JSON.stringify(row)
        : `${name}: stopped and unregistered (its log stays at ${join(logDir(), `${name}.log`)}).`,
    );
    return 0;
  },
});

const swap = command({
  usage: `usage: cell swap <name> [--json]

Rebuilds the DNA, starts the new generation beside the old one, waits until it is healthy, publishes
its socket atomically and drains the old one. On any failure the old generation keeps serving.`,
  options: { ...JSON_OPTION },
  positionals: [1, 1],
  expects: 'exactly one cell name',
  async run(values, positionals) {
    const name = validateCellName(positionals[0] as string);
    const r = await withRoot((root) => root.swap({ name }));
    if (values.json === true) out(JSON.stringify(r));
    else {
      out(
        `${name}: generation ${r.previousGeneration} (pid ${r.previousPid}) → ${r.generation} (pid ${r.pid}) in ${r.durationMs} ms`,
      );
      if (r.drainError !== '') err(`warning: the old generation did not drain cleanly: ${r.drainError}`);
    }
    return 0;
  },
});

const logs = command({
  usage: `usage: cell logs <name> [-f|--follow] [-n|--lines <lines>] [--json]

Prints the last lines (default 50) of ~/.cell/logs/<name>.log, the cell's stdout and stderr plus the
Root's notes (starts, exits, restarts), each line as "[<stream> <time> <cell>] <text>". -f keeps
printing new lines until interrupted. --json prints {"path", "lines": [...], "entries": [{"time",
"cell", "stream", "line"}]} (with -f: one {"time", "cell", "stream", "line"} object per line).`,
  options: { follow: { type: 'boolean', short: 'f' }, lines: { type: 'string', short: 'n' }, ...JSON_OPTION },
  positionals: [1, 1],
  expects: 'exactly one cell name',
  async run(values, positionals) {
    const name = validateCellName(positionals[0] as string);
    const n = intOption(values.lines, '--lines', logs.usage) ?? 50;
    const json = values.json === true;
    const path = join(logDir(), `${name}.log`);
    if (!existsSync(path)) {
      throw new CellError('E_DNA_UNKNOWN', `no log at ${path}.`, {
        cell: name,
        fix: 'the Root writes it once the cell was spawned; check the name with `cell status`.',
      });
    }
    const tail = tailLines(path, n);
    // The cell wrote these lines: JSON escapes them; for a terminal, only colour passes (visible()).
    const render = json
      ? (text: string) => JSON.stringify(parseLogLine(text, name))
      : (text: string) => visible(text, { keepColor: true });
    if (json && values.follow !== true) {
      out(JSON.stringify({ path, lines: tail, entries: tail.map((l) => parseLogLine(l, name)) }));
    } else for (const line of tail) out(render(line));
    if (values.follow !== true) return 0;
    await followLog(path, render);
    return 0;
  },
});

/** Prints what is appended to `path` (across rotations) until SIGINT/SIGTERM. */
async function followLog(path: string, render: (line: string) => string): Promise<void> {
  const first = statSync(path);
  let offset = first.size;
  let inode = first.ino;
  let partial = '';
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
          const lines = (partial + buf.toString('utf8')).split('\n');
          partial = lines.pop() ?? '';
          for (const line of lines) out(render(line));
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
}

const doctor = command({
  usage: `usage: cell doctor [--json]

Checks what this host supports (bubblewrap, user namespaces, cgroups, the shared-memory addon, …) and
what each missing piece disables. Exit 1 when a check fails.`,
  options: { ...JSON_OPTION },
  positionals: [0, 0],
  async run(values) {
    const { diagnose } = await import('../root/engine.js');
    const checks = await diagnose();
    if (values.json === true) out(JSON.stringify({ checks }));
    else {
      for (const c of checks) {
        const mark = c.ok ? paint('✓', 'green') : paint('✗', 'red');
        out(`${mark} ${c.name}: ${c.detail}${c.ok ? '' : `\n    disables: ${c.disables}`}`);
      }
    }
    return checks.every((c) => c.ok) ? 0 : 1;
  },
});

async function rootSource() {
  const { RootTopSource } = await import('../root/top-source.js');
  return RootTopSource.connect();
}

/**
 * Commands that live in their own modules parse their arguments themselves (with the same parser);
 * they are loaded only when used, so `cell status` never loads the dashboard's ink and React.
 */
const delegated: Record<string, { run(args: string[]): Promise<number> }> = {
  top: {
    async run(args) {
      const { runTopCommand } = await import('../top/command.js');
      return runTopCommand(args, { rootSource });
    },
  },
  metrics: {
    async run(args) {
      const { runMetricsCommand } = await import('../observation/command.js');
      return runMetricsCommand(args, { rootSource });
    },
  },
  tap: {
    async run(args) {
      const { runTapCommand } = await import('../tap/command.js');
      return runTapCommand(args);
    },
  },
  mesh: {
    async run(args) {
      const { meshCommand } = await import('../axon/cli.js');
      return meshCommand(args);
    },
  },
  new: {
    async run(args) {
      const { runNewCommand } = await import('./scaffold.js');
      return runNewCommand(args);
    },
  },
  call: {
    async run(args) {
      const { runCallCommand } = await import('./call.js');
      return runCallCommand(args);
    },
  },
  genome: {
    async run(args) {
      const { runGenomeCommand } = await import('./call.js');
      return runGenomeCommand(args);
    },
  },
  startup: {
    async run(args) {
      const { runStartupCommand } = await import('./startup.js');
      return runStartupCommand(args, rootMain);
    },
  },
};

const COMMANDS: Record<string, Command> = {
  up,
  status,
  ps: status,
  down,
  spawn: oneCell(
    'spawn',
    `usage: cell spawn <name> [--json]

Builds the cell's DNA if it changed and starts it; waits until it answers its health check.`,
  ),
  stop: oneCell(
    'stop',
    `usage: cell stop <name> [--json]

Stops the cell gracefully; the Root will not restart it until \`cell spawn\`.`,
  ),
  restart: oneCell(
    'restart',
    `usage: cell restart <name> [--json]

Builds the cell first: when its source does not build, exits 1 with the compiler's message and the
running process keeps serving. Otherwise stops and starts it and clears a crash-loop mark.`,
  ),
  add,
  rm,
  swap,
  logs,
  doctor,
};

/** What a PM2 user types, and the Cell command that does it (named in the unknown-command error). */
const PM2_WORDS: Record<string, string> = {
  list: '`cell status`',
  ls: '`cell status`',
  start: '`cell up` (every cell of cell.json) or `cell spawn <name>`',
  delete: '`cell rm <name>`',
  del: '`cell rm <name>`',
  monit: '`cell top`',
  reload: '`cell swap <name>` (zero-downtime)',
  describe: '`cell status <name>`',
  show: '`cell status <name>`',
  kill: '`cell down`',
  resurrect: 'not needed: a restarted Root knows the registrations in ~/.cell/dna',
  save: 'not needed: registrations persist in ~/.cell/dna',
};

/** The ATTRIBUTION notice (the original Cell design and its licence), for `cell --about`. */
export function about(): string {
  try {
    return readFileSync(join(packageRoot(), 'ATTRIBUTION'), 'utf8');
  } catch {
    return 'Cell derives from the original Cell design by Leif Rydenfalk (https://github.com/Leif-Rydenfalk/cell), MIT + Attribution.\n';
  }
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

/** The usage's synopsis: its first paragraph. */
function synopsis(usage: string): string {
  return usage.split('\n\n')[0] as string;
}

/** Prints a failure the one way: `cell: <what it concerns>: <cause>` and the fix on its own line. */
export function printFailure(error: unknown, json: boolean): number {
  if (json) {
    const body = isCellError(error)
      ? error.toJSON()
      : { message: error instanceof Error ? error.message : String(error) };
    out(JSON.stringify({ error: body }));
  }
  const prefix = paint('cell:', 'red', process.stderr);
  if (isCellError(error)) {
    // A cell's error travels here verbatim (its message and fix): shown, never obeyed by the terminal.
    err(`${prefix} ${visible(formatCellError(error))}`);
    // A name that breaks the naming rule is a bad argument, like an unknown option.
    return isCellError(error, 'E_NAME_INVALID') ? 2 : 1;
  }
  err(`${prefix} ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  return 1;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined) {
    err(USAGE);
    return 2;
  }
  if (name === '--version' || name === '-V' || name === 'version') {
    out(`cell ${version()}`);
    return 0;
  }
  if (name === '--about' || name === 'about') {
    out(about());
    return 0;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    const topic = args[0];
    if (topic === undefined) out(USAGE);
    else if (COMMANDS[topic] !== undefined) out((COMMANDS[topic] as Command).usage);
    else if (delegated[topic] !== undefined) return (delegated[topic] as (typeof delegated)[string]).run(['--help']);
    else out(USAGE);
    return 0;
  }
  const cmd = COMMANDS[name];
  const other = delegated[name];
  if (cmd === undefined && other === undefined) {
    const known = [...Object.keys(COMMANDS), ...Object.keys(delegated)];
    const what = name.startsWith('-') ? `unknown option ${name}` : `unknown command '${name}'`;
    const pm2 = PM2_WORDS[name];
    const hint = pm2 !== undefined ? `; PM2's \`${name}\` is ${pm2}` : suggestion(name.replace(/^-+/, ''), known);
    err(`cell: ${what}${hint}\n(\`cell --help\` lists the commands)`);
    return 2;
  }
  const json = args.includes('--json');
  try {
    if (other !== undefined) return await other.run(args);
    const command = cmd as Command;
    const parsed = parseCommand(args, command);
    if (parsed.help) {
      out(command.usage);
      return 0;
    }
    return await command.run(parsed.values, parsed.positionals);
  } catch (e) {
    if (e instanceof UsageError) {
      err(`cell ${name}: ${e.message}\n${synopsis(e.usage)}\n(\`cell ${name} --help\` for more)`);
      return 2;
    }
    return printFailure(e, json);
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
