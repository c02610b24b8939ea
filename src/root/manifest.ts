import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { CellError } from '../errors/index.js';
import { nearest } from '../errors/suggest.js';
import type { NatsConnectionFields } from '../paths/boot.js';
import { refusedEnvKey, validateCellName } from '../paths/index.js';
import { parseJsonText } from '../ribosome/json.js';
import { type Limits, parseLimits } from './engine.js';

/** One cell the Root knows how to grow: its DNA and how to run it (one entry of cell.json). */
export interface DnaSpec {
  name: string;
  /** Absolute path of the DNA folder. */
  dir: string;
  /** Entry file relative to `dir` (default: the Ribosome's choice). */
  entry?: string;
  limits: Partial<Limits>;
  network: boolean;
  lan: boolean;
  autostart: boolean;
  env: Record<string, string>;
  /** The cells this one may ask the Root to grow (its channel refuses every other name). */
  calls: string[];
  /** Contract files or folders outside the DNA folder that the build may read (absolute paths). */
  contracts: string[];
  /** The manifest that registered it (absent for `cell add`). */
  manifest?: string;
  /** The folder of the manifest that declared the cell (bounds the Ribosome's node_modules search). */
  manifestDir?: string;
  /** Serve (and find peers) on NATS: the cell's settings, its files as absolute paths (docs/NATS.md § 5). */
  nats?: NatsEntry;
  /** How the Root restarts it after a crash (absent: the defaults). */
  restart?: Partial<RestartPolicy>;
}

/** A manifest's `nats` field, checked and normalised (the shape of the `nats` Membrane option). */
export interface NatsEntry extends NatsConnectionFields {
  servers: string[];
}

/**
 * How the Root restarts a cell that exits on its own. The defaults follow systemd's
 * StartLimitBurst/IntervalSec: 5 failures within 10 s.
 */
export interface RestartPolicy {
  /** The first restart's delay; each consecutive failure doubles it. */
  backoffMs: number;
  /** The longest delay between restarts. */
  maxBackoffMs: number;
  /** `failures` exits within this window mark the cell crash-loop. */
  windowMs: number;
  /** How many failures mark it crash-loop: within `windowMs`, or in a row without a stable run. */
  failures: number;
  /** A process that stayed up this long was stable: the backoff and the run of failures start over. */
  stableMs: number;
}

export const DEFAULT_RESTART_POLICY: Readonly<RestartPolicy> = Object.freeze({
  backoffMs: 100,
  maxBackoffMs: 10_000,
  windowMs: 10_000,
  failures: 5,
  stableMs: 10_000,
});

/** The bounds of each policy field, in ms (failures: a count). */
const RESTART_BOUNDS: Record<keyof RestartPolicy, [number, number]> = {
  backoffMs: [10, 3_600_000],
  maxBackoffMs: [10, 3_600_000],
  windowMs: [100, 86_400_000],
  failures: [1, 1000],
  stableMs: [100, 86_400_000],
};
const RESTART_KEYS = Object.keys(RESTART_BOUNDS) as (keyof RestartPolicy)[];

/** A spec's policy with the defaults filled in (also for specs saved before the field existed). */
export function restartPolicy(spec: Pick<DnaSpec, 'restart'>): RestartPolicy {
  const p = { ...DEFAULT_RESTART_POLICY };
  for (const key of RESTART_KEYS) {
    const v = spec.restart?.[key];
    if (typeof v === 'number' && Number.isFinite(v)) p[key] = v;
  }
  return p;
}

function parseRestart(name: string, raw: unknown): Partial<RestartPolicy> | undefined {
  if (raw === undefined) return undefined;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw bad(
      `entry '${name}': "restart" must be an object.`,
      `write "restart": { "failures": 5, "windowMs": 10000 }.`,
    );
  }
  const out: Partial<RestartPolicy> = {};
  for (const [key, v] of Object.entries(raw as Record<string, unknown>)) {
    const bounds = RESTART_BOUNDS[key as keyof RestartPolicy];
    if (bounds === undefined) {
      const near = nearest(key, RESTART_KEYS);
      throw bad(
        `entry '${name}': "restart" has an unknown field "${key}".`,
        near === undefined ? `the fields are ${RESTART_KEYS.join(', ')}.` : `did you mean "${near}"?`,
      );
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v < bounds[0] || v > bounds[1]) {
      throw bad(
        `entry '${name}': restart.${key} must be an integer from ${bounds[0]} to ${bounds[1]}.`,
        `write "${key}": ${DEFAULT_RESTART_POLICY[key as keyof RestartPolicy]} or remove it.`,
      );
    }
    out[key as keyof RestartPolicy] = v;
  }
  if ((out.maxBackoffMs ?? DEFAULT_RESTART_POLICY.maxBackoffMs) < (out.backoffMs ?? DEFAULT_RESTART_POLICY.backoffMs)) {
    throw bad(`entry '${name}': restart.maxBackoffMs is below restart.backoffMs.`, 'raise maxBackoffMs.');
  }
  return out;
}

