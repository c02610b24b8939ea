import type { KeyObject, webcrypto as WebCrypto } from 'node:crypto';
import { createPrivateKey, createPublicKey, randomBytes, webcrypto, X509Certificate } from 'node:crypto';

type CryptoKey = WebCrypto.CryptoKey;
type CryptoKeyPair = WebCrypto.CryptoKeyPair;

import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { CellError } from '../../errors/index.js';
import { cellHome } from '../../paths/index.js';

/**
 * The mesh identity: one certificate authority per mesh and one certificate per host, all ECDSA P-256
 * (TLS 1.3 in Node accepts it for both sides, and WebCrypto can sign with it). The CA key never leaves
 * the CA host and a host key never leaves its host: joining is a CSR carried to the CA host and a
 * signed bundle carried back.
 *
 * Files under `<CELL_HOME>/mesh/` (directory 0700, keys 0600):
 *   ca.crt    the mesh CA certificate (public; every host has it)
 *   ca.key    the CA private key (CA host only)
 *   host.key  this host's private key
 *   host.csr  this host's certificate request (until signed)
 *   host.crt  this host's certificate, issued by the mesh CA
 */

const EC_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
const HOST_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
/** Marks certificates of this mesh kind; receivers also require the chain to the mesh CA. */
export const MESH_ORGANIZATION = 'cell-mesh';

type X509Module = typeof import('@peculiar/x509');
let x509Module: Promise<X509Module> | undefined;

/**
 * Certificate generation is needed only by the `cell mesh` commands; the runtime verifies with Node's
 * own `X509Certificate`. Loading the generator lazily keeps its metadata polyfill out of every cell.
 */
function loadX509(): Promise<X509Module> {
  x509Module ??= (async () => {
    await import('reflect-metadata');
    const x509 = await import('@peculiar/x509');
    x509.cryptoProvider.set(webcrypto as unknown as Parameters<X509Module['cryptoProvider']['set']>[0]);
    return x509;
  })();
  return x509Module;
}

export interface MeshPaths {
  dir: string;
  caCert: string;
  caKey: string;
  hostKey: string;
  hostCsr: string;
  hostCert: string;
}

export function meshPaths(home: string = cellHome()): MeshPaths {
  const dir = join(home, 'mesh');
  return {
    dir,
    caCert: join(dir, 'ca.crt'),
    caKey: join(dir, 'ca.key'),
    hostKey: join(dir, 'host.key'),
    hostCsr: join(dir, 'host.csr'),
    hostCert: join(dir, 'host.crt'),
  };
}

/** The passphrase protecting keys at rest: explicit, else CELL_MESH_PASSPHRASE(_FILE), else none. */
export function meshPassphrase(explicit?: string): string | undefined {
  if (explicit !== undefined && explicit !== '') return explicit;
  const env = process.env.CELL_MESH_PASSPHRASE;
  if (env) return env;
  const file = process.env.CELL_MESH_PASSPHRASE_FILE;
  if (file) return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  return undefined;
}

export function validateHostName(name: string): string {
  if (typeof name !== 'string' || name.length > 253 || !HOST_NAME.test(name)) {
    throw new CellError('E_INVALID_ARGUMENT', `invalid mesh host name ${JSON.stringify(name)}.`, {
      fix: 'use lowercase DNS labels (letters, digits, "-", separated by "."), e.g. "rack1-node3".',
    });
  }
  return name;
}

export function defaultHostName(): string {
  const h = hostname()
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, '-')
    .replace(/^-+|-+$/g, '');
  return HOST_NAME.test(h) ? h : 'host';
}

function ensureMeshDir(paths: MeshPaths): void {
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  chmodSync(paths.dir, 0o700);
}

/** Written to a temp name then renamed, with 0600 from creation, so no reader sees a partial key. */
function writePrivate(path: string, data: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode: 0o600, flag: 'w' });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

function writePublic(path: string, data: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode: 0o644 });
  renameSync(tmp, path);
}

async function generateKeyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC_ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function exportPrivatePem(key: CryptoKey, passphrase: string | undefined): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  const obj = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  if (passphrase === undefined) return obj.export({ type: 'pkcs8', format: 'pem' }) as string;
  return obj.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase }) as string;
}

