import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { CellError } from '../errors/index.js';
import type { CellIdentity } from '../paths/index.js';
import { validateCellName } from '../paths/index.js';

/**
 * The cell certificate and the handshake attestation (docs/PROTOCOL.md § 2.3.1).
 *
 * Certificate (little-endian):
 *   0      u8   version (1)
 *   1      u8   cell name length n
 *   2      n    cell name (ASCII, a valid cell name)
 *   2+n    u32  generation
 *   6+n    u64  issued at, ms since the Unix epoch
 *   14+n   32   the cell's Ed25519 public key (raw)
 *   46+n   64   the Root's Ed25519 signature over "cell-cert-v1\0" ‖ bytes [0, 46+n)
 *
 * Attestation (the WELCOME trailer): u16 certificate length ‖ certificate ‖ the cell key's 64-byte
 * signature over "cell-attest-v1\0" ‖ challenge[32] ‖ fingerprint u64 ‖ service name (UTF-8).
 */
export const CERT_VERSION = 1;
export const CHALLENGE_BYTES = 32;
export const SIGNATURE_BYTES = 64;
const PUBLIC_KEY_BYTES = 32;
const FIXED_BYTES = 1 + 1 + 4 + 8 + PUBLIC_KEY_BYTES + SIGNATURE_BYTES;
const CERT_LABEL = Buffer.from('cell-cert-v1\0', 'latin1');
const ATTEST_LABEL = Buffer.from('cell-attest-v1\0', 'latin1');
/** DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows it. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** What a certificate says, once its signature checked out. */
export interface CellCert {
  version: number;
  cell: string;
  generation: number;
  /** ms since the Unix epoch. */
  issuedAt: number;
  /** The cell's Ed25519 public key, raw 32 bytes. */
  publicKey: Buffer;
}

/** Encodes and signs a certificate with the Root's private key. */
export function signCert(rootKey: KeyObject, cert: Omit<CellCert, 'version'>): Buffer {
  const name = Buffer.from(validateCellName(cert.cell), 'latin1');
  if (cert.publicKey.length !== PUBLIC_KEY_BYTES) {
    throw new CellError(
      'E_INVALID_ARGUMENT',
      `a cell public key is ${PUBLIC_KEY_BYTES} bytes, not ${cert.publicKey.length}.`,
    );
  }
  if (!Number.isInteger(cert.generation) || cert.generation < 0 || cert.generation > 0xffffffff) {
    throw new CellError('E_INVALID_ARGUMENT', `generation ${cert.generation} is not a u32.`);
  }
  const b = Buffer.alloc(FIXED_BYTES + name.length);
  let o = 0;
  b[o++] = CERT_VERSION;
  b[o++] = name.length;
  o += name.copy(b, o);
  o = b.writeUInt32LE(cert.generation, o);
  o = b.writeBigUInt64LE(BigInt(Math.max(0, Math.floor(cert.issuedAt))), o);
  o += cert.publicKey.copy(b, o);
  sign(null, Buffer.concat([CERT_LABEL, b.subarray(0, o)]), rootKey).copy(b, o);
  return b;
}

/** Why bytes are not a certificate of this format, or undefined when the layout is sound. */
function layoutProblem(b: Buffer): string | undefined {
  if (b.length < FIXED_BYTES + 1) return `${b.length} bytes is too short for a certificate`;
  if (b[0] !== CERT_VERSION) return `certificate version ${b[0]} (this side reads ${CERT_VERSION})`;
  if (b.length !== FIXED_BYTES + b[1]) return `certificate of ${b.length} bytes does not match its name length ${b[1]}`;
  return undefined;
}

