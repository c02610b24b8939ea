import { existsSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { TsconfigRaw } from 'esbuild';
import { parseJsonText } from './json.js';
import { RefusedPath, type Roots, readInside } from './roots.js';

/**
 * The TypeScript settings of a build. esbuild would look for tsconfig.json in every folder above
 * every input and follow `extends` anywhere (and quote the file it fails to parse), so the Ribosome
 * reads only the DNA folder's own tsconfig.json, follows `extends` only inside the allowed roots,
 * and hands esbuild the result (`tsconfigRaw`, which stops esbuild from reading any tsconfig).
 */
export interface Tsconfig {
  raw: TsconfigRaw;
  /** Real paths and contents of the files read, for the cache key. */
  files: { real: string; content: Buffer }[];
}

/** The compiler options esbuild uses (the rest only matter to the type checker). */
const BOOLEAN_OPTIONS = [
  'alwaysStrict',
  'experimentalDecorators',
  'preserveValueImports',
  'strict',
  'useDefineForClassFields',
  'verbatimModuleSyntax',
] as const;
const STRING_OPTIONS = [
  'importsNotUsedAsValues',
  'jsx',
  'jsxFactory',
  'jsxFragmentFactory',
  'jsxImportSource',
  'target',
] as const;

export class TsconfigError extends Error {}

const MAX_EXTENDS = 16;

type Options = Record<string, unknown>;

/** Reads `<dnaDir>/tsconfig.json` and its `extends` chain; `{}` when the DNA has none. */
export function dnaTsconfig(dnaDir: string, roots: Roots): Tsconfig {
  const files: Tsconfig['files'] = [];
  const first = join(dnaDir, 'tsconfig.json');
  if (!existsSync(first)) return { raw: {}, files };
  const merged: Options = {};
  const chain = new Set<string>(); // the files being read, to refuse a loop
  let paths: { table: Record<string, unknown>; dir: string } | undefined;

  const load = (path: string, label: string, level: number): void => {
    if (level > MAX_EXTENDS) throw new TsconfigError(`${label}: more than ${MAX_EXTENDS} levels of "extends"`);
    const { real, content } = readInside(roots, path);
    if (chain.has(real)) throw new TsconfigError(`${label}: "extends" loops back to ${real}`);
    chain.add(real);
    files.push({ real, content });
    const json = parseJsonText(content.toString('utf8'), real, { comments: true });
    if (json === null || typeof json !== 'object' || Array.isArray(json)) {
      throw new TsconfigError(`${real} is not a JSON object`);
    }
    const config = json as { extends?: unknown; compilerOptions?: unknown };
    const bases = config.extends === undefined ? [] : Array.isArray(config.extends) ? config.extends : [config.extends];
    for (const base of bases) {
      if (typeof base !== 'string' || base === '') throw new TsconfigError(`${real}: "extends" must name files`);
      try {
        load(resolveExtends(base, dirname(real), roots, real), real, level + 1);
      } catch (err) {
        if (err instanceof RefusedPath && err.importer === undefined) {
          err.importer = real;
          err.specifier = base;
        }
        throw err;
      }
    }
    chain.delete(real);
    const own = config.compilerOptions;
    if (own === null || typeof own !== 'object' || Array.isArray(own)) return;
    const opts = own as Options;
    const dir = dirname(real);
    for (const k of BOOLEAN_OPTIONS) if (typeof opts[k] === 'boolean') merged[k] = opts[k];
    for (const k of STRING_OPTIONS) if (typeof opts[k] === 'string') merged[k] = opts[k];
    if (typeof opts.baseUrl === 'string') merged.baseUrl = resolve(dir, opts.baseUrl);
    if (opts.paths !== null && typeof opts.paths === 'object' && !Array.isArray(opts.paths)) {
      paths = { table: opts.paths as Record<string, unknown>, dir };
    }
  };
  load(first, first, 0);
  if (paths !== undefined) {
    // Targets are relative to baseUrl when one is set, else to the file declaring them; made
    // absolute here because esbuild would take them relative to the DNA folder.
    const base = typeof merged.baseUrl === 'string' ? merged.baseUrl : paths.dir;
    const table: Record<string, string[]> = {};
    for (const [pattern, targets] of Object.entries(paths.table)) {
      if (!Array.isArray(targets)) continue;
      table[pattern] = targets.filter((t): t is string => typeof t === 'string').map((t) => resolve(base, t));
    }
    merged.paths = table;
  }
  return { raw: { compilerOptions: merged as TsconfigRaw['compilerOptions'] }, files };
}

/** A relative or absolute `extends` from `dir`, or a package's config in the allowed node_modules. */
function resolveExtends(spec: string, dir: string, roots: Roots, from: string): string {
  const candidates: string[] = [];
  if (spec.startsWith('.') || isAbsolute(spec)) {
    const p = resolve(dir, spec);
    candidates.push(p, `${p}.json`);
  } else {
    for (const nm of [...roots.nodeModules, ...roots.cell]) {
      const p = join(nm, spec);
      candidates.push(p, `${p}.json`, join(p, 'tsconfig.json'));
    }
  }
  // Only looked at (stat), not read: the chosen file goes through readInside.
  const found = candidates.find((c) => {
    try {
      return !statSync(c).isDirectory();
    } catch {
      return false;
    }
  });
  if (found === undefined) throw new TsconfigError(`${from}: "extends": ${JSON.stringify(spec)} was not found`);
  return found;
}
