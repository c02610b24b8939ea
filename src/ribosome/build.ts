import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Message, OnResolveResult, Plugin, TsconfigRaw } from 'esbuild';
import { CellError } from '../errors/index.js';
import { checkPath, RefusedPath, type Roots, readInside, relativeLabel, rootOf } from './roots.js';

type Esbuild = typeof import('esbuild');
let esbuildModule: Promise<Esbuild> | undefined;

function loadEsbuild(cell: string): Promise<Esbuild> {
  esbuildModule ??= import('esbuild').catch((err) => {
    esbuildModule = undefined;
    throw new CellError('E_BUILD_FAILED', 'esbuild cannot be loaded.', {
      cell,
      cause: err,
      fix: 'run `npm ci` (or `node scripts/setup.mjs`) in the Cell checkout.',
    });
  });
  return esbuildModule;
}

/** esbuild's version, part of every cache key. */
export async function esbuildVersion(cell: string): Promise<string> {
  return (await loadEsbuild(cell)).version;
}

// CommonJS dependencies bundled into ESM still call require() for Node built-ins.
const BANNER =
  "import { createRequire as __cellCreateRequire } from 'node:module';\nconst require = __cellCreateRequire(import.meta.url);";

/** The options that shape the output; they are part of every cache key. */
export const BUILD_OPTIONS = Object.freeze({
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  banner: { js: BANNER },
  // Native addons cannot be inlined; the runtime loads the shm addon from CELL_NATIVE_ADDON.
  external: ['*.node', 'esbuild'],
  // Stacks name the cell's own .ts files and lines (the boot runs Node with --enable-source-maps).
  // Positions only: the sources' text stays out of the bundle.
  sourcemap: 'inline',
  sourcesContent: false,
} as const);

export interface CompileRequest {
  cell: string;
  /** Real path of the DNA folder (esbuild's working directory). */
  dir: string;
  entry: string;
  roots: Roots;
  /** What `import … from 'cell-runtime'` (or 'cell') resolves to; its subpaths lie beside it. */
  runtime: string;
  tsconfig: TsconfigRaw;
}

export interface CompileResult {
  code: Uint8Array;
  /** Every file esbuild loaded: real path → SHA-256 of the bytes it was given. */
  inputs: Map<string, string>;
}

/** What the build process sends back: plain data, turned into a CompileResult or a CellError. */
export type CompileOutcome =
  | { ok: true; code: Uint8Array; inputs: [string, string][] }
  | { ok: false; refusal: Refusal }
  | { ok: false; failure: string }
  | { ok: false; crash: string };

/** A refused read: what was asked for, from where, and why. Never any content. */
export interface Refusal {
  reason: RefusedPath['reason'] | 'namespace' | 'unserved';
  /** The import as written, when known. */
  specifier?: string;
  /** Real (or resolved) path of what was refused. */
  path: string;
  /** The file that asked for it, when known. */
  importer?: string;
  /** For special files: what it is; for namespaces: which. */
  kind?: string;
}

const clip = (s: string): string => (s.length > 120 ? `${s.slice(0, 117)}...` : s);

/** The E_BUILD_FAILED for a refused read: names the cell, the importer, the path and the fix. */
export function refusalError(cell: string, dir: string, r: Refusal): CellError {
  const from = r.importer === undefined ? '' : ` from ${relativeLabel(dir, r.importer)}`;
  const asked = r.specifier !== undefined && r.specifier !== r.path ? `'${clip(r.specifier)}' (${r.path})` : r.path;
  const details = { reason: r.reason, path: r.path, importer: r.importer, specifier: r.specifier, dir };
  if (r.reason === 'namespace') {
    return new CellError(
      'E_BUILD_FAILED',
      `its DNA imports '${clip(r.specifier ?? r.path)}'${from}, which is not a file (esbuild namespace '${r.kind}'); a cell is built from files only.`,
      {
        cell,
        fix: 'declare it in `contracts` or move it into the DNA folder, as a file.',
        details,
      },
    );
  }
  const why =
    r.reason === 'outside'
      ? "outside the folders a build may read (the DNA folder, the manifest's `contracts`, the project's node_modules, Cell's own package)"
      : r.reason === 'special'
        ? `which is ${r.kind}, not a regular file`
        : r.reason === 'too-large'
          ? `which is larger than a source file may be (${r.kind})`
          : 'which esbuild read without asking the Ribosome';
  return new CellError('E_BUILD_FAILED', `its DNA imports ${asked}${from}, ${why}; nothing of it was read.`, {
    cell,
    fix: `declare it in \`contracts\` or move it into the DNA folder (${dir}).`,
    details,
  });
}

/** The runtime by its package name (or `cell`, as in this checkout), with its subpaths. */
const RUNTIME = /^(?:cell|cell-runtime)(?:\/(host|observation|mesh|consensus))?$/;
/** The runtime, and specifiers that are paths: checked before the resolver looks at them. */
const PATH_OR_CELL = /^(?:(?:cell|cell-runtime)(?:\/(?:host|observation|mesh|consensus))?$|\/|\.\.?(?:\/|$))/;