/** Reads a certificate's fields without checking its signature (diagnostics; use verifyCert to trust it). */
export function decodeCert(b: Buffer): CellCert {
  const problem = layoutProblem(b);
  if (problem !== undefined) throw new CellError('E_IDENTITY_MISMATCH', `malformed cell certificate: ${problem}.`);
  const n = b[1];
  const o = 2 + n;
  return {
    version: b[0],
    cell: b.toString('latin1', 2, o),
    generation: b.readUInt32LE(o),
    issuedAt: Number(b.readBigUInt64LE(o + 4)),
    publicKey: Buffer.from(b.subarray(o + 12, o + 12 + PUBLIC_KEY_BYTES)),
  };
}

interface VerifiedCert {
  cert: CellCert;
  /** The cell's public key, ready for verify(). */
  key: KeyObject;
}

/** Certificates whose Root signature already checked out, by root key and certificate bytes. */
const verified = new Map<string, VerifiedCert>();
const VERIFIED_MAX = 256;
const keyIds = new WeakMap<KeyObject, string>();

function keyId(key: KeyObject): string {
  let id = keyIds.get(key);
  if (id === undefined) {
    id = (key.export({ format: 'der', type: 'spki' }) as Buffer).toString('base64');
    keyIds.set(key, id);
  }
  return id;
}

/**
 * Checks a certificate's Root signature and returns its fields and the cell's key; null when the
 * signature does not check out (or the bytes are no certificate). Verified certificates are cached
 * (bounded), so a caller that reconnects to the same cell pays only the attestation's signature.
 */
function verifyCertCached(b: Buffer, rootPublicKey: KeyObject): VerifiedCert | null {
  const id = `${keyId(rootPublicKey)}|${b.toString('base64')}`;
  const hit = verified.get(id);
  if (hit !== undefined) return hit;
  if (layoutProblem(b) !== undefined) return null;
  const signedEnd = b.length - SIGNATURE_BYTES;
  const ok = verify(null, Buffer.concat([CERT_LABEL, b.subarray(0, signedEnd)]), rootPublicKey, b.subarray(signedEnd));
  if (!ok) return null;
  const cert = decodeCert(b);
  const entry: VerifiedCert = { cert, key: rawPublicKey(cert.publicKey) };
  if (verified.size >= VERIFIED_MAX) verified.delete(verified.keys().next().value as string);
  verified.set(id, entry);
  return entry;
}

/** Checks a certificate against the Root's public key; E_IDENTITY_MISMATCH when it was not signed by it. */
export function verifyCert(b: Buffer, rootPublicKey: KeyObject): CellCert {
  const v = verifyCertCached(b, rootPublicKey);
  if (v === null) {
    const problem = layoutProblem(b);
    throw new CellError(
      'E_IDENTITY_MISMATCH',
      problem === undefined
        ? 'the cell certificate is not signed by this Root.'
        : `malformed cell certificate: ${problem}.`,
    );
  }
  return v.cert;
}

