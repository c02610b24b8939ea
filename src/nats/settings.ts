import { CellError } from '../errors/index.js';
import { NATS_ENV, type NatsConnectionFields } from '../paths/boot.js';

/**
 * Where a process reaches NATS and as whom. Secrets are never values here, only paths of files
 * (credentials, nkey seed, password, token, TLS key): they travel by file, not by argv or environment.
 */
export interface NatsSettings {
  /** Server URLs (`nats://host:4222`, `tls://host:4222`); the client fails over between them. */
  readonly servers: readonly string[];
  /** A `.creds` file (user JWT + nkey seed, decentralized auth with nsc). */
  readonly credsFile?: string;
  /** A file holding an nkey user seed (`SU…`), for servers that list nkey users in their config. */
  readonly nkeySeedFile?: string;
  /** User name, with `passwordFile`. */
  readonly user?: string;
  readonly passwordFile?: string;
  /** A file holding an authentication token. */
  readonly tokenFile?: string;
  /** TLS: a CA to trust instead of the system's, and a client certificate and key for mutual TLS. */
  readonly tls?: { readonly caFile?: string; readonly certFile?: string; readonly keyFile?: string };
  /** Prefix of reply inboxes (default `_INBOX`); per-host prefixes let permissions keep replies private. */
  readonly inboxPrefix: string;
  /** The micro service version a serving cell announces (semver; default 0.0.0). */
  readonly version: string;
}

/** What `Membrane.bind(…, { nats })` and a manifest's `nats` field accept. */
export type NatsOption =
  | false
  | string
  | readonly string[]
  | (NatsConnectionFields & { servers: string | readonly string[] });

/** The environment variables, each overriding the matching option field (docs/NATS.md § 5). */
export { NATS_ENV } from '../paths/boot.js';

const SEMVER = /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/;
const SUBJECT_TOKENS = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

/**
 * The settings in effect: `CELL_NATS` (a comma-separated URL list; `0` or empty turns NATS off) wins
 * over the option, as `CELL_LAN` does for Axon; the other variables override single fields. Null when
 * neither names a server. Throws E_INVALID_ARGUMENT for a malformed URL, prefix or version.
 */
export function natsSettings(
  option: NatsOption | undefined = undefined,
  env: NodeJS.ProcessEnv = process.env,
): NatsSettings | null {
  const fromEnv = env[NATS_ENV.servers];
  let base: Exclude<NatsOption, false | string | readonly string[]> | null;
  if (fromEnv !== undefined) {
    base = fromEnv === '' || fromEnv === '0' ? null : { ...objectOf(option), servers: fromEnv };
  } else {
    base = option === undefined || option === false ? null : objectOf(option);
  }
  if (base === null) return null;
  const pick = (key: keyof typeof NATS_ENV, value: string | undefined) => {
    const v = env[NATS_ENV[key]];
    return v !== undefined && v !== '' ? v : value;
  };
  const servers = (typeof base.servers === 'string' ? base.servers.split(',') : [...base.servers])
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(checkServer);
  if (servers.length === 0) return null;
  const caFile = pick('caFile', base.tls?.caFile);
  const certFile = pick('certFile', base.tls?.certFile);
  const keyFile = pick('keyFile', base.tls?.keyFile);
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new CellError('E_INVALID_ARGUMENT', 'a NATS client certificate needs its key, and a key its certificate.', {
      fix: `set both ${NATS_ENV.certFile} and ${NATS_ENV.keyFile} (or tls.certFile and tls.keyFile), or neither.`,
    });
  }
  const inboxPrefix = pick('inboxPrefix', base.inboxPrefix) ?? '_INBOX';
  if (!SUBJECT_TOKENS.test(inboxPrefix)) {
    throw new CellError('E_INVALID_ARGUMENT', `invalid NATS inbox prefix ${JSON.stringify(inboxPrefix)}.`, {
      fix: 'use subject tokens of letters, digits, "_" or "-" separated by dots, e.g. _INBOX_alpha.',
    });
  }
  const version = pick('version', base.version) ?? '0.0.0';
  if (!SEMVER.test(version)) {
    throw new CellError('E_INVALID_ARGUMENT', `NATS service version ${JSON.stringify(version)} is not semver.`, {
      fix: 'use a version like 1.2.3 (micro services announce semantic versions).',
    });
  }
  const settings: {
    -readonly [K in keyof NatsSettings]: NatsSettings[K];
  } = { servers, inboxPrefix, version };
  const credsFile = pick('credsFile', base.credsFile);
  const nkeySeedFile = pick('nkeySeedFile', base.nkeySeedFile);
  const user = pick('user', base.user);
  const passwordFile = pick('passwordFile', base.passwordFile);
  const tokenFile = pick('tokenFile', base.tokenFile);
  if (credsFile !== undefined) settings.credsFile = credsFile;
  if (nkeySeedFile !== undefined) settings.nkeySeedFile = nkeySeedFile;
  if (user !== undefined) settings.user = user;
  if (passwordFile !== undefined) settings.passwordFile = passwordFile;
  if (tokenFile !== undefined) settings.tokenFile = tokenFile;
  if (caFile !== undefined || certFile !== undefined) {
    settings.tls = {
      ...(caFile === undefined ? {} : { caFile }),
      ...(certFile === undefined ? {} : { certFile, keyFile }),
    };
  }
  return settings;
}

function objectOf(option: NatsOption | undefined): Exclude<NatsOption, false | string | readonly string[]> {
  if (option === undefined || option === false) return { servers: [] };
  if (typeof option === 'string' || Array.isArray(option)) return { servers: option as string | readonly string[] };
  return option as Exclude<NatsOption, false | string | readonly string[]>;
}

function checkServer(s: string): string {
  let url: URL;
  try {
    url = new URL(s.includes('://') ? s : `nats://${s}`);
  } catch {
    throw badServer(s);
  }
  if (!['nats:', 'tls:'].includes(url.protocol) || url.hostname === '') throw badServer(s);
  if (url.username !== '' || url.password !== '') {
    throw new CellError('E_INVALID_ARGUMENT', `the NATS server URL ${JSON.stringify(url.host)} carries credentials.`, {
      fix: `keep secrets out of URLs (they end up in process listings and logs): use ${NATS_ENV.user} with ${NATS_ENV.passwordFile}, ${NATS_ENV.tokenFile}, ${NATS_ENV.nkeySeedFile} or ${NATS_ENV.credsFile}.`,
    });
  }
  return `${url.protocol}//${url.host}`;
}

function badServer(s: string): CellError {
  return new CellError('E_INVALID_ARGUMENT', `invalid NATS server URL ${JSON.stringify(s)}.`, {
    fix: `list servers as nats://host:port or tls://host:port, separated by commas (${NATS_ENV.servers}).`,
  });
}

/** Identifies settings that may share one connection (the service version does not matter there). */
export function connectionKey(s: NatsSettings): string {
  return JSON.stringify([
    s.servers,
    s.credsFile,
    s.nkeySeedFile,
    s.user,
    s.passwordFile,
    s.tokenFile,
    s.tls,
    s.inboxPrefix,
  ]);
}
