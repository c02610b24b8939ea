import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import {
  type Authenticator,
  connect,
  credsAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
  nkeyAuthenticator,
  tokenAuthenticator,
  usernamePasswordAuthenticator,
} from '@nats-io/transport-node';
import { CellError } from '../errors/index.js';
import { connectionKey, NATS_ENV, type NatsSettings } from './settings.js';

/**
 * One NATS connection per process and settings, shared by every Membrane that serves on NATS and every
 * Synapse that calls through it: NATS multiplexes subjects, so a second TCP connection would only add a
 * second heartbeat and a second reconnect loop. Each user holds a lease; the connection closes a
 * moment after the last lease is released (a resolver handing its lease to a connector does not
 * reconnect).
 */
export interface NatsLease {
  readonly nc: NatsConnection;
  readonly settings: NatsSettings;
  /** Resolves when the connection closed for good (it reconnects on its own before that). */
  readonly closed: Promise<void>;
  release(): void;
}

interface Pooled {
  connecting: Promise<NatsConnection>;
  nc: NatsConnection | null;
  users: number;
  closeTimer: NodeJS.Timeout | null;
  closed: Promise<void>;
  /** Called with each status event (disconnect, reconnect, error) while someone listens. */
  listeners: Set<(type: string, detail: string) => void>;
}

const pool = new Map<string, Pooled>();
const LINGER_MS = 1000;

export async function acquireNats(settings: NatsSettings, name: string): Promise<NatsLease> {
  const key = connectionKey(settings);
  let p = pool.get(key);
  if (p === undefined || p.nc?.isClosed() === true) {
    let resolveClosed: () => void = () => {};
    const closed = new Promise<void>((r) => {
      resolveClosed = r;
    });
    const entry: Pooled = {
      connecting: Promise.resolve(null as unknown as NatsConnection),
      nc: null,
      users: 0,
      closeTimer: null,
      closed,
      listeners: new Set(),
    };
    entry.connecting = openConnection(settings, name).then(
      (nc) => {
        entry.nc = nc;
        nc.closed().then(() => {
          if (pool.get(key) === entry) pool.delete(key);
          resolveClosed();
        });
        void watchStatus(nc, entry);
        return nc;
      },
      (err) => {
        if (pool.get(key) === entry) pool.delete(key);
        resolveClosed();
        throw err;
      },
    );
    p = entry;
    pool.set(key, p);
  }
  const entry = p;
  entry.users++;
  if (entry.closeTimer !== null) {
    clearTimeout(entry.closeTimer);
    entry.closeTimer = null;
  }
  let nc: NatsConnection;
  try {
    nc = await entry.connecting;
  } catch (err) {
    entry.users--;
    throw err;
  }
  let released = false;
  return {
    nc,
    settings,
    closed: entry.closed,
    release: () => {
      if (released) return;
      released = true;
      if (--entry.users > 0) return;
      entry.closeTimer = setTimeout(() => {
        entry.closeTimer = null;
        if (entry.users === 0) {
          if (pool.get(key) === entry) pool.delete(key);
          void nc.close();
        }
      }, LINGER_MS);
      entry.closeTimer.unref();
    },
  };
}

/** Subscribes to the connection's status events (reconnects, errors); returns the unsubscribe. */
export function onNatsStatus(lease: NatsLease, listener: (type: string, detail: string) => void): () => void {
  for (const entry of pool.values()) {
    if (entry.nc === lease.nc) {
      entry.listeners.add(listener);
      return () => entry.listeners.delete(listener);
    }
  }
  return () => {};
}

/** Closes every pooled connection at once (tests, a process shutting down). */
export async function closeAllNats(): Promise<void> {
  const all = [...pool.values()];
  pool.clear();
  await Promise.all(
    all.map(async (e) => {
      if (e.closeTimer !== null) clearTimeout(e.closeTimer);
      try {
        await (await e.connecting).close();
      } catch {
        // never connected
      }
    }),
  );
}

