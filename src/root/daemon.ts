import { chmodSync, existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { type SandboxUser, sandboxUser } from '../capsid/index.js';
import { CellError, isCellError } from '../errors/index.js';
import { exportRootPublicKey, issueIdentity, loadOrCreateRootKey } from '../identity/index.js';
import { Membrane } from '../membrane/index.js';
import { CellProbe } from '../observation/index.js';
import {
  type CellBoot,
  cacheDir,
  cellHome,
  cellPrivateDir,
  cellRunDir,
  cellSecretsDir,
  cellSocketPath,
  channelSocketPath,
  controlDir,
  dnaDir,
  ensurePrivateDir,
  inspectSocketPath,
  logDir,
  refusedEnvKey,
  rootSocketPath,
  socketDir,
  socketLockPath,
  tapSocketPath,
  validateCellName,
} from '../paths/index.js';
import { generationSocketPath, publishGeneration, swapGenerations, waitHealthy } from '../swap/index.js';
import { authorize, OPERATOR, operatorGate, type Principal } from './access.js';
import type { CellState, RootServiceDef } from './contract.js';
import { RootService } from './contract.js';
import { type Bundle, type Encapsulated, encapsulate, type StemOptions, synthesize } from './engine.js';
import { LineSplitter, RotatingLog, tailLines } from './log.js';
import { type DnaSpec, dnaSpec, loadManifest, manifestPath, restartPolicy } from './manifest.js';
import { natsHandover, removeSecrets } from './nats.js';
import { removeStaleSlots, StemPool, stemCellsWanted } from './stems.js';

const STOP_GRACE_MS = 5_000;
const LOG_TAIL_LINES = 20;

interface Proc {
  readonly generation: number;
  readonly pid: number;
  readonly capsule: Encapsulated;
  readonly startedAt: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** starting: not yet published; running: the published one; retired: stopping on purpose. */
  phase: 'starting' | 'running' | 'retired';
  /** The host pid of the cell's own process (inside bubblewrap: found once it runs), 0 until known. */
  cellPid: number;
  alive: boolean;
}

interface CellRecord {
  spec: DnaSpec;
  state: CellState;
  /** The user wants it running (spawn/up); false after stop. */
  wanted: boolean;
  proc: Proc | null;
  generation: number;
  restarts: number;
  consecutiveFailures: number;
  failures: number[];
  lastExit: string;
  oomKills: number;
  error: string;
  build: Bundle | null;
  log: RotatingLog;
  timer: NodeJS.Timeout | null;
  /** Serialises spawn/stop/restart/swap of one cell. */
  queue: Promise<unknown>;
  /** The cell's own narrow channel to the Root (bound into its sandbox), once it was first started. */
  channel: Membrane<RootServiceDef> | null;
  /** The bundle `cell restart` built before stopping the old process, for the start that follows. */
  prebuilt: Bundle | null;
}

export interface RootOptions {
  /** Run cells without the sandbox (development); status says so loudly. */
  noSandbox?: boolean;
  socketPath?: string;
  /** How long a starting cell has to answer its health check (default 15 s). */
  readyTimeoutMs?: number;
  /** Called after a shutdown request was answered and everything stopped (the daemon exits there). */
  onShutdown?: () => void;
  /**
   * Stem cells kept waiting for a cell to grow into (default CELL_STEM_CELLS, else 2; 0 = none:
   * every cell starts its own sandbox, as a swap always does).
   */
  stemCells?: number;
}

function describeExit(code: number | null, signal: NodeJS.Signals | null, oom: boolean): string {
  if (oom) return `oom-killed (${signal ?? `exit ${code}`})`;
  return signal !== null ? `signal ${signal}` : `exit ${code}`;
}

/** Direct children of a process (the kernel's list of each of its threads). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (text !== '') for (const c of text.split(' ')) out.push(Number(c));
    }
  } catch {
    // gone, or a kernel without the children file: no answer rather than a wrong one
  }
  return out;
}

function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/**
 * The host pid of a sandboxed cell's own process: bubblewrap's first descendant that is not
 * bubblewrap (its pid-namespace init). The cell's health reply gives its pid inside the namespace,
 * which names another process on the host; CPU and RSS must come from this one.
 */
function sandboxedPid(bwrapPid: number): number {
  let level = [bwrapPid];
  for (let depth = 0; depth < 4 && level.length > 0; depth++) {
    const next: number[] = [];
    for (const p of level) {
      for (const c of childrenOf(p)) {
        if (commOf(c) !== 'bwrap') return c;
        next.push(c);
      }
    }
    level = next;
  }
  return 0;
}

/** The cell's own host pid, looked up once and forgotten if that process is gone. */
function cellPidOf(proc: Proc): number {
  if (proc.cellPid !== 0 && !existsSync(`/proc/${proc.cellPid}`)) proc.cellPid = 0;
  if (proc.cellPid === 0 && proc.alive) proc.cellPid = sandboxedPid(proc.pid);
  return proc.cellPid;
}

function procRss(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function cellLog(name: string): RotatingLog {
  const log = new RotatingLog(join(logDir(), `${name}.log`));
  log.cell = name;
  return log;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The Mycelium Root: one per user, listening on the umbilical socket. It knows cells by name (their
 * DNA), builds them with the Ribosome, runs them in a Capsid, waits until they answer, restarts
 * them when they crash (exponential backoff, crash-loop detection) and swaps them without downtime.
 */
export class Root {
  readonly noSandbox: boolean;
  readonly startedAt = Date.now();
  private readonly cells = new Map<string, CellRecord>();
  private readonly readyTimeoutMs: number;
  private readonly probe = new CellProbe(socketDir(), 500);
  private membrane: Membrane<RootServiceDef> | null = null;
  private shuttingDown = false;
  private readonly onShutdown: (() => void) | undefined;
  /** The host user sandboxed cells run as when this Root runs as root; undefined otherwise. */
  private readonly user: SandboxUser | undefined;
  private readonly stemCells: number;
  /** Pre-started sandboxed boot processes a fresh start adopts; null when the pool is off. */
  private stems: StemPool | null = null;

  private constructor(opts: RootOptions) {
    this.noSandbox = opts.noSandbox === true;
    this.user = this.noSandbox ? undefined : sandboxUser();
    this.stemCells = stemCellsWanted(opts.stemCells);
    this.readyTimeoutMs = opts.readyTimeoutMs ?? 15_000;
    this.onShutdown = opts.onShutdown;
  }

  static async start(opts: RootOptions = {}): Promise<Root> {
    const root = new Root(opts);
    root.prepareLayout();
    const socketPath = opts.socketPath ?? rootSocketPath();
    try {
      root.membrane = await Membrane.bind(RootService, root.handlers(OPERATOR), {
        name: 'mitosis',
        socketPath,
        tap: false,
        lan: false,
        handleSignals: false,
        admit: operatorGate({
          pids: () => [
            ...[...root.cells.values()].flatMap((r) => (r.proc?.alive ? [r.proc.pid] : [])),
            ...(root.stems?.pids() ?? []),
          ],
          cgroups: () => [
            ...[...root.cells.values()].flatMap((r) => (r.proc?.capsule.cgroup ? [r.proc.capsule.cgroup] : [])),
            ...(root.stems?.cgroups() ?? []),
          ],
        }),
      });
    } catch (err) {
      if (!isCellError(err, 'E_CELL_ALREADY_RUNNING')) throw err;
      const pid = err.details?.pid;
      throw new CellError(
        'E_CELL_ALREADY_RUNNING',
        `a Root is already running${typeof pid === 'number' ? ` (pid ${pid})` : ''} on ${socketPath}.`,
        { fix: 'use it (`cell status`), or stop it first with `cell down`.', details: err.details },
      );
    }
    root.restoreRegistry();
    root.startStems();
    return root;
  }

  private stemOptions(): StemOptions {
    return {
      sandbox: !this.noSandbox,
      ...(this.user === undefined ? {} : { user: this.user }),
      socketDir: socketDir(),
      privateParent: dirname(cellPrivateDir('x')),
      stemsDir: join(controlDir(), 'stems'),
    };
  }

  /** Starts the stem-cell pool (docs/SANDBOX.md § Stem cells), after removing what a killed Root left. */
  private startStems(): void {
    const opts = this.stemOptions();
    removeStaleSlots(opts);
    if (this.stemCells === 0) return;
    this.stems = new StemPool(this.stemCells, opts, (line) =>
      process.stdout.write(`[root ${new Date().toISOString()}] ${line}\n`),
    );
    this.stems.fill();
  }

  /**
   * The directories of docs/SANDBOX.md § Layout: everything private to the Root's user, except that
   * sandboxed cells running as another uid (the Root is root) may traverse the rendezvous dir.
   */
  private prepareLayout(): void {
    const control = rootSocketPath();
    if (`${dirname(control)}/`.startsWith(`${socketDir()}/`)) {
      throw new CellError('E_PERMISSION_DENIED', `the control socket ${control} lies inside the rendezvous dir.`, {
        fix: `every sandbox sees ${socketDir()}: unset CELL_UMBILICAL (the default is ${join(controlDir(), 'mitosis.sock')}) or point it outside.`,
      });
    }
    for (const dir of [cellHome(), controlDir(), dirname(channelSocketPath('x')), dnaDir(), logDir(), cacheDir()]) {
      ensurePrivateDir(dir);
    }
    ensurePrivateDir(dirname(cellPrivateDir('x')));
    ensurePrivateDir(socketDir());
    if (this.user !== undefined) chmodSync(socketDir(), 0o711);
  }

  /** A cell's own run dir and private dir. */
  private cellDirs(name: string): { run: string; priv: string } {
    const run = cellRunDir(name);
    const priv = cellPrivateDir(name);
    // Owned by the cell's user once it ran (the Capsid hands them over); private either way.
    for (const dir of [run, priv]) ensurePrivateDir(dir, this.user?.uid);
    return { run, priv };
  }

  /** The cell's channel socket: a RootService that answers only what a cell may ask. */
  private async channelFor(rec: CellRecord): Promise<string> {
    const name = rec.spec.name;
    const path = channelSocketPath(name);
    if (rec.channel !== null) return path;
    rec.channel = await Membrane.bind(RootService, this.handlers({ kind: 'cell', name }), {
      name: 'mitosis',
      socketPath: path,
      tap: false,
      lan: false,
      handleSignals: false,
      shm: false,
    });
    // Its directory is the Root's alone; inside the sandbox the cell (maybe another uid) connects.
    if (this.user !== undefined) chmodSync(path, 0o666);
    return path;
  }

  /** Registrations survive the Root: each DNA spec is kept as `~/.cell/dna/<name>.json`. */
  private restoreRegistry(): void {
    let files: string[] = [];
    try {
      files = readdirSync(dnaDir()).filter((f) => f.endsWith('.json'));
    } catch {
      return;
    }
    for (const f of files) {
      try {
        const spec = JSON.parse(readFileSync(join(dnaDir(), f), 'utf8')) as DnaSpec;
        validateCellName(spec.name);
        if (typeof spec.dir !== 'string' || `${spec.name}.json` !== f) continue;
        // Entries written before a field existed get its default; env keys refused today stay refused.
        spec.calls = Array.isArray(spec.calls) ? spec.calls.filter((c) => typeof c === 'string') : [];
        spec.contracts = Array.isArray(spec.contracts) ? spec.contracts.filter((c) => typeof c === 'string') : [];
        spec.env = Object.fromEntries(
          Object.entries(spec.env ?? {}).filter(([k, v]) => typeof v === 'string' && refusedEnvKey(k) === undefined),
        );
        this.register(spec, false);
      } catch {
        // a damaged entry is skipped; `cell add` or `cell up` writes it again
      }
    }
  }

  get socketPath(): string | null {
    return this.membrane?.socketPath ?? null;
  }

  /** Throws E_PERMISSION_DENIED unless `principal` may call `method` about `target`. */
  private allow(principal: Principal, method: string, target?: string): void {
    const calls = principal.kind === 'cell' ? (this.cells.get(principal.name)?.spec.calls ?? []) : [];
    authorize(principal, method, target, calls);
  }

  /** The Root's methods as `principal` may use them (the operator: all; a cell: grow its peers). */
  private handlers(principal: Principal) {
    const named = (method: string, req: { name: string }) => {
      const name = String(req.name);
      this.allow(principal, method, name);
      return name;
    };
    const operatorOnly = (method: string) => this.allow(principal, method);
    return {
      spawn: (req: { name: string; wait: boolean }) =>
        this.spawn(named('spawn', req), true).then((r) => this.rowFor(principal, r)),
      stop: (req: { name: string }) => this.stop(this.record(named('stop', req))).then((r) => this.row(r)),
      restart: (req: { name: string }) => this.restart(named('restart', req)).then((r) => this.row(r)),
      status: (req: { name: string }) => this.rowFor(principal, this.record(named('status', req)), true),
      list: () => {
        operatorOnly('list');
        return this.list();
      },
      add: (req: {
        name: string;
        dna: string;
        entry?: string | undefined;
        limitsJson?: string | undefined;
        network?: boolean | undefined;
        lan?: boolean | undefined;
        autostart?: boolean | undefined;
        envJson?: string | undefined;
      }) => {
        operatorOnly('add');
        const raw: Record<string, unknown> = { dna: String(req.dna) };
        if (req.entry !== undefined) raw.entry = String(req.entry);
        if (req.limitsJson !== undefined) raw.limits = parseJson(String(req.limitsJson), 'limits');
        if (req.envJson !== undefined) raw.env = parseJson(String(req.envJson), 'env');
        if (req.network !== undefined) raw.network = req.network;
        if (req.lan !== undefined) raw.lan = req.lan;
        if (req.autostart !== undefined) raw.autostart = req.autostart;
        return this.row(this.register(dnaSpec(String(req.name), raw, process.cwd())));
      },
      swap: (req: { name: string }) => this.swap(named('swap', req)),
      shutdown: () => {
        operatorOnly('shutdown');
        return this.shutdown();
      },
      load: (req: { path: string; start: boolean; replace?: boolean | undefined }) => {
        operatorOnly('load');
        return this.load(String(req.path), req.start, req.replace === true);
      },
      logs: (req: { name: string; lines: number }) => {
        const rec = this.record(named('logs', req));
        return { path: rec.log.path, lines: tailLines(rec.log.path, Math.min(Number(req.lines), 10_000)) };
      },
      rm: async (req: { name: string }) => {
        const rec = await this.stop(this.record(named('rm', req)));
        this.cells.delete(rec.spec.name);
        rmSync(join(dnaDir(), `${rec.spec.name}.json`), { force: true });
        rec.log.note('unregistered (cell rm)');
        rec.log.close();
        return this.row(rec);
      },
    };
  }

  /** A status row; a cell asking about a peer learns its state, not where its DNA or process is. */
  private async rowFor(principal: Principal, rec: CellRecord, sample = false) {
    const row = await this.row(rec, sample);
    if (principal.kind === 'operator') return row;
    return {
      ...row,
      pid: 0,
      dna: '',
      error: row.error === '' ? '' : 'failed (see `cell logs` on the host)',
      build: undefined,
    };
  }

  // ---- registry ---------------------------------------------------------------------------------

  register(spec: DnaSpec, persist = true): CellRecord {
    if (persist) {
      try {
        const path = join(dnaDir(), `${spec.name}.json`);
        writeFileSync(`${path}.tmp`, JSON.stringify(spec), { mode: 0o600 });
        renameSync(`${path}.tmp`, path);
      } catch {
        // the registration still holds for this Root's lifetime
      }
    }
    const existing = this.cells.get(spec.name);
    if (existing !== undefined) {
      existing.spec = spec;
      return existing;
    }
    const rec: CellRecord = {
      spec,
      state: 'stopped',
      wanted: false,
      proc: null,
      generation: 0,
      restarts: 0,
      consecutiveFailures: 0,
      failures: [],
      lastExit: '',
      oomKills: 0,
      error: '',
      build: null,
      log: cellLog(spec.name),
      timer: null,
      queue: Promise.resolve(),
      channel: null,
      prebuilt: null,
    };
    this.cells.set(spec.name, rec);
    return rec;
  }

  private record(name: string): CellRecord {
    validateCellName(name);
    const rec = this.cells.get(name);
    if (rec === undefined) {
      throw new CellError('E_DNA_UNKNOWN', 'no DNA is registered under this name.', {
        cell: name,
        fix: `register it: \`cell add ${name} <dir>\` or an entry in cell.json, then \`cell up\`.`,
      });
    }
    return rec;
  }

  async load(path: string, start: boolean, replace = false) {
    const file = manifestPath(resolve(path));
    const specs = loadManifest(file);
    // A name another project registered is not silently re-pointed: its next restart would run this
    // project's code under that project's name.
    for (const spec of specs) {
      const owner = this.cells.get(spec.name)?.spec.manifest;
      if (!replace && owner !== undefined && owner !== file) {
        throw new CellError('E_INVALID_ARGUMENT', `the name is registered from ${owner}, not ${file}.`, {
          cell: spec.name,
          fix: `rename the cell in ${file}, \`cell rm ${spec.name}\` first, or run \`cell up --replace\` to take the name over.`,
        });
      }
    }
    const recs = specs.map((s) => this.register(s));
    // One failing cell does not stop the others: its row carries the error, even when a restart
    // after a failed start has already cleared the record's own (the caller's exit code depends on it).
    const failed = new Map<string, string>();
    if (start) {
      await Promise.all(
        recs
          .filter((r) => r.spec.autostart)
          .map((r) => this.spawn(r.spec.name, true).catch((err) => failed.set(r.spec.name, errorText(err)))),
      );
    }
    const list = await this.list();
    for (const row of list.cells) {
      const why = failed.get(row.name);
      if (why !== undefined && row.state !== 'running' && row.error === '') row.error = why;
    }
    return list;
  }

  // ---- lifecycle --------------------------------------------------------------------------------

  private exclusive<T>(rec: CellRecord, fn: () => Promise<T>): Promise<T> {
    const next = rec.queue.then(fn, fn);
    rec.queue = next.catch(() => {});
    return next;
  }

  /** Starts the cell unless it runs; an explicit spawn clears a crash-loop mark. */
  spawn(name: string, explicit: boolean): Promise<CellRecord> {
    if (this.shuttingDown) return Promise.reject(shuttingDownError(name));
    const rec = this.record(name);
    if (explicit) {
      // Someone asked on purpose: the failure history (crash-loop mark, backoff) starts over.
      rec.wanted = true;
      rec.failures = [];
      rec.consecutiveFailures = 0;
    }
    return this.exclusive(rec, async () => {
      if (rec.proc?.alive && rec.state === 'running') return rec;
      if (!rec.wanted) return rec;
      this.clearTimer(rec);
      await this.startProcess(rec);
      return rec;
    });
  }

  /**
   * Builds first: a source that does not compile fails the restart with the compiler's message and
   * leaves the running process alone. Then stop + spawn (the spawn's build is a cache hit).
   */
  async restart(name: string): Promise<CellRecord> {
    const rec = this.record(name);
    await this.exclusive(rec, async () => {
      try {
        rec.prebuilt = await this.build(rec, rec.proc === null);
      } catch (err) {
        if (rec.proc !== null) rec.log.note(`restart refused; generation ${rec.proc.generation} keeps running`);
        rec.error = errorText(err);
        throw err;
      }
    });
    try {
      await this.stop(rec);
      rec.restarts = 0;
      return await this.spawn(name, true);
    } finally {
      rec.prebuilt = null;
    }
  }

  stop(rec: CellRecord): Promise<CellRecord> {
    rec.wanted = false;
    this.clearTimer(rec);
    return this.exclusive(rec, async () => {
      const proc = rec.proc;
      if (proc !== null) {
        rec.state = 'stopping';
        await this.terminate(proc, STOP_GRACE_MS);
        rec.proc = null;
        rec.log.note(`stopped generation ${proc.generation} (pid ${proc.cellPid || proc.pid})`);
      }
      this.removeSockets(rec.spec.name);
      rec.state = 'stopped';
      return rec;
    });
  }

  private clearTimer(rec: CellRecord): void {
    if (rec.timer !== null) clearTimeout(rec.timer);
    rec.timer = null;
  }

  /** Runs the Ribosome; `showState` is false while a running process stays the cell's state. */
  private async build(rec: CellRecord, showState = true): Promise<Bundle> {
    const { spec } = rec;
    const before = rec.state;
    if (showState) rec.state = 'building';
    try {
      const bundle = await synthesize(
        {
          name: spec.name,
          dir: spec.dir,
          contracts: spec.contracts,
          ...(spec.entry === undefined ? {} : { entry: spec.entry }),
          ...(spec.manifestDir === undefined ? {} : { manifestDir: spec.manifestDir }),
        },
        { onProgress: (line) => rec.log.note(line) },
      );
      rec.build = bundle;
      rec.log.note(
        `DNA ${bundle.cached ? 'cached' : `built in ${Math.round(bundle.buildMs)} ms`} (${bundle.hash.slice(0, 12)})`,
      );
      return bundle;
    } catch (err) {
      rec.log.note(`build failed: ${errorText(err)}`);
      if (showState) rec.state = before;
      throw err;
    }
  }

  private async launch(
    rec: CellRecord,
    bundle: Bundle,
    generation: number,
    bindPath: string,
    fresh = false,
  ): Promise<Proc> {
    const { spec } = rec;
    const dirs = this.cellDirs(spec.name);
    rmSync(bindPath, { force: true });
    const umbilical = await this.channelFor(rec);
    // The bundle sits in the Root's private cache; a cell running as another uid reads just this file.
    if (this.user !== undefined) chmodSync(bundle.path, 0o644);
    const { boot, nats } = this.bootFor(spec, generation, bindPath, umbilical);
    // NATS, like Axon, is reached over the host's network; its files are bound in: no stem cell then.
    const network = spec.network || spec.lan || spec.nats !== undefined;
    const adopted = fresh && !network ? this.adoptStem(rec, { bundle, boot, dirs, umbilical }) : undefined;
    const capsule =
      adopted ??
      (await encapsulate({
        name: spec.name,
        bundlePath: bundle.path,
        boot,
        writable: [dirs.run, dirs.priv],
        readOnly: [socketDir(), umbilical, ...(nats?.dir === undefined ? [] : [nats.dir])],
        limits: spec.limits,
        network,
        sandbox: !this.noSandbox,
        stdout: 'pipe',
        stderr: 'pipe',
        ...(this.user === undefined ? {} : { user: this.user }),
      }));
    const proc = this.watch(rec, capsule, generation);
    rec.log.note(
      `started generation ${generation} (${capsule.sandbox === 'none' ? 'pid' : 'bubblewrap pid'} ${proc.pid}, sandbox ${capsule.sandbox}${adopted ? ', stem cell' : ''})`,
    );
    return proc;
  }

  /**
   * The boot contract of one generation: its environment (the manifest's, then the CELL_NATS*
   * settings, which the manifest may not set) and its identity. Each generation proves to its callers
   * that it is the process the Root started under this name (docs/PROTOCOL.md § 2.3.1): a fresh key
   * and certificate, handed over through a pipe, never argv or the environment, with the Root's
   * public key to check the cells it calls.
   */
  private bootFor(spec: DnaSpec, generation: number, bindPath: string, umbilical: string) {
    const env: Record<string, string> = { HOME: '/tmp', PATH: '/usr/bin:/bin' };
    if (process.env.CELL_DISABLE_SHM !== undefined) env.CELL_DISABLE_SHM = process.env.CELL_DISABLE_SHM;
    Object.assign(env, spec.env);
    const nats = spec.nats === undefined ? undefined : natsHandover(spec.name, spec.nats, this.user);
    if (nats !== undefined) Object.assign(env, nats.env);
    const rootKey = loadOrCreateRootKey();
    const boot: CellBoot = {
      name: spec.name,
      generation,
      socketDir: socketDir(),
      bindPath,
      tapPath: tapSocketPath(spec.name),
      inspectPath: inspectSocketPath(spec.name),
      umbilical,
      lan: spec.lan,
      env,
      identity: issueIdentity(rootKey, { cell: spec.name, generation }),
      rootKey: exportRootPublicKey(rootKey),
    };
    return { boot, nats };
  }

  /** The running generation's record: its output logged line by line, its exit reported. */
  private watch(rec: CellRecord, capsule: Encapsulated, generation: number): Proc {
    const child = capsule.child;
    // Line by line, each with its time, cell and stream; an unfinished last line is kept until its
    // stream ends (the pipe's end, which comes after its last data; 'exit' may come before), then written.
    const out = new LineSplitter(rec.log, 'stdout');
    const errs = new LineSplitter(rec.log, 'stderr');
    child.stdout?.on('data', (d: Buffer) => out.push(d));
    child.stdout?.once('end', () => out.end());
    child.stderr?.on('data', (d: Buffer) => errs.push(d));
    child.stderr?.once('end', () => errs.end());
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
      if (child.exitCode !== null || child.signalCode !== null) res({ code: child.exitCode, signal: child.signalCode });
      else child.once('exit', (code, signal) => res({ code, signal }));
    });
    const proc: Proc = {
      generation,
      pid: child.pid ?? 0,
      capsule,
      startedAt: Date.now(),
      exited,
      phase: 'starting',
      alive: true,
      cellPid: capsule.sandbox === 'none' ? (child.pid ?? 0) : 0,
    };
    void exited.then(({ code, signal }) => {
      proc.alive = false;
      this.onExit(rec, proc, code, signal);
    });
    return proc;
  }

  /**
   * A waiting stem cell made into this cell (its limits, dirs, bundle, contract), or undefined when
   * none waits or it cannot take the cell (it died meanwhile): the cell then starts its own sandbox.
   * Only a fresh start without network uses one: a stem has no network namespace to share, and a
   * swap's new generation shares the run dir the old one still holds.
   */
  private adoptStem(
    rec: CellRecord,
    c: { bundle: Bundle; boot: CellBoot; dirs: { run: string; priv: string }; umbilical: string },
  ): Encapsulated | undefined {
    const stem = this.stems?.take();
    if (stem === undefined) return undefined;
    try {
      return stem.adopt({
        name: rec.spec.name,
        boot: c.boot,
        bundlePath: c.bundle.path,
        limits: rec.spec.limits,
        runDir: c.dirs.run,
        privateDir: c.dirs.priv,
        umbilical: c.umbilical,
      });
    } catch (err) {
      rec.log.note(`stem cell ${stem.id} could not take the cell (${errorText(err)}); starting it on its own`);
      void stem.dispose();
      return undefined;
    }
  }

  /** Waits for readiness at the generation's own path; on failure, the reason with the log's tail. */
  private async ready(rec: CellRecord, proc: Proc, bindPath: string): Promise<void> {
    try {
      await waitHealthy(rec.spec.name, bindPath, this.readyTimeoutMs, () => proc.alive);
    } catch (err) {
      // Let the exit event and the last output land in the log before quoting it.
      if (proc.alive) await this.terminate(proc, 1000);
      else await Promise.race([proc.exited, new Promise((r) => setTimeout(r, 200))]);
      await new Promise((r) => setTimeout(r, 20));
      const tail = tailLines(rec.log.path, LOG_TAIL_LINES).join('\n');
      const why = !proc.alive ? `exited during start: ${rec.lastExit}` : errorText(err);
      throw new CellError('E_SPAWN_FAILED', `did not become ready (${why}). Last lines of its log:\n${tail}`, {
        cell: rec.spec.name,
        fix: `see \`cell logs ${rec.spec.name}\`; the cell must bind its Membrane under the same name.`,
      });
    }
    // It answered, so its own process exists: note its host pid while it can still be found.
    cellPidOf(proc);
  }

  private async startProcess(rec: CellRecord): Promise<void> {
    rec.error = '';
    let bundle: Bundle;
    try {
      // What `cell restart` just built (and reported) is what starts; otherwise build now.
      bundle = rec.prebuilt ?? (await this.build(rec));
      rec.prebuilt = null;
    } catch (err) {
      // Deterministic: retrying the same source would fail the same way.
      rec.error = errorText(err);
      rec.state = 'stopped';
      rec.wanted = false;
      throw err;
    }
    const generation = rec.generation + 1;
    const publicPath = cellSocketPath(rec.spec.name);
    const bindPath = generationSocketPath(publicPath, generation);
    rec.state = 'starting';
    let proc: Proc;
    try {
      proc = await this.launch(rec, bundle, generation, bindPath, true);
    } catch (err) {
      rec.error = errorText(err);
      rec.state = 'stopped';
      rec.wanted = false;
      rec.log.note(`could not start: ${rec.error}`);
      throw err;
    }
    rec.proc = proc;
    rec.generation = generation;
    try {
      await this.ready(rec, proc, bindPath);
    } catch (err) {
      rec.error = errorText(err);
      rec.proc = null;
      rmSync(bindPath, { force: true });
      this.failed(rec, proc);
      throw err;
    } finally {
      // Replacements start once this cell answered, not while it competes with them for the CPU.
      this.stems?.fillSoon();
    }
    proc.phase = 'running';
    publishGeneration(bindPath, publicPath);
    rec.state = 'running';
    rec.log.note(`generation ${generation} (pid ${proc.cellPid || proc.pid}) ready at ${publicPath}`);
  }

  private onExit(rec: CellRecord, proc: Proc, code: number | null, signal: NodeJS.Signals | null): void {
    const oom = safe(() => proc.capsule.oomKilled(), false);
    if (oom) rec.oomKills++;
    const reason = describeExit(code, signal, oom);
    rec.log.note(`generation ${proc.generation} (pid ${proc.cellPid || proc.pid}) ended: ${reason}`);
    void proc.capsule.dispose().catch(() => {});
    this.removeGenerationFiles(rec.spec.name, proc.generation);
    if (proc.phase === 'retired') return;
    rec.lastExit = reason;
    // A failure during start is handled by startProcess (it sees the readiness check fail).
    if (proc.phase !== 'running' || rec.proc !== proc) return;
    rec.proc = null;
    if (this.shuttingDown || !rec.wanted) {
      rec.state = 'stopped';
      return;
    }
    if (Date.now() - proc.startedAt >= restartPolicy(rec.spec).stableMs) rec.consecutiveFailures = 0;
    this.failed(rec, proc);
  }

  /**
   * Counts a failure, then either schedules a restart with backoff or marks the cell crash-looping:
   * `failures` exits within the window, or as many in a row without a stable run — a cell that dies a
   * few seconds after each start spaces its exits out with the backoff and would never fill the window.
   */
  private failed(rec: CellRecord, proc: Proc): void {
    const policy = restartPolicy(rec.spec);
    const now = Date.now();
    rec.failures = rec.failures.filter((t) => now - t < policy.windowMs);
    rec.failures.push(now);
    rec.consecutiveFailures++;
    if (this.shuttingDown || !rec.wanted) {
      rec.state = 'stopped';
      return;
    }
    if (rec.failures.length >= policy.failures || rec.consecutiveFailures >= policy.failures) {
      rec.state = 'crash-loop';
      const why =
        rec.failures.length >= policy.failures
          ? `${rec.failures.length} failures within ${policy.windowMs / 1000} s`
          : `${rec.consecutiveFailures} failures in a row, none up ${policy.stableMs / 1000} s`;
      rec.log.note(`crash-looping: ${why}; not restarting until \`cell restart ${rec.spec.name}\``);
      this.removeSockets(rec.spec.name);
      return;
    }
    rec.state = 'crashed';
    const delay = Math.min(policy.backoffMs * 2 ** (rec.consecutiveFailures - 1), policy.maxBackoffMs);
    rec.log.note(`restarting in ${delay} ms (failure ${rec.consecutiveFailures}, generation ${proc.generation})`);
    this.clearTimer(rec);
    rec.timer = setTimeout(() => {
      rec.timer = null;
      if (!rec.wanted || this.shuttingDown || rec.state !== 'crashed') return;
      rec.restarts++;
      this.exclusive(rec, async () => {
        // A stop or shutdown may have been queued ahead of this restart.
        if (rec.wanted && !this.shuttingDown && rec.proc === null) await this.startProcess(rec);
      }).catch(() => {
        // the failure is counted (and maybe rescheduled) inside startProcess
      });
    }, delay);
  }

  private async terminate(proc: Proc, graceMs: number): Promise<void> {
    proc.phase = proc.phase === 'starting' ? 'starting' : 'retired';
    if (proc.alive) {
      // The Capsid signals the cell's own processes: bubblewrap does not forward signals, and a
      // SIGTERM to it would tear the sandbox down without letting the cell drain.
      proc.capsule.signal('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        proc.exited,
        new Promise<void>((r) => {
          timer = setTimeout(() => {
            if (proc.alive) proc.capsule.child.kill('SIGKILL');
            r();
          }, graceMs);
        }),
      ]);
      clearTimeout(timer);
      await proc.exited;
    }
    await proc.capsule.dispose().catch(() => {});
  }

  /** Removes what a cell leaves in its dirs when it was killed rather than closed. */
  private removeSockets(name: string): void {
    // The dirs are the cell's alone (recreated at its next start); rm never follows a link it finds.
    rmSync(cellRunDir(name), { force: true, recursive: true });
    rmSync(cellPrivateDir(name), { force: true, recursive: true });
    removeSecrets(cellSecretsDir(name));
  }

  /** A generation that ended without closing (crash, kill) leaves its socket and lock: remove them. */
  private removeGenerationFiles(name: string, generation: number): void {
    const path = generationSocketPath(cellSocketPath(name), generation);
    rmSync(path, { force: true });
    rmSync(socketLockPath(path), { force: true });
  }

  // ---- swap -------------------------------------------------------------------------------------

  swap(name: string) {
    const rec = this.record(name);
    return this.exclusive(rec, async () => {
      const current = rec.proc;
      if (current === null || rec.state !== 'running') {
        throw new CellError('E_SWAP_FAILED', `cannot swap a cell that is ${rec.state}.`, {
          cell: name,
          fix: `start it with \`cell spawn ${name}\`.`,
        });
      }
      let bundle: Bundle | null = null;
      const result = await swapGenerations<Proc>({
        cell: name,
        publicPath: cellSocketPath(name),
        current,
        nextGeneration: rec.generation + 1,
        readyTimeoutMs: this.readyTimeoutMs,
        onPhase: (phase, detail) => rec.log.note(`swap: ${phase} ${detail}`),
        steps: {
          build: async () => {
            bundle = await this.build(rec);
            rec.state = 'running';
          },
          start: (generation, bindPath) => this.launch(rec, bundle as unknown as Bundle, generation, bindPath),
          ready: (proc, bindPath) => this.ready(rec, proc, bindPath),
          drain: (proc) => this.terminate(proc, 15_000),
          discard: (proc) => this.terminate(proc, 1000),
        },
      }).catch((err) => {
        rec.state = rec.proc?.alive ? 'running' : rec.state;
        throw err;
      });
      result.next.phase = 'running';
      rec.proc = result.next;
      rec.generation = result.next.generation;
      rec.state = 'running';
      return {
        name,
        generation: result.next.generation,
        previousGeneration: current.generation,
        pid: result.next.cellPid || result.next.pid,
        previousPid: current.cellPid || current.pid,
        durationMs: Math.round(result.durationMs),
        drainError: result.drainError === undefined ? '' : errorText(result.drainError),
        build: rec.build === null ? undefined : buildInfo(rec.build),
      };
    });
  }

  // ---- status -----------------------------------------------------------------------------------

  async row(rec: CellRecord, sample = false) {
    const proc = rec.proc;
    let transport = '-';
    // The cell's own process on the host; bubblewrap's pid until the cell's process is there.
    const pid = proc === null ? 0 : cellPidOf(proc) || proc.pid;
    let memory = 0;
    if (proc?.alive) {
      memory = safe(() => proc.capsule.memoryBytes(), null) ?? 0;
      if (sample && rec.state === 'running') {
        const s = await this.probe.sample({
          name: rec.spec.name,
          state: rec.state,
          socketPath: inspectSocketPath(rec.spec.name),
          pid,
        });
        transport = s.transport;
        if (memory === 0 && s.rssBytes !== undefined) memory = s.rssBytes;
      }
      if (memory === 0) memory = procRss(pid);
    }
    return {
      name: rec.spec.name,
      state: rec.state,
      pid: proc?.alive ? pid : 0,
      startedAt: proc?.alive ? proc.startedAt : 0,
      uptimeMs: proc?.alive ? Date.now() - proc.startedAt : 0,
      restarts: rec.restarts,
      generation: rec.generation,
      transport,
      sandbox: proc?.alive ? proc.capsule.sandbox : this.noSandbox ? 'none' : 'bwrap',
      memoryBytes: memory,
      lastExit: rec.lastExit,
      oomKills: rec.oomKills,
      dna: rec.spec.dir,
      socketPath: cellSocketPath(rec.spec.name),
      error: rec.error,
      build: rec.build === null ? undefined : buildInfo(rec.build),
    };
  }

  async list() {
    const names = [...this.cells.keys()].sort();
    this.probe.retain(names);
    const cells = await Promise.all(names.map((n) => this.row(this.cells.get(n) as CellRecord, true)));
    const stems = this.stems?.state();
    return {
      cells,
      rootPid: process.pid,
      rootStartedAt: this.startedAt,
      noSandbox: this.noSandbox,
      ...(stems === undefined ? {} : { stemCells: stems }),
    };
  }

  // ---- shutdown ---------------------------------------------------------------------------------

  /** Stops every cell gracefully; the Root closes right after the reply went out. */
  async shutdown(): Promise<{ stopped: number }> {
    this.shuttingDown = true;
    const running = [...this.cells.values()].filter((r) => r.proc !== null);
    await Promise.all([...this.cells.values()].map((r) => this.stop(r)));
    setTimeout(() => {
      void this.close().then(() => this.onShutdown?.());
    }, 20);
    return { stopped: running.length };
  }

  /** Closes the control socket and kills whatever still runs (a cell never outlives its Root). */
  async close(): Promise<void> {
    this.shuttingDown = true;
    for (const rec of this.cells.values()) {
      this.clearTimer(rec);
      if (rec.proc?.alive) rec.proc.capsule.child.kill('SIGKILL');
    }
    await Promise.all(
      [...this.cells.values()].map(async (rec) => {
        if (rec.proc !== null) await rec.proc.capsule.dispose().catch(() => {});
      }),
    );
    await this.stems?.close();
    await this.probe.close();
    await Promise.all([...this.cells.values()].map((rec) => rec.channel?.close()));
    await this.membrane?.close();
    for (const rec of this.cells.values()) rec.log.close();
  }

  /** Synchronous last resort for process exit: SIGKILL every child. */
  killAll(): void {
    this.stems?.killAll();
    for (const rec of this.cells.values()) if (rec.proc?.alive) rec.proc.capsule.child.kill('SIGKILL');
  }
}

function buildInfo(b: Bundle) {
  return { hash: b.hash, cached: b.cached, buildMs: Math.round(b.buildMs), bundlePath: b.path };
}

function safe<T>(fn: () => T, fallback: T): T {
  try {
    return fn();
  } catch {
    return fallback;
  }
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CellError('E_INVALID_ARGUMENT', `${what} is not valid JSON: ${errorText(err)}`);
  }
}

function shuttingDownError(name: string): CellError {
  return new CellError('E_ROOT_UNAVAILABLE', 'the Root is shutting down.', { cell: name, fix: 'run `cell up` again.' });
}
