import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import tls from 'node:tls';
import { CellError } from '../../errors/index.js';
import type { MeshIdentity } from '../identity/index.js';
import { certFingerprint, MESH_ORGANIZATION } from '../identity/index.js';

/** ALPN protocol id: a peer speaking anything else is refused during the handshake. */
export const AXON_ALPN = 'cell-axon/1';

/**
 * TLS for the mesh: TLS 1.3 only, both sides present a certificate, and the only trusted root is the
 * mesh CA (giving `ca` replaces Node's public roots, so a web certificate is worth nothing here).
 */
export function meshServerOptions(identity: MeshIdentity): tls.TlsOptions {
  return {
    key: identity.keyPem,
    cert: identity.certPem,
    ca: identity.caPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    ALPNProtocols: [AXON_ALPN],
    // A peer that connects and never finishes the handshake must not hold a socket for long.
    handshakeTimeout: 5_000,
  };
}

export interface MeshPeerExpectation {
  /** The host certificate fingerprint (sha-256 hex) the peer announced: pins the exact host. */
  fingerprint?: string;
  /** The mesh host name the peer must carry; used as SNI. */
  hostName?: string;
}

/**
 * Client options. The chain to the mesh CA is checked by OpenSSL; `checkServerIdentity` then replaces
 * the web's "name matches the DNS host" rule, which means nothing for IP peers, with the mesh's rule:
 * the certificate is a mesh host certificate, and it is exactly the announced one when known.
 */
export function meshClientOptions(identity: MeshIdentity, expect: MeshPeerExpectation = {}): tls.ConnectionOptions {
  return {
    key: identity.keyPem,
    cert: identity.certPem,
    ca: identity.caPem,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    ALPNProtocols: [AXON_ALPN],
    rejectUnauthorized: true,
    servername: expect.hostName,
    checkServerIdentity: (_host: string, cert: PeerCertificate) => checkMeshPeer(cert, expect),
  };
}

export function checkMeshPeer(cert: PeerCertificate, expect: MeshPeerExpectation = {}): Error | undefined {
  if (!cert?.raw)
    return new CellError('E_TLS', 'the peer presented no certificate.', { fix: 'join the peer host to the mesh.' });
  const subject = cert.subject as unknown as Record<string, string | string[]> | undefined;
  const org = subject?.O;
  if (org !== MESH_ORGANIZATION && !(Array.isArray(org) && org.includes(MESH_ORGANIZATION))) {
    return new CellError('E_TLS', `the peer's certificate is not a mesh host certificate (O=${String(org)}).`, {
      fix: 'issue the peer a host certificate with `cell mesh sign`.',
    });
  }
  if (expect.fingerprint !== undefined) {
    const got = certFingerprint(new X509Certificate(cert.raw));
    if (got !== expect.fingerprint) {
      return new CellError(
        'E_TLS',
        `the peer's certificate ${got.slice(0, 16)}… is not the announced ${expect.fingerprint.slice(0, 16)}….`,
        {
          fix: 'another mesh host answered at the announced address; check for address conflicts.',
        },
      );
    }
  }
  if (expect.hostName !== undefined && subject?.CN !== expect.hostName) {
    return new CellError('E_TLS', `the peer is mesh host '${String(subject?.CN)}', not '${expect.hostName}'.`, {
      fix: 'check CELL_PEER points at the intended host.',
    });
  }
  return undefined;
}

export interface MeshListenOptions {
  identity: MeshIdentity;
  host: string;
  port?: number;
  onSocket: (socket: tls.TLSSocket) => void;
  /** Called for every refused handshake (no certificate, wrong CA, wrong protocol). */
  onRefused?: (err: Error, remote: string) => void;
}

/** A TLS 1.3 listener that hands over only sockets whose peer proved a mesh host certificate. */
export async function listenMesh(options: MeshListenOptions): Promise<tls.Server> {
  const server = tls.createServer(meshServerOptions(options.identity), (socket) => {
    const verdict = socket.authorized
      ? checkMeshPeer(socket.getPeerCertificate())
      : new Error(String(socket.authorizationError));
    if (verdict !== undefined) {
      options.onRefused?.(verdict, `${socket.remoteAddress}:${socket.remotePort}`);
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 5_000);
    options.onSocket(socket);
  });
  server.on('tlsClientError', (err, socket) => {
    options.onRefused?.(err, `${socket.remoteAddress}:${socket.remotePort}`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

export interface MeshConnectOptions extends MeshPeerExpectation {
  identity: MeshIdentity;
  host: string;
  port: number;
  timeoutMs?: number;
}

/** Connects and completes the mutual handshake, or fails with E_TLS / E_CONNECTION_LOST / E_TIMEOUT. */
export function connectMesh(options: MeshConnectOptions): Promise<tls.TLSSocket> {
  const where = `${options.host}:${options.port}`;
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      ...meshClientOptions(options.identity, options),
      host: options.host,
      port: options.port,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new CellError(
          'E_TIMEOUT',
          `mesh peer ${where} did not complete the TLS handshake in ${options.timeoutMs ?? 5_000} ms.`,
          {
            fix: 'check the peer is up and the network path between the hosts.',
          },
        ),
      );
    }, options.timeoutMs ?? 5_000);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 5_000);
      resolve(socket);
    });
    const onError = (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      if (err instanceof CellError) return reject(err);
      const tlsFailure =
        err.code?.startsWith('ERR_SSL') ||
        err.code?.includes('CERT') ||
        /certificate|alert|handshake/i.test(err.message);
      reject(
        tlsFailure
          ? new CellError('E_TLS', `TLS handshake with mesh peer ${where} failed: ${err.message}.`, {
              cause: err,
              fix: 'both hosts need host certificates from the same mesh CA (`cell mesh join`).',
            })
          : new CellError('E_CONNECTION_LOST', `cannot reach mesh peer ${where}: ${err.message}.`, {
              cause: err,
              fix: 'check the peer is up and the network path between the hosts.',
            }),
      );
    };
    socket.once('error', onError);
  });
}
