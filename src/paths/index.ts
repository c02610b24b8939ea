import { homedir } from 'node:os';
import { join } from 'node:path';
import { CellError } from '../errors/index.js';

/**
 * Where Cell keeps its files. Every path honours an environment override so tests and sandboxes
 * can point a whole mesh at a private directory. Unlike the original, there is no silent fallback
 * to a shared /tmp directory another user could own.
 */
export function cellHome(): string {
  return process.env.CELL_HOME ?? join(homedir(), '.cell');
}

export function socketDir(): string {
  return process.env.CELL_SOCKET_DIR ?? join(cellHome(), 'run');
}

export function rootSocketPath(): string {
  return process.env.CELL_UMBILICAL ?? join(socketDir(), 'mitosis.sock');
}

export function cacheDir(): string {
  return join(cellHome(), 'cache');
}

export function logDir(): string {
  return join(cellHome(), 'logs');
}

export function dnaDir(): string {
  return join(cellHome(), 'dna');
}

const CELL_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** Cell names become file names and cgroup names: reject anything that could traverse a path. */
export function validateCellName(name: string): string {
  if (typeof name !== 'string' || !CELL_NAME.test(name)) {
    throw new CellError('E_NAME_INVALID', `invalid cell name ${JSON.stringify(name)}.`, {
      fix: 'use 1-63 characters of lowercase letters, digits, "-" or "_", starting with a letter or digit.',
    });
  }
  return name;
}

export function cellSocketPath(name: string): string {
  return join(socketDir(), `${validateCellName(name)}.sock`);
}