/** Every key a cell entry may have: anything else is a typo, refused with the nearest match. */
export const ENTRY_KEYS = [
  'dna',
  'entry',
  'limits',
  'network',
  'lan',
  'autostart',
  'env',
  'calls',
  'contracts',
  'nats',
  'restart',
];

/** The keys a manifest itself may have. */
const TOP_KEYS = ['$schema', 'cells'];

const NATS_KEYS = [
  'servers',
  'credsFile',
  'nkeySeedFile',
  'user',
  'passwordFile',
  'tokenFile',
  'tls',
  'inboxPrefix',
  'version',
];
const NATS_FILE_KEYS = ['credsFile', 'nkeySeedFile', 'passwordFile', 'tokenFile'] as const;
const NATS_TLS_KEYS = ['caFile', 'certFile', 'keyFile'] as const;
const NATS_URL = /^(nats|tls|ws|wss):\/\/[^\s/]+$|^[^\s/:]+:\d+$/;

export const MANIFEST_FILE = 'cell.json';

/** The manifest path for `cell up [dir|file]`: a file as is, a folder's cell.json. */
export function manifestPath(target: string): string {
  const abs = resolve(target);
  if (existsSync(abs) && statSync(abs).isDirectory()) return join(abs, MANIFEST_FILE);
  return abs;
}

function bad(message: string, fix: string): CellError {
  return new CellError('E_INVALID_ARGUMENT', message, { fix });
}

/** Checks one manifest entry; relative DNA paths are resolved against `base`. */
export function dnaSpec(name: string, raw: unknown, base: string): DnaSpec {
  validateCellName(name);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw bad(`entry '${name}' must be an object.`, 'write { "dna": "./folder" } for each cell.');
  }
  const r = raw as Record<string, unknown>;
  for (const key of Object.keys(r)) {
    if (!ENTRY_KEYS.includes(key)) {
      const near = nearest(key, ENTRY_KEYS);
      throw bad(
        `entry '${name}' has an unknown field "${key}".`,
        near === undefined ? `the fields are ${ENTRY_KEYS.join(', ')}.` : `did you mean "${near}"?`,
      );
    }
  }
  if (typeof r.dna !== 'string' || r.dna === '') {
    throw bad(`entry '${name}' needs "dna": the folder with the cell source.`, 'add "dna": "./path/to/cell".');
  }
  for (const key of ['network', 'lan', 'autostart'] as const) {
    if (r[key] !== undefined && typeof r[key] !== 'boolean') {
      throw bad(`entry '${name}': "${key}" must be true or false.`, `write "${key}": true or remove it.`);
    }
  }
  if (r.entry !== undefined && (typeof r.entry !== 'string' || r.entry.includes('..'))) {
    throw bad(`entry '${name}': "entry" must be a file name inside the DNA folder.`, 'write "entry": "index.ts".');
  }
  const env: Record<string, string> = {};
  if (r.env !== undefined) {
    if (r.env === null || typeof r.env !== 'object' || Array.isArray(r.env)) {
      throw bad(`entry '${name}': "env" must be an object of strings.`, 'write "env": { "KEY": "value" }.');
    }
    for (const [k, v] of Object.entries(r.env)) {
      if (typeof v !== 'string') {
        throw bad(`entry '${name}': env ${JSON.stringify(k)} must have a string value.`, 'quote the value.');
      }
      const refused = refusedEnvKey(k);
      if (refused !== undefined) {
        throw bad(
          `entry '${name}': env ${JSON.stringify(k)} is refused: ${refused}.`,
          'remove it; a cell configures its own code only (the Root sets CELL_* itself).',
        );
      }
      env[k] = v;
    }
  }
  const calls = stringList(name, 'calls', r.calls).map((peer) => validateCellName(peer));
  const contracts = stringList(name, 'contracts', r.contracts).map((c) => (isAbsolute(c) ? c : resolve(base, c)));
  const nats = natsEntry(name, r.nats, base);
  const restart = parseRestart(name, r.restart);
  return {
    name,
    dir: isAbsolute(r.dna) ? r.dna : resolve(base, r.dna),
    calls,
    contracts,
    ...(typeof r.entry === 'string' ? { entry: r.entry } : {}),
    limits: parseLimits(r.limits),
    network: r.network === true,
    lan: r.lan === true,
    autostart: r.autostart !== false,
    env,
    ...(nats === undefined ? {} : { nats }),
    ...(restart === undefined ? {} : { restart }),
  };
}

function unknownKey(name: string, where: string, key: string, known: readonly string[]): CellError {
  const near = nearest(key, known);
  return bad(
    `entry '${name}': ${where} has an unknown field "${key}".`,
    near === undefined ? `the fields are ${known.join(', ')}.` : `did you mean "${near}"?`,
  );
}

/**
 * Checks a `nats` field: false (off), a URL, a list of URLs, or the settings object. Only its shape is
 * checked here; the cell's NATS client checks the rest when it connects. File paths are resolved
 * against the manifest's folder, since the Root hands the files over (never their content in argv).
 */