function readPrivateKey(path: string, passphrase: string | undefined, what: string): KeyObject {
  if (!existsSync(path)) {
    throw new CellError('E_MESH_IDENTITY', `no ${what} at ${path}.`, {
      fix:
        what === 'CA key'
          ? 'run `cell mesh sign` on the host where `cell mesh init` ran.'
          : 'run `cell mesh init` or `cell mesh join` first.',
    });
  }
  const pem = readFileSync(path, 'utf8');
  try {
    return createPrivateKey(passphrase === undefined ? { key: pem } : { key: pem, passphrase });
  } catch (cause) {
    const encrypted = pem.includes('ENCRYPTED');
    throw new CellError(
      'E_MESH_IDENTITY',
      `cannot read the ${what} at ${path}${encrypted ? ' (it is encrypted)' : ''}.`,
      {
        cause,
        fix: encrypted
          ? 'give the passphrase with --passphrase-file or CELL_MESH_PASSPHRASE.'
          : 'the key file is damaged; re-run `cell mesh join`.',
      },
    );
  }
}

async function toCryptoKey(key: KeyObject): Promise<CryptoKey> {
  const der = key.export({ type: 'pkcs8', format: 'der' });
  return webcrypto.subtle.importKey('pkcs8', der, EC_ALGORITHM, false, ['sign']);
}

function serialNumber(): string {
  const b = randomBytes(16);
  b[0] = (b[0] as number) & 0x7f; // positive INTEGER
  return b.toString('hex');
}

/** SHA-256 of the DER, lowercase hex without colons: how certificates are named in files and logs. */
export function certFingerprint(cert: X509Certificate): string {
  return cert.fingerprint256.replace(/:/g, '').toLowerCase();
}

function commonName(cert: X509Certificate): string | undefined {
  const m = /(?:^|\n)CN=([^\n]+)/.exec(cert.subject);
  return m?.[1];
}

export interface MeshInitOptions {
  home?: string;
  /** A label for the mesh, placed in the CA's subject. */
  meshName?: string;
  /** This host's name in the mesh; defaults to the machine's host name. */
  hostName?: string;
  passphrase?: string;
  caDays?: number;
  hostDays?: number;
  /** Replace an existing mesh identity. */
  force?: boolean;
}

export interface MeshInitResult {
  caFingerprint: string;
  hostFingerprint: string;
  hostName: string;
  paths: MeshPaths;
}

/** Creates the mesh CA on this host and, since the CA host is also a host, its host certificate. */
export async function initMesh(options: MeshInitOptions = {}): Promise<MeshInitResult> {
  const paths = meshPaths(options.home);
  if (!options.force && (existsSync(paths.caKey) || existsSync(paths.caCert))) {
    throw new CellError('E_MESH_IDENTITY', `a mesh identity already exists in ${paths.dir}.`, {
      fix: 'use it as is, or pass --force to replace it (every host must then join again).',
    });
  }
  const meshName = validateHostName(options.meshName ?? 'mesh');
  const hostName = validateHostName(options.hostName ?? defaultHostName());
  const passphrase = meshPassphrase(options.passphrase);
  const x509 = await loadX509();
  ensureMeshDir(paths);
  const now = Date.now();
  const caKeys = await generateKeyPair();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=${meshName} mesh CA, O=${MESH_ORGANIZATION}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (options.caDays ?? 3650) * DAY_MS),
    keys: caKeys,
    signingAlgorithm: EC_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  writePrivate(paths.caKey, await exportPrivatePem(caKeys.privateKey, passphrase));
  writePublic(paths.caCert, ca.toString('pem'));

  const hostKeys = await generateKeyPair();
  writePrivate(paths.hostKey, await exportPrivatePem(hostKeys.privateKey, passphrase));
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${hostName}, O=${MESH_ORGANIZATION}`,
    keys: hostKeys,
    signingAlgorithm: EC_ALGORITHM,
  });
  const bundle = await signRequestWith(
    x509,
    csr.toString('pem'),
    ca.toString('pem'),
    caKeys.privateKey,
    options.hostDays ?? 365,
  );
  writePublic(paths.hostCert, bundle.certPem);
  return {
    caFingerprint: certFingerprint(new X509Certificate(ca.toString('pem'))),
    hostFingerprint: certFingerprint(new X509Certificate(bundle.certPem)),
    hostName,
    paths,
  };
}

export interface MeshJoinOptions {
  home?: string;
  hostName?: string;
  passphrase?: string;
  force?: boolean;
}

/** Step 1 of joining, on the joining host: a fresh key (kept here) and a CSR to carry to the CA host. */
export async function createJoinRequest(
  options: MeshJoinOptions = {},
): Promise<{ csrPem: string; csrPath: string; hostName: string }> {
  const paths = meshPaths(options.home);
  if (!options.force && existsSync(paths.hostCert)) {
    throw new CellError('E_MESH_IDENTITY', `this host already has a mesh certificate (${paths.hostCert}).`, {
      fix: 'pass --force to create a new key and request (the old certificate stops being used).',
    });
  }
  const hostName = validateHostName(options.hostName ?? defaultHostName());
  const passphrase = meshPassphrase(options.passphrase);
  const x509 = await loadX509();
  ensureMeshDir(paths);
  const keys = await generateKeyPair();
  writePrivate(paths.hostKey, await exportPrivatePem(keys.privateKey, passphrase));
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${hostName}, O=${MESH_ORGANIZATION}`,
    keys,
    signingAlgorithm: EC_ALGORITHM,
  });
  const csrPem = csr.toString('pem');
  writePublic(paths.hostCsr, csrPem);
  return { csrPem, csrPath: paths.hostCsr, hostName };
}

