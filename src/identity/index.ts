import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { CellIdentity } from '../paths/index.js';
import { bootInfo, validateCellName } from '../paths/index.js';
import { signCert } from './cert.js';
import { loadOrCreateRootKey } from './key.js';

/**
 * Root-attested cell identity (docs/PROTOCOL.md § 2.3.1). The operator's Ed25519 key signs a small
 * certificate per cell process (name, generation, the process's own public key); at the handshake
 * a caller sends a random challenge and the cell answers with its certificate and a signature over
 * that challenge, so a process that merely binds a socket at a cell's path cannot pose as the cell.
 *
 * Who holds what:
 * - the operator's processes (the Root, the CLI, programs run by the user outside any cell) read or
 *   create the key at `$CELL_HOME/root/identity.key`;
 * - a cell started by the Root gets its identity and the Root's public key in its boot contract
 *   (`bootInfo()`), never the key itself.
 */
export type { CellCert } from './cert.js';
export {
  attest,
  CHALLENGE_BYTES,
  decodeCert,
  identityCert,
  SIGNATURE_BYTES,
  signCert,
  verifyAttestation,
  verifyCert,
} from './cert.js';
export { loadOrCreateRootKey };

/** Issues a fresh identity: a new Ed25519 key pair for the cell process and its certificate. */
export function issueIdentity(rootKey: KeyObject, options: { cell: string; generation: number }): CellIdentity {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const spki = publicKey.export({ format: 'der', type: 'spki' }) as Buffer;
  const cert = signCert(rootKey, {
    cell: validateCellName(options.cell),
    generation: options.generation,
    issuedAt: Date.now(),
    publicKey: spki.subarray(spki.length - 32),
  });
  return {
    cert: cert.toString('base64'),
    key: (privateKey.export({ format: 'der', type: 'pkcs8' }) as Buffer).toString('base64'),
  };
}

/** The public half of a root key as the boot contract carries it (SPKI DER, base64). */
export function exportRootPublicKey(rootKey: KeyObject): string {
  const pub = rootKey.type === 'private' ? createPublicKey(rootKey) : rootKey;
  return (pub.export({ format: 'der', type: 'spki' }) as Buffer).toString('base64');
}

/** Self-issued identities of this operator process, per root key and cell name. */
const selfIssued = new WeakMap<KeyObject, Map<string, CellIdentity>>();

/**
 * The identity a process serves cell `cell` with, or why it has none:
 * 1. inside a cell, the one its boot contract carries when the contract is for that cell;
 * 2. in an operator process that can read (or create) the Root's key, one it issues itself
 *    (generation 0, issued once per name);
 * 3. otherwise none: callers that verify then refuse the connection.
 */
export function servingIdentity(cell: string): { identity: CellIdentity } | { identity: undefined; reason: string } {
  const boot = bootInfo();
  if (boot !== undefined) {
    if (boot.name === cell && boot.identity !== undefined) return { identity: boot.identity };
    return {
      identity: undefined,
      reason:
        boot.name === cell
          ? 'the Root started this cell without an identity'
          : `this process was started as cell '${boot.name}', not '${cell}'`,
    };
  }
  let rootKey: KeyObject;
  try {
    rootKey = loadOrCreateRootKey();
  } catch (err) {
    return { identity: undefined, reason: (err as Error).message };
  }
  let issued = selfIssued.get(rootKey);
  if (issued === undefined) {
    issued = new Map();
    selfIssued.set(rootKey, issued);
  }
  let identity = issued.get(cell);
  if (identity === undefined) {
    identity = issueIdentity(rootKey, { cell, generation: 0 });
    issued.set(cell, identity);
  }
  return { identity };
}

/** The public keys decoded from boot contracts, by their base64 text. */
const bootKeys = new Map<string, KeyObject>();

/**
 * The Root public key a caller verifies cells with: the boot contract's inside a cell, else the
 * public half of the operator's key (created on first use). `key` is undefined, with the reason,
 * only when neither can be had (a cell started without one, an unreadable CELL_HOME): callers then
 * skip the check and their transport status says so.
 */
export function callerRootKey(): { key: KeyObject; reason?: undefined } | { key: undefined; reason: string } {
  const boot = bootInfo();
  if (boot !== undefined) {
    const text = boot.rootKey;
    if (text === undefined || text === '') return { key: undefined, reason: 'the boot contract carries no Root key' };
    let key = bootKeys.get(text);
    if (key === undefined) {
      try {
        key = createPublicKey({ key: Buffer.from(text, 'base64'), format: 'der', type: 'spki' });
      } catch (err) {
        return { key: undefined, reason: `the boot contract's Root key is unreadable (${(err as Error).message})` };
      }
      bootKeys.set(text, key);
    }
    return { key };
  }
  try {
    return { key: publicHalf(loadOrCreateRootKey()) };
  } catch (err) {
    return { key: undefined, reason: (err as Error).message };
  }
}

const publicHalves = new WeakMap<KeyObject, KeyObject>();

function publicHalf(privateKey: KeyObject): KeyObject {
  let pub = publicHalves.get(privateKey);
  if (pub === undefined) {
    pub = createPublicKey(privateKey);
    publicHalves.set(privateKey, pub);
  }
  return pub;
}