/** The file a runtime specifier names, beside the runtime's index (`runtime`). */
function runtimeModule(runtime: string, subpath: string | undefined): string {
  if (subpath === undefined) return runtime;
  const ext = extname(runtime);
  return join(dirname(runtime), subpath === 'consensus' ? join('consensus', `index${ext}`) : `${subpath}${ext}`);
}
const REFUSED = 'refused by the Ribosome #';

const here = dirname(fileURLToPath(import.meta.url));
/** A build that has not finished by then is killed (it could only be stuck). */
const BUILD_TIMEOUT_MS = 300_000;
const WORKER = join(here, `worker${extname(fileURLToPath(import.meta.url))}`);

/**
 * Bundles the DNA in a short-lived child process (worker.ts): esbuild's service, the file contents
 * and every buffer of the build go away with it, so a long-lived Root does not keep them, and a
 * crash or runaway build cannot take the Root down.
 */
export function compile(req: CompileRequest): Promise<CompileResult> {
  const { cell, dir } = req;
  return new Promise<CompileResult>((resolvePromise, reject) => {
    const child = fork(WORKER, [], {
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
      // Names the build in `ps e` (esbuild's service inherits it too).
      env: { ...process.env, CELL_BUILD_OF: cell },
      // A TypeScript entry needs the parent's loader flags; a built one needs none (and must not
      // inherit --inspect and the like).
      execArgv: WORKER.endsWith('.ts') ? process.execArgv : [],
    });
    let outcome: CompileOutcome | undefined;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, BUILD_TIMEOUT_MS);
    child.once('message', (m) => {
      outcome = m as CompileOutcome;
    });
    child.once('error', (err) => {
      reject(
        new CellError('E_BUILD_FAILED', `cannot start the build process: ${err.message}.`, {
          cell,
          fix: 'check that Node.js can start child processes on this host.',
        }),
      );
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) {
        reject(
          new CellError('E_BUILD_FAILED', `its build took longer than ${BUILD_TIMEOUT_MS / 1000} s and was stopped.`, {
            cell,
            fix: 'spawn again on a less loaded host, or make the DNA smaller.',
          }),
        );
      } else if (outcome === undefined) {
        reject(
          new CellError('E_BUILD_FAILED', `the build process ended (${signal ?? `exit ${code}`}) without a result.`, {
            cell,
            fix: 'spawn again; if it persists, the DNA may be too large to bundle with the memory available.',
          }),
        );
      } else if (outcome.ok) {
        resolvePromise({ code: outcome.code, inputs: new Map(outcome.inputs) });
      } else if ('refusal' in outcome) {
        reject(refusalError(cell, dir, outcome.refusal));
      } else if ('failure' in outcome) {
        // No `cause`: esbuild's own error carries the source line of every message, including
        // the ones withoutOutsideText blanked.
        reject(
          new CellError('E_BUILD_FAILED', `its DNA failed to compile:\n${outcome.failure}\n`, {
            cell,
            fix: `correct the source in ${dir} and spawn again.`,
            details: { dir, entry: req.entry },
          }),
        );
      } else {
        reject(
          new CellError('E_BUILD_FAILED', `the build failed: ${outcome.crash}`, {
            cell,
            fix: 'spawn again; if it persists, report it as a bug in Cell.',
          }),
        );
      }
    });
    child.send(req);
  });
}

/**
 * Bundles the DNA through one plugin (in the build process). A path import (absolute, ./, ../)
 * is refused on sight when its real path is outside the roots or it is not a regular file, before
 * the resolver looks at it; every load, whatever resolved it, is served by the plugin itself
 * through readInside (the same checks, then a non-blocking read), so esbuild reads no module on
 * its own and each input is hashed exactly as esbuild saw it. The metafile's inputs are then
 * checked against what was served.
 */
export async function compileHere(req: CompileRequest): Promise<CompileOutcome> {
  let esbuild: Esbuild;
  try {
    esbuild = await loadEsbuild(req.cell);
  } catch (err) {
    return { ok: false, crash: (err as Error).message };
  }
  try {
    return await compileWith(esbuild, req);
  } finally {
    await esbuild.stop(); // the service would also go when this process does; do not wait for that
  }
}

/**
 * The build's guard: every path esbuild resolves or loads must lie inside the roots, and what it
 * served is remembered (real path and hash) so the bundle's inputs can be checked and cached.
 */
class Guard {
  readonly served = new Map<string, { real: string; sha256: string }>();
  private readonly refusals: Refusal[] = [];

  constructor(private readonly req: CompileRequest) {}

