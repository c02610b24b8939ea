import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
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

let activeBuilds = 0;

/**
 * Runs `fn` with esbuild's service up, and stops the service once no build of this process is in
 * flight: its Go process keeps the parsed files of the last build, tens of MiB the Root does not
 * need between builds. The next build starts a fresh one (a few ms).
 */
async function withEsbuild<T>(cell: string, fn: (esbuild: Esbuild) => Promise<T>): Promise<T> {
  const esbuild = await loadEsbuild(cell);
  activeBuilds++;
  try {
    return await fn(esbuild);
  } finally {
    if (--activeBuilds === 0) await esbuild.stop();
  }
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
} as const);

export interface CompileRequest {
  cell: string;
  /** Real path of the DNA folder (esbuild's working directory). */
  dir: string;
  entry: string;
  roots: Roots;
  /** What `import … from 'cell'` resolves to. */
  runtime: string;
  tsconfig: TsconfigRaw;
}

export interface CompileResult {
  code: Uint8Array;
  /** Every file esbuild loaded: real path → SHA-256 of the bytes it was given. */
  inputs: Map<string, string>;
}

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

/** `cell`, and specifiers that are paths: checked before the resolver looks at them. */
const PATH_OR_CELL = /^(?:cell$|\/|\.\.?(?:\/|$))/;
const REFUSED = 'refused by the Ribosome #';

/**
 * Bundles the DNA through one plugin. A path import (absolute, ./, ../) is refused on sight when
 * its real path is outside the roots or it is not a regular file, before the resolver looks at it;
 * every load, whatever resolved it, is served by the plugin itself through readInside (the same
 * checks, then a non-blocking read), so esbuild reads no module on its own and each input is hashed
 * exactly as esbuild saw it. The metafile's inputs are then checked against what was served.
 */
export function compile(req: CompileRequest): Promise<CompileResult> {
  return withEsbuild(req.cell, (esbuild) => compileWith(esbuild, req));
}

async function compileWith(esbuild: Esbuild, req: CompileRequest): Promise<CompileResult> {
  const { cell, dir, roots } = req;
  const served = new Map<string, { real: string; sha256: string }>();
  const refusals: Refusal[] = [];
  // esbuild reports a load's error at the import that asked for it: the marker finds it again.
  const refuse = (r: Refusal): OnResolveResult => {
    refusals.push(r);
    return { errors: [{ text: `${REFUSED}${refusals.length - 1}` }] };
  };
  const asRefusal = (err: unknown, specifier?: string, importer?: string): Refusal => {
    if (!(err instanceof RefusedPath)) throw err;
    return {
      reason: err.reason,
      path: err.path,
      kind: err.kind,
      ...(specifier === undefined ? {} : { specifier }),
      ...(importer ? { importer } : {}),
    };
  };

  const guard: Plugin = {
    name: 'cell-ribosome',
    setup(build) {
      build.onResolve({ filter: PATH_OR_CELL }, (args) => {
        const runtime = args.path === 'cell';
        try {
          const target = runtime ? req.runtime : resolve(args.resolveDir || dir, args.path);
          const real = checkPath(roots, target, { allowDirectory: !runtime });
          return runtime ? { path: real } : undefined;
        } catch (err) {
          return refuse(asRefusal(err, args.path, args.importer));
        }
      });
      build.onLoad({ filter: /.*/ }, (args) => {
        if (args.namespace !== 'file') return refuse({ reason: 'namespace', path: args.path, kind: args.namespace });
        try {
          const { real, content } = readInside(roots, args.path);
          served.set(args.path, { real, sha256: createHash('sha256').update(content).digest('hex') });
          return { contents: content, loader: 'default' };
        } catch (err) {
          return refuse(asRefusal(err));
        }
      });
    },
  };
  const firstRefusal = (messages: Message[]): Refusal | undefined => {
    for (const m of messages) {
      if (!m.text.startsWith(REFUSED)) continue;
      const r = refusals[Number(m.text.slice(REFUSED.length))];
      if (r === undefined) continue;
      const loc = m.location;
      if (r.importer === undefined && loc !== null && (loc.namespace === '' || loc.namespace === 'file')) {
        r.importer = resolve(dir, loc.file);
        const quoted = loc.lineText.slice(loc.column, loc.column + loc.length);
        if (r.specifier === undefined && quoted.length >= 2) r.specifier = quoted.slice(1, -1);
      }
      return r;
    }
    return refusals[0];
  };

  let result: Awaited<ReturnType<Esbuild['build']>>;
  try {
    result = await esbuild.build({
      ...BUILD_OPTIONS,
      banner: { ...BUILD_OPTIONS.banner },
      external: [...BUILD_OPTIONS.external],
      entryPoints: [req.entry],
      absWorkingDir: dir,
      write: false,
      metafile: true,
      logLevel: 'silent',
      tsconfigRaw: req.tsconfig,
      plugins: [guard],
    });
  } catch (err) {
    const failure = err as { errors?: Message[] };
    const refused = firstRefusal(failure.errors ?? []);
    if (refused !== undefined) throw refusalError(cell, dir, refused);
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
    // No `cause`: esbuild's error carries the source lines of every message, including any the
    // filter above blanked.
    throw new CellError('E_BUILD_FAILED', `its DNA failed to compile:\n${text}\n`, {
      cell,
      fix: `correct the source in ${dir} and spawn again.`,
      details: { dir, entry: req.entry },
    });
  }
  const refused = firstRefusal([...result.errors, ...result.warnings]);
  if (refused !== undefined) throw refusalError(cell, dir, refused);

  // Second line: every input esbuild reports must be a file the plugin served.
  const inputs = new Map<string, string>();
  for (const key of Object.keys(result.metafile?.inputs ?? {})) {
    const abs = resolve(dir, key);
    const file = served.get(abs);
    if (file === undefined) throw refusalError(cell, dir, { reason: 'unserved', path: key });
    inputs.set(file.real, file.sha256);
  }
  const out = result.outputFiles?.[0];
  if (out === undefined || result.outputFiles?.length !== 1) {
    throw new CellError('E_BUILD_FAILED', `esbuild produced ${result.outputFiles?.length ?? 0} files, not one.`, {
      cell,
      fix: 'report this as a bug in Cell.',
    });
  }
  return { code: out.contents, inputs };
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