function natsEntry(name: string, raw: unknown, base: string): NatsEntry | undefined {
  if (raw === undefined || raw === false) return undefined;
  const urls = (v: unknown): string[] => {
    const list = typeof v === 'string' ? v.split(',') : Array.isArray(v) ? v : null;
    const out = list?.map((u) => (typeof u === 'string' ? u.trim() : '')).filter((u) => u !== '') ?? [];
    const badUrl = out.find((u) => !NATS_URL.test(u));
    if (list === null || out.length === 0 || badUrl !== undefined) {
      throw bad(
        `entry '${name}': "nats" needs server URLs${badUrl === undefined ? '' : `; ${JSON.stringify(badUrl)} is not one`}.`,
        'write "nats": "nats://host:4222" (or a list, or { "servers": [...] }).',
      );
    }
    return out;
  };
  if (typeof raw === 'string' || Array.isArray(raw)) return { servers: urls(raw) };
  if (raw === null || typeof raw !== 'object') {
    throw bad(`entry '${name}': "nats" must be false, a URL, a list of URLs or an object.`, 'see docs/NATS.md § 5.');
  }
  const r = raw as Record<string, unknown>;
  for (const key of Object.keys(r)) if (!NATS_KEYS.includes(key)) throw unknownKey(name, '"nats"', key, NATS_KEYS);
  const text = (key: string, v: unknown): string | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '') throw bad(`entry '${name}': nats.${key} must be a string.`, 'quote it.');
    return v;
  };
  const file = (key: string, v: unknown) => {
    const t = text(key, v);
    return t === undefined ? undefined : isAbsolute(t) ? t : resolve(base, t);
  };
  const entry: NatsEntry = { servers: urls(r.servers) };
  for (const key of NATS_FILE_KEYS) {
    const f = file(key, r[key]);
    if (f !== undefined) entry[key] = f;
  }
  for (const key of ['user', 'inboxPrefix', 'version'] as const) {
    const t = text(key, r[key]);
    if (t !== undefined) entry[key] = t;
  }
  if (r.tls !== undefined) {
    if (r.tls === null || typeof r.tls !== 'object' || Array.isArray(r.tls)) {
      throw bad(`entry '${name}': nats.tls must be an object.`, 'write "tls": { "caFile": "…" }.');
    }
    const tls: NonNullable<NatsEntry['tls']> = {};
    for (const [key, v] of Object.entries(r.tls)) {
      if (!(NATS_TLS_KEYS as readonly string[]).includes(key)) throw unknownKey(name, 'nats.tls', key, NATS_TLS_KEYS);
      const f = file(`tls.${key}`, v);
      if (f !== undefined) tls[key as (typeof NATS_TLS_KEYS)[number]] = f;
    }
    entry.tls = tls;
  }
  return entry;
}

function stringList(name: string, key: string, value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || v === '')) {
    throw bad(`entry '${name}': "${key}" must be a list of strings.`, `write "${key}": ["…"] or remove it.`);
  }
  return [...new Set(value as string[])];
}

/**
 * Reads and checks a cell.json: `{ "cells": { "<name>": { "dna": "./dir", … } } }`. A syntax error
 * says where (byte, line, column), never what: the file is not shown back.
 */
export function loadManifest(path: string): DnaSpec[] {
  let text: string;
  try {
    const st = statSync(path);
    // A request names the file: refuse devices, FIFOs and giant files rather than read them.
    if (!st.isFile() || st.size > 1024 * 1024) {
      throw new Error(`not a regular file of at most 1 MiB (${st.isFile() ? `${st.size} bytes` : 'not a file'})`);
    }
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CellError('E_INVALID_ARGUMENT', `cannot read the manifest ${path}: ${(err as Error).message}`, {
      fix: 'run `cell up` in a folder with a cell.json, or pass its path.',
      cause: err,
    });
  }
  let json: unknown;
  try {
    json = parseJsonText(text, path);
  } catch (err) {
    // Position only: V8's own message quotes the text, and the file may not be a manifest at all.
    throw bad((err as Error).message, 'fix the syntax at that position.');
  }
  if (json !== null && typeof json === 'object' && !Array.isArray(json)) {
    for (const key of Object.keys(json)) {
      if (TOP_KEYS.includes(key)) continue;
      const near = nearest(key, TOP_KEYS);
      throw bad(
        `${path} has an unknown field "${key}".`,
        near === undefined ? 'a manifest has "cells" (and "$schema").' : `did you mean "${near}"?`,
      );
    }
  }
  const cells = (json as { cells?: unknown } | null)?.cells;
  if (cells === null || typeof cells !== 'object' || Array.isArray(cells)) {
    throw bad(`${path} needs a "cells" object.`, 'write { "cells": { "<name>": { "dna": "./dir" } } }.');
  }
  const manifestDir = dirname(path);
  return Object.entries(cells as Record<string, unknown>).map(([name, raw]) => ({
    ...dnaSpec(name, raw, manifestDir),
    manifest: path,
    manifestDir,
  }));
}