export interface MeshSignOptions {
  home?: string;
  passphrase?: string;
  days?: number;
}

export interface SignedBundle {
  /** The host certificate followed by the CA certificate, PEM: the file carried back to the host. */
  bundlePem: string;
  certPem: string;
  hostName: string;
  fingerprint: string;
}

/** Step 2, on the CA host: checks the CSR's own signature and name, and issues a host certificate. */
export async function signJoinRequest(csrPem: string, options: MeshSignOptions = {}): Promise<SignedBundle> {
  const paths = meshPaths(options.home);
  const caKey = readPrivateKey(paths.caKey, meshPassphrase(options.passphrase), 'CA key');
  if (!existsSync(paths.caCert)) {
    throw new CellError('E_MESH_IDENTITY', `no mesh CA certificate at ${paths.caCert}.`, {
      fix: 'run `cell mesh init` on this host.',
    });
  }
  const caPem = readFileSync(paths.caCert, 'utf8');
  const x509 = await loadX509();
  return signRequestWith(x509, csrPem, caPem, await toCryptoKey(caKey), options.days ?? 365);
}

async function signRequestWith(
  x509: X509Module,
  csrPem: string,
  caPem: string,
  caKey: CryptoKey,
  days: number,
): Promise<SignedBundle> {
  let csr: InstanceType<X509Module['Pkcs10CertificateRequest']>;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (cause) {
    throw new CellError('E_MESH_IDENTITY', 'the certificate request is not a PEM PKCS#10 request.', {
      cause,
      fix: 'pass the host.csr file written by `cell mesh join` on the joining host.',
    });
  }
  let selfSigned = false;
  try {
    selfSigned = await csr.verify();
  } catch {
    selfSigned = false;
  }
  if (!selfSigned) {
    throw new CellError(
      'E_MESH_IDENTITY',
      'the certificate request is not signed by its own key (damaged or forged).',
      {
        fix: 'run `cell mesh join` again on the joining host and carry the new host.csr.',
      },
    );
  }
  const alg = csr.publicKey.algorithm as WebCrypto.EcKeyAlgorithm;
  if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256') {
    throw new CellError(
      'E_MESH_IDENTITY',
      `the request's key is ${alg.name}/${alg.namedCurve ?? '?'}, not ECDSA P-256.`,
      {
        fix: 'create the request with `cell mesh join`.',
      },
    );
  }
  const cn = csr.subjectName.getField('CN')[0];
  const hostName = validateHostName(cn ?? '');
  const ca = new x509.X509Certificate(caPem);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `CN=${hostName}, O=${MESH_ORGANIZATION}`,
    issuer: ca.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + days * DAY_MS),
    signingAlgorithm: EC_ALGORITHM,
    publicKey: csr.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: hostName }]),
      await x509.AuthorityKeyIdentifierExtension.create(ca, false),
    ],
  });
  const certPem = cert.toString('pem');
  return {
    bundlePem: `${certPem}${caPem.endsWith('\n') ? caPem : `${caPem}\n`}`,
    certPem,
    hostName,
    fingerprint: certFingerprint(new X509Certificate(certPem)),
  };
}

