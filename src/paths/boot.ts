import { closeSync, readFileSync } from 'node:fs';
import { CellError } from '../errors/index.js';

/**
 * The cell environment contract: what the Root hands a cell it starts. Nothing of it travels in argv
 * (another local user reads /proc/<pid>/cmdline). The Capsid writes it as JSON into a pipe on fd
 * BOOT_FD; the boot entry (src/capsid/boot.ts) inside the sandbox reads it before any cell code runs,
 * sets the cell's environment (the manifest's `env` and the CELL_* variables below) and keeps the
 * secrets (the cell's identity key) in memory only, where `bootInfo()` finds them.
 */
export interface CellBoot {
  name: string;
  generation: number;
  /** The rendezvous directory (read-only except `<socketDir>/<name>/`). */
  socketDir: string;
  /** Where this generation listens: `<socketDir>/<name>/<name>.<gen>.sock`. */
  bindPath: string;
  /** The cell's operator-facing tap socket. */
  tapPath: string;
  /**
   * The cell's operator-facing inspection socket: the only place its `metrics` built-in answers (on
   * the public socket other cells could read them).
   */
  inspectPath: string;
  /** The cell's narrow channel to the Root (grow the peers its manifest `calls`). */
  umbilical: string;
  /** Serve other hosts (Axon). */
  lan: boolean;
  /** The manifest's `env`, already checked against RESERVED_ENV. */
  env: Record<string, string>;
  /** Root-signed identity the Membrane proves at the handshake. */
  identity?: CellIdentity;
  /** The Root's public key (SPKI DER, base64): callers verify every local cell's identity with it. */
  rootKey?: string;
  /**
   * The bundle to load, for a process started before its cell was known (a stem cell, started with
   * `--stem`); otherwise the bundle is the boot entry's argument.
   */
  bundle?: string;
  /** Set for an unsandboxed cell: it stops when this process (the Root) is gone. */
  parentPid?: number;
}

/** A cell's identity: a certificate the Root signed and the private key it certifies. */
export interface CellIdentity {
  /** The certificate (docs/PROTOCOL.md § 2.3.1), base64. */
  cert: string;
  /** The cell's Ed25519 private key, PKCS#8 DER, base64. */
  key: string;
}

/** The file descriptor the boot JSON arrives on. */
export const BOOT_FD = 3;
/** A stem cell writes one byte here once Node is up and it waits for its contract on BOOT_FD. */
export const STEM_READY_FD = 5;

/** The environment variables of the contract (also set by the boot entry, for code that reads env). */
export const CELL_ENV = {
  name: 'CELL_NAME',
  generation: 'CELL_GENERATION',
  socketDir: 'CELL_SOCKET_DIR',
  bindPath: 'CELL_BIND_PATH',
  tapPath: 'CELL_TAP_PATH',
  umbilical: 'CELL_UMBILICAL',
  lan: 'CELL_LAN',
} as const;

/**
 * The NATS settings of a cell (docs/NATS.md § 5), each overriding the matching field of the `nats`
 * option: what the Root sets from a manifest's `nats` field, and what an operator sets by hand.
 */
export const NATS_ENV = {
  servers: 'CELL_NATS',
  credsFile: 'CELL_NATS_CREDS',
  nkeySeedFile: 'CELL_NATS_NKEY',
  user: 'CELL_NATS_USER',
  passwordFile: 'CELL_NATS_PASSWORD_FILE',
  tokenFile: 'CELL_NATS_TOKEN_FILE',
  caFile: 'CELL_NATS_TLS_CA',
  certFile: 'CELL_NATS_TLS_CERT',
  keyFile: 'CELL_NATS_TLS_KEY',
  inboxPrefix: 'CELL_NATS_INBOX_PREFIX',
  version: 'CELL_NATS_VERSION',
} as const;

/**
 * The connection fields of the `nats` option beside its server list (docs/NATS.md § 5): one shape for
 * the Membrane option and a manifest's checked `nats` field, whose file paths the Root hands over.
 */
export interface NatsConnectionFields {
  credsFile?: string;
  nkeySeedFile?: string;
  user?: string;
  passwordFile?: string;
  tokenFile?: string;
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  inboxPrefix?: string;
  version?: string;
}

/**
 * Manifest `env` keys that are refused: they would change how the loader, Node or Cell itself behave
 * (LD_PRELOAD, NODE_OPTIONS, …) rather than configure the cell's own code.
 */
export const RESERVED_ENV: readonly RegExp[] = [/^LD_/, /^NODE_/, /^CELL_/, /^GCONV_PATH$/, /^MALLOC_/, /^UV_/];

/** The reason a manifest env key is refused, or undefined when it is allowed. */
export function refusedEnvKey(key: string): string | undefined {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) return 'not a valid environment variable name';
  const hit = RESERVED_ENV.find((r) => r.test(key));
  return hit === undefined
    ? undefined
    : `reserved (${hit.source.replace(/[\^$]/g, '')}: loader, Node.js and Cell settings)`;
}

const BOOT = Symbol.for('cell.boot');

/** What the boot entry left for this process (undefined when the process was not started by a Root). */
export function bootInfo(): CellBoot | undefined {
  return (globalThis as Record<symbol, CellBoot | undefined>)[BOOT];
}

export function setBootInfo(boot: CellBoot): void {
  (globalThis as Record<symbol, CellBoot | undefined>)[BOOT] = boot;
}

/** Reads and closes the boot pipe; E_SPAWN_FAILED naming the cause when it is not the contract. */
export function readBootFrom(fd: number): CellBoot {
  let text: string;
  try {
    text = readFileSync(fd, 'utf8');
  } catch (err) {
    throw new CellError('E_SPAWN_FAILED', `cannot read the boot contract on fd ${fd}: ${(err as Error).message}.`, {
      fix: 'start cells through the Root (`cell up`); the boot entry is not meant to be run by hand.',
    });
  } finally {
    try {
      closeSync(fd);
    } catch {}
  }
  let boot: CellBoot;
  try {
    boot = JSON.parse(text) as CellBoot;
  } catch {
    throw new CellError('E_SPAWN_FAILED', `the boot contract on fd ${fd} is not JSON (${text.length} bytes).`, {
      fix: 'start cells through the Root (`cell up`); the boot entry is not meant to be run by hand.',
    });
  }
  if (typeof boot?.name !== 'string' || typeof boot.bindPath !== 'string' || typeof boot.env !== 'object') {
    throw new CellError('E_SPAWN_FAILED', `the boot contract on fd ${fd} lacks name, bindPath or env.`, {
      fix: 'start cells through the Root (`cell up`).',
    });
  }
  return boot;
}