function rawPublicKey(raw: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** The parsed form of an identity, kept per identity object (the key is parsed once). */
const parsed = new WeakMap<CellIdentity, { cert: Buffer; key: KeyObject }>();

function parseIdentity(identity: CellIdentity): { cert: Buffer; key: KeyObject } {
  let p = parsed.get(identity);
  if (p === undefined) {
    p = {
      cert: Buffer.from(identity.cert, 'base64'),
      key: createPrivateKey({ key: Buffer.from(identity.key, 'base64'), format: 'der', type: 'pkcs8' }),
    };
    parsed.set(identity, p);
  }
  return p;
}

/** The certificate an identity carries, decoded (its signature is not checked). */
export function identityCert(identity: CellIdentity): CellCert {
  return decodeCert(parseIdentity(identity).cert);
}

function attestedBytes(challenge: Uint8Array, fingerprint: bigint, serviceName: string): Buffer {
  const fp = Buffer.alloc(8);
  fp.writeBigUInt64LE(BigInt.asUintN(64, fingerprint));
  return Buffer.concat([ATTEST_LABEL, challenge, fp, Buffer.from(serviceName, 'utf8')]);
}

/**
 * The server's answer to a HELLO that asked for attestation: u16 certificate length ‖ certificate ‖
 * the cell key's signature over the challenge, the contract's fingerprint and the service name.
 */
export function attest(
  identity: CellIdentity,
  challenge: Uint8Array,
  fingerprint: bigint,
  serviceName: string,
): Buffer {
  if (challenge.length !== CHALLENGE_BYTES) {
    throw new CellError(
      'E_INVALID_ARGUMENT',
      `an attestation challenge is ${CHALLENGE_BYTES} bytes, not ${challenge.length}.`,
    );
  }
  const { cert, key } = parseIdentity(identity);
  const out = Buffer.alloc(2 + cert.length + SIGNATURE_BYTES);
  out.writeUInt16LE(cert.length, 0);
  cert.copy(out, 2);
  sign(null, attestedBytes(challenge, fingerprint, serviceName), key).copy(out, 2 + cert.length);
  return out;
}

/** What a caller saw, for the message of E_IDENTITY_MISMATCH. */
function mismatch(
  expectedCell: string,
  where: string,
  presented: string,
  details: Record<string, unknown> = {},
): CellError {
  return new CellError(
    'E_IDENTITY_MISMATCH',
    `the process answering at ${where} is not the cell the Root started under that name: ${presented}.`,
    {
      cell: expectedCell,
      fix: `stop whatever listens at the cell's socket (\`ss -xlp\` names it), then start '${expectedCell}' through the Root (\`cell spawn ${expectedCell}\`) or from an operator process that can read the Root's key ($CELL_HOME/root/identity.key); caller and cell must use the same CELL_HOME.`,
      details: { expected: expectedCell, ...details },
    },
  );
}

/**
 * Checks a server's attestation: the certificate is signed by the Root, names `expectedCell`, and
 * its key signed this connection's challenge, fingerprint and service name. Returns the certificate;
 * throws E_IDENTITY_MISMATCH naming the expected cell, what was presented and the fix.
 * `bytes` undefined means the server presented no identity at all; `where` names the endpoint in
 * the message (default "its socket").
 */
export function verifyAttestation(
  bytes: Buffer | undefined,
  rootPublicKey: KeyObject,
  expectedCell: string,
  challenge: Uint8Array,
  fingerprint: bigint,
  serviceName: string,
  where = 'its socket',
): CellCert {
  if (bytes === undefined || bytes.length === 0) {
    throw mismatch(expectedCell, where, 'it presented no identity (no attestation in its WELCOME)', {
      presented: 'none',
    });
  }
  if (bytes.length < 2) throw mismatch(expectedCell, where, 'its attestation is truncated', { presented: 'malformed' });
  const certLength = bytes.readUInt16LE(0);
  if (bytes.length !== 2 + certLength + SIGNATURE_BYTES) {
    throw mismatch(expectedCell, where, `its attestation of ${bytes.length} bytes is malformed`, {
      presented: 'malformed',
    });
  }
  const certBytes = bytes.subarray(2, 2 + certLength);
  const v = verifyCertCached(certBytes, rootPublicKey);
  if (v === null) {
    const problem = layoutProblem(certBytes);
    throw mismatch(
      expectedCell,
      where,
      problem === undefined
        ? 'its certificate is not signed by this Root (bad signature)'
        : `malformed certificate (${problem})`,
      { presented: problem === undefined ? 'bad certificate signature' : 'malformed' },
    );
  }
  if (v.cert.cell !== expectedCell) {
    throw mismatch(expectedCell, where, `it presented a certificate for cell '${v.cert.cell}'`, {
      presented: v.cert.cell,
      generation: v.cert.generation,
    });
  }
  const signature = bytes.subarray(2 + certLength);
  if (!verify(null, attestedBytes(challenge, fingerprint, serviceName), v.key, signature)) {
    throw mismatch(
      expectedCell,
      where,
      "its certificate is valid but the signature over this connection's challenge is not (bad signature)",
      {
        presented: 'bad attestation signature',
      },
    );
  }
  return v.cert;
}