async function watchStatus(nc: NatsConnection, entry: Pooled): Promise<void> {
  for await (const s of nc.status()) {
    if (entry.listeners.size === 0) continue;
    const detail = 'server' in s ? String(s.server) : 'error' in s ? String((s.error as Error).message) : '';
    for (const l of entry.listeners) l(s.type, detail);
  }
}

async function openConnection(settings: NatsSettings, name: string): Promise<NatsConnection> {
  const options: NodeConnectionOptions = {
    servers: settings.servers.map((s) => s.replace(/^[a-z]+:\/\//, '')),
    name: `cell:${name}@${hostname()}`,
    inboxPrefix: settings.inboxPrefix,
    // Cells run for a long time: keep trying servers rather than giving up after ten attempts.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 100,
    reconnectJitterTLS: 250,
    // A server that stops answering (a cut cable) is given up after ~10 s, then the next is tried.
    pingInterval: 5000,
    maxPingOut: 2,
    timeout: 5000,
  };
  const auth = authenticators(settings);
  if (auth.length > 0) options.authenticator = auth;
  const wantsTls = settings.tls !== undefined || settings.servers.some((s) => s.startsWith('tls://'));
  if (wantsTls) {
    options.tls = {
      ...(settings.tls?.caFile === undefined ? {} : { caFile: settings.tls.caFile }),
      ...(settings.tls?.certFile === undefined ? {} : { certFile: settings.tls.certFile }),
      ...(settings.tls?.keyFile === undefined ? {} : { keyFile: settings.tls.keyFile }),
    };
  }
  try {
    return await connect(options);
  } catch (err) {
    throw connectError(settings, err);
  }
}

function authenticators(s: NatsSettings): Authenticator[] {
  const out: Authenticator[] = [];
  const read = (path: string, what: string): Uint8Array => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new CellError('E_INVALID_ARGUMENT', `cannot read the NATS ${what} file ${path}.`, {
        fix: `check the path in ${envFor(what)} (it must be readable by this process).`,
        cause: err,
      });
    }
  };
  if (s.credsFile !== undefined) out.push(credsAuthenticator(read(s.credsFile, 'credentials')));
  if (s.nkeySeedFile !== undefined) {
    out.push(
      nkeyAuthenticator(new TextEncoder().encode(Buffer.from(read(s.nkeySeedFile, 'nkey seed')).toString().trim())),
    );
  }
  if (s.user !== undefined) {
    const pass =
      s.passwordFile === undefined ? undefined : Buffer.from(read(s.passwordFile, 'password')).toString().trim();
    out.push(usernamePasswordAuthenticator(s.user, pass));
  }
  if (s.tokenFile !== undefined)
    out.push(tokenAuthenticator(Buffer.from(read(s.tokenFile, 'token')).toString().trim()));
  return out;
}

function envFor(what: string): string {
  if (what === 'credentials') return NATS_ENV.credsFile;
  if (what === 'nkey seed') return NATS_ENV.nkeySeedFile;
  if (what === 'password') return NATS_ENV.passwordFile;
  return NATS_ENV.tokenFile;
}

function connectError(settings: NatsSettings, err: unknown): CellError {
  const message = err instanceof Error ? err.message : String(err);
  const servers = settings.servers.join(', ');
  if (/authori[sz]ation|authentication|permission/i.test(message)) {
    return new CellError(
      'E_PERMISSION_DENIED',
      `the NATS servers (${servers}) refused this process's credentials: ${message}`,
      {
        fix: `check ${NATS_ENV.credsFile}/${NATS_ENV.nkeySeedFile}/${NATS_ENV.user}/${NATS_ENV.tokenFile} against the server's authorization config (docs/NATS.md § 3).`,
        cause: err,
      },
    );
  }
  return new CellError('E_CONNECTION_LOST', `cannot reach any NATS server (${servers}): ${message}`, {
    fix: `check ${NATS_ENV.servers} and that nats-server runs and listens there (docs/NATS.md § 2).`,
    cause: err,
  });
}