export interface MeshInstallOptions {
  home?: string;
  passphrase?: string;
  /**
   * The CA fingerprint the operator read on the CA host. When given, a bundle from any other CA is
   * refused; when absent the bundle's CA is trusted on first install and its fingerprint is returned
   * so the operator can compare.
   */
  expectCaFingerprint?: string;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\r?\n?/g;

/** Step 3, on the joining host: installs the signed bundle after checking it matches the local key. */
export function installJoinBundle(
  bundlePem: string,
  options: MeshInstallOptions = {},
): { caFingerprint: string; hostFingerprint: string; hostName: string } {
  const paths = meshPaths(options.home);
  const pems = bundlePem.match(PEM_CERT) ?? [];
  if (pems.length !== 2) {
    throw new CellError(
      'E_MESH_IDENTITY',
      `the bundle holds ${pems.length} certificates; expected the host certificate then the CA.`,
      {
        fix: 'pass the file written by `cell mesh sign` unchanged.',
      },
    );
  }
  const hostPem = `${(pems[0] as string).trim()}\n`;
  const caPem = `${(pems[1] as string).trim()}\n`;
  const host = new X509Certificate(hostPem);
  const ca = new X509Certificate(caPem);
  const caFingerprint = certFingerprint(ca);
  if (options.expectCaFingerprint !== undefined) {
    const want = options.expectCaFingerprint.replace(/:/g, '').toLowerCase();
    if (want !== caFingerprint) {
      throw new CellError(
        'E_MESH_IDENTITY',
        `the bundle's CA fingerprint ${caFingerprint} is not the expected ${want}.`,
        {
          fix: 'check that the bundle came from your mesh CA host (`cell mesh status` there prints its fingerprint).',
        },
      );
    }
  }
  if (!ca.ca || !host.verify(ca.publicKey) || !ca.verify(ca.publicKey)) {
    throw new CellError('E_MESH_IDENTITY', 'the host certificate in the bundle is not issued by the bundled CA.', {
      fix: 'pass the file written by `cell mesh sign` unchanged.',
    });
  }
  const key = readPrivateKey(paths.hostKey, meshPassphrase(options.passphrase), 'host key');
  const want = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const got = host.publicKey.export({ type: 'spki', format: 'der' });
  if (!want.equals(got)) {
    throw new CellError('E_MESH_IDENTITY', "the certificate is for another key than this host's host.key.", {
      fix: 'sign the host.csr written by the latest `cell mesh join` on this host.',
    });
  }
  writePublic(paths.caCert, caPem);
  writePublic(paths.hostCert, hostPem);
  return { caFingerprint, hostFingerprint: certFingerprint(host), hostName: commonName(host) ?? '' };
}

/** Everything a running cell needs to speak TLS and sign pheromones. Keys stay in memory. */
export interface MeshIdentity {
  hostName: string;
  caPem: string;
  certPem: string;
  /** The host key in PEM, decrypted in memory only. */
  keyPem: string;
  privateKey: KeyObject;
  ca: X509Certificate;
  cert: X509Certificate;
  certDer: Buffer;
  caFingerprint: string;
  hostFingerprint: string;
}

export function loadMeshIdentity(options: { home?: string; passphrase?: string } = {}): MeshIdentity {
  const paths = meshPaths(options.home);
  for (const [path, what] of [
    [paths.caCert, 'mesh CA certificate'],
    [paths.hostCert, 'host certificate'],
  ] as const) {
    if (!existsSync(path)) {
      throw new CellError('E_MESH_IDENTITY', `this host has no ${what} (${path}).`, {
        fix: 'run `cell mesh init` on the first host, or `cell mesh join` / `cell mesh sign` / `cell mesh join --cert` to add this one.',
      });
    }
  }
  const caPem = readFileSync(paths.caCert, 'utf8');
  const certPem = readFileSync(paths.hostCert, 'utf8');
  const privateKey = readPrivateKey(paths.hostKey, meshPassphrase(options.passphrase), 'host key');
  const ca = new X509Certificate(caPem);
  const cert = new X509Certificate(certPem);
  if (!cert.verify(ca.publicKey)) {
    throw new CellError(
      'E_MESH_IDENTITY',
      `the host certificate ${paths.hostCert} is not issued by the mesh CA ${paths.caCert}.`,
      {
        fix: 'join the mesh again (`cell mesh join --force`).',
      },
    );
  }
  const now = Date.now();
  if (Date.parse(cert.validTo) < now) {
    throw new CellError('E_MESH_IDENTITY', `the host certificate expired on ${cert.validTo}.`, {
      fix: 'renew it: `cell mesh join --force`, then `cell mesh sign` on the CA host.',
    });
  }
  return {
    hostName: commonName(cert) ?? '',
    caPem,
    certPem,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    privateKey,
    ca,
    cert,
    certDer: cert.raw,
    caFingerprint: certFingerprint(ca),
    hostFingerprint: certFingerprint(cert),
  };
}

export function meshCommonName(cert: X509Certificate): string | undefined {
  return commonName(cert);
}