  plugin(): Plugin {
    const { req } = this;
    return {
      name: 'cell-ribosome',
      setup: (build) => {
        build.onResolve({ filter: PATH_OR_CELL }, (args) => {
          const named = RUNTIME.exec(args.path);
          const runtime = named !== null;
          try {
            const target =
              named !== null ? runtimeModule(req.runtime, named[1]) : resolve(args.resolveDir || req.dir, args.path);
            const real = checkPath(req.roots, target, { allowDirectory: !runtime });
            return runtime ? { path: real } : undefined;
          } catch (err) {
            return this.refuse(asRefusal(err, args.path, args.importer));
          }
        });
        build.onLoad({ filter: /.*/ }, (args) => {
          if (args.namespace !== 'file') {
            return this.refuse({ reason: 'namespace', path: args.path, kind: args.namespace });
          }
          try {
            const { real, content } = readInside(req.roots, args.path);
            this.served.set(args.path, { real, sha256: createHash('sha256').update(content).digest('hex') });
            return { contents: content, loader: 'default' };
          } catch (err) {
            return this.refuse(asRefusal(err));
          }
        });
      },
    };
  }

  /** esbuild reports a load's error at the import that asked for it: the marker finds it again. */
  private refuse(r: Refusal): OnResolveResult {
    this.refusals.push(r);
    return { errors: [{ text: `${REFUSED}${this.refusals.length - 1}` }] };
  }

  /** The refusal behind the first marked message, with the importer and specifier esbuild knew. */
  firstRefusal(messages: Message[]): Refusal | undefined {
    for (const m of messages) {
      if (!m.text.startsWith(REFUSED)) continue;
      const r = this.refusals[Number(m.text.slice(REFUSED.length))];
      if (r === undefined) continue;
      const loc = m.location;
      if (r.importer === undefined && loc !== null && (loc.namespace === '' || loc.namespace === 'file')) {
        r.importer = resolve(this.req.dir, loc.file);
        const quoted = loc.lineText.slice(loc.column, loc.column + loc.length);
        if (r.specifier === undefined && quoted.length >= 2) r.specifier = quoted.slice(1, -1);
      }
      return r;
    }
    return this.refusals[0];
  }
}

function asRefusal(err: unknown, specifier?: string, importer?: string): Refusal {
  if (!(err instanceof RefusedPath)) throw err;
  return {
    reason: err.reason,
    path: err.path,
    kind: err.kind,
    ...(specifier === undefined ? {} : { specifier }),
    ...(importer ? { importer } : {}),
  };
}

async function compileWith(esbuild: Esbuild, req: CompileRequest): Promise<CompileOutcome> {
  const { dir, roots } = req;
  const guard = new Guard(req);
  let result: Awaited<ReturnType<Esbuild['build']>>;
  try {
    result = await esbuild.build({
      ...BUILD_OPTIONS,
      banner: { ...BUILD_OPTIONS.banner },
      external: [...BUILD_OPTIONS.external],
      entryPoints: [req.entry],
      absWorkingDir: dir,
      // Sources are named relative to the DNA folder; rooted there, a stack shows the real file.
      sourceRoot: `${dir}/`,
      write: false,
      metafile: true,
      logLevel: 'silent',
      tsconfigRaw: req.tsconfig,
      plugins: [guard.plugin()],
    });
  } catch (err) {
    const failure = err as { errors?: Message[] };
    const refusal = guard.firstRefusal(failure.errors ?? []);
    if (refusal !== undefined) return { ok: false, refusal };
    const text = failure.errors?.length
      ? (
          await esbuild.formatMessages(
            failure.errors.map((m) => withoutOutsideText(m, dir, roots)),
            { kind: 'error', color: false },
          )
        )
          .join('')
          .trimEnd()
      : 'esbuild stopped without a message.';
    return { ok: false, failure: text };
  }
  const refusal = guard.firstRefusal([...result.errors, ...result.warnings]);
  if (refusal !== undefined) return { ok: false, refusal };

  // Second line: every input esbuild reports must be a file the plugin served.
  const inputs: [string, string][] = [];
  for (const key of Object.keys(result.metafile?.inputs ?? {})) {
    const file = guard.served.get(resolve(dir, key));
    if (file === undefined) return { ok: false, refusal: { reason: 'unserved', path: key } };
    inputs.push([file.real, file.sha256]);
  }
  const out = result.outputFiles?.[0];
  if (out === undefined || result.outputFiles?.length !== 1) {
    return { ok: false, crash: `esbuild produced ${result.outputFiles?.length ?? 0} files, not one.` };
  }
  return { ok: true, code: out.contents, inputs };
}

/**
 * A message about a file outside the roots (a package.json esbuild's resolver read on its way up,
 * say) keeps its file:line but neither the quoted source line nor its text, which may quote the
 * file too ("Unexpected \"…\" in JSON").
 */
function withoutOutsideText(m: Message, dir: string, roots: Roots): Message {
  const outside = (loc: Message['location']): boolean => {
    if (loc === null) return false;
    if (loc.namespace && loc.namespace !== 'file') return true;
    try {
      return rootOf(roots, checkPath(roots, resolve(dir, loc.file))) === undefined;
    } catch {
      return true;
    }
  };
  const hide = <T extends { text: string; location: Message['location'] }>(x: T): T => {
    const loc = x.location;
    if (loc === null || !outside(loc)) return x;
    const text = `${loc.file}:${loc.line}: esbuild failed on this file, which lies outside the folders a build may read (its text is not shown)`;
    return { ...x, text, location: null };
  };
  return { ...hide(m), notes: m.notes.map(hide) };
}
