import type { KeyObject } from 'node:crypto';
import { createHash, randomBytes, sign, verify, X509Certificate } from 'node:crypto';
import dgram from 'node:dgram';
import { isIPv4 } from 'node:net';
import { CellError } from '../../errors/index.js';
import { validateCellName } from '../../paths/index.js';
import type { MeshIdentity } from '../identity/index.js';
import { certFingerprint, MESH_ORGANIZATION, meshCommonName } from '../identity/index.js';

/**
 * Pheromones: signed UDP multicast announcements of cell instances on the LAN.
 *
 * Every datagram carries the sender's host certificate and an ECDSA P-256 signature over the rest, so
 * a receiver checks the chain to its own mesh CA before believing a word. Replays are refused by a
 * timestamp window plus a per-sender strictly increasing sequence number; entries expire unless
 * refreshed; every table is bounded. Layout: docs/PROTOCOL.md § 5.
 */
export const PHEROMONE_GROUP = '239.255.77.77';
export const PHEROMONE_PORT = 9099;
export const PHEROMONE_MAGIC = 0x31484350; // "PCH1" read little-endian
export const PHEROMONE_VERSION = 1;
export const KIND_ANNOUNCE = 1;
export const KIND_QUERY = 2;
export const MAX_DATAGRAM = 1400;
const SIGNATURE_BYTES = 64;

export interface Announcement {
  kind: number;
  /** Cell name; empty in a query for every cell. */
  name: string;
  /** The cell's service fingerprint (64 bits). */
  fingerprint: bigint;
  address: string;
  port: number;
  /** Calls in flight at the instance when it announced. */
  load: number;
  /** How long a receiver may keep this entry without a refresh. */
  ttlMs: number;
  timestampMs: number;
  seq: bigint;
  /** Random per announcing process: tells own echoes apart and keys replay state. */
  instanceId: Buffer;
}

/** A discovered, verified cell instance. */
export interface RemoteInstance {
  key: string;
  name: string;
  fingerprint: bigint;
  address: string;
  port: number;
  load: number;
  hostName: string;
  /** SHA-256 of the host certificate: the TLS client pins the peer to it. */
  hostFingerprint: string;
  expiresAt: number;
}

export function encodeAnnouncement(a: Announcement, certDer: Buffer, key: KeyObject): Buffer {
  const name = Buffer.from(a.name, 'utf8');
  if (name.length > 63) throw new CellError('E_INVALID_ARGUMENT', 'cell name too long for a pheromone.');
  if (!isIPv4(a.address) && a.kind === KIND_ANNOUNCE) {
    throw new CellError('E_INVALID_ARGUMENT', `pheromones announce IPv4 addresses; got ${a.address}.`, {
      fix: 'set CELL_LAN_ADDRESS to an IPv4 address.',
    });
  }
  const bodyLen = 4 + 1 + 1 + 1 + name.length + 8 + 4 + 2 + 4 + 4 + 8 + 8 + 8 + 2 + certDer.length;
  const total = bodyLen + SIGNATURE_BYTES;
  if (total > MAX_DATAGRAM)
    throw new CellError('E_INVALID_ARGUMENT', `pheromone of ${total} bytes exceeds ${MAX_DATAGRAM}.`);
  const buf = Buffer.alloc(total);
  let o = buf.writeUInt32LE(PHEROMONE_MAGIC, 0);
  o = buf.writeUInt8(PHEROMONE_VERSION, o);
  o = buf.writeUInt8(a.kind, o);
  o = buf.writeUInt8(name.length, o);
  o += name.copy(buf, o);
  o = buf.writeBigUInt64LE(a.fingerprint, o);
  const ip = a.kind === KIND_ANNOUNCE ? a.address.split('.').map(Number) : [0, 0, 0, 0];
  for (const b of ip) o = buf.writeUInt8(b, o);
  o = buf.writeUInt16LE(a.port, o);
  o = buf.writeUInt32LE(a.load >>> 0, o);
  o = buf.writeUInt32LE(a.ttlMs >>> 0, o);
  o = buf.writeBigUInt64LE(BigInt(a.timestampMs), o);
  o = buf.writeBigUInt64LE(a.seq, o);
  o += a.instanceId.copy(buf, o, 0, 8);
  o = buf.writeUInt16LE(certDer.length, o);
  o += certDer.copy(buf, o);
  const sig = sign('sha256', buf.subarray(0, o), { key, dsaEncoding: 'ieee-p1363' });
  sig.copy(buf, o);
  return buf;
}

export interface DecodedPheromone {
  announcement: Announcement;
  certDer: Buffer;
  signed: Buffer;
  signature: Buffer;
}

/** Parses without trusting: returns undefined for anything malformed. */
export function decodeAnnouncement(buf: Buffer): DecodedPheromone | undefined {
  if (buf.length < 64 + SIGNATURE_BYTES || buf.length > MAX_DATAGRAM) return undefined;
  if (buf.readUInt32LE(0) !== PHEROMONE_MAGIC || buf.readUInt8(4) !== PHEROMONE_VERSION) return undefined;
  const kind = buf.readUInt8(5);
  if (kind !== KIND_ANNOUNCE && kind !== KIND_QUERY) return undefined;
  const nameLen = buf.readUInt8(6);
  if (nameLen > 63) return undefined;
  let o = 7;
  const fixed = nameLen + 8 + 4 + 2 + 4 + 4 + 8 + 8 + 8 + 2;
  if (buf.length < o + fixed + SIGNATURE_BYTES) return undefined;
  const name = buf.toString('utf8', o, o + nameLen);
  o += nameLen;
  const fingerprint = buf.readBigUInt64LE(o);
  o += 8;
  const address = `${buf[o]}.${buf[o + 1]}.${buf[o + 2]}.${buf[o + 3]}`;
  o += 4;
  const port = buf.readUInt16LE(o);
  o += 2;
  const load = buf.readUInt32LE(o);
  o += 4;
  const ttlMs = buf.readUInt32LE(o);
  o += 4;
  const timestampMs = Number(buf.readBigUInt64LE(o));
  o += 8;
  const seq = buf.readBigUInt64LE(o);
  o += 8;
  const instanceId = buf.subarray(o, o + 8);
  o += 8;
  const certLen = buf.readUInt16LE(o);
  o += 2;
  if (buf.length !== o + certLen + SIGNATURE_BYTES) return undefined;
  const certDer = buf.subarray(o, o + certLen);
  o += certLen;
  return {
    announcement: { kind, name, fingerprint, address, port, load, ttlMs, timestampMs, seq, instanceId },
    certDer,
    signed: buf.subarray(0, o),
    signature: buf.subarray(o),
  };
}

/** A Map used as a bounded LRU: re-inserting moves a key to the back; the front is evicted. */
class BoundedMap<K, V> {
  private readonly map = new Map<K, V>();
  constructor(private readonly max: number) {}
  get size(): number {
    return this.map.size;
  }
  get(key: K): V | undefined {
    return this.map.get(key);
  }
  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    while (this.map.size > this.max) {
      const oldest = this.map.keys().next().value as K;
      this.map.delete(oldest);
    }
  }
  delete(key: K): boolean {
    return this.map.delete(key);
  }
  values(): IterableIterator<V> {
    return this.map.values();
  }
  entries(): IterableIterator<[K, V]> {
    return this.map.entries();
  }
}

interface CertVerdict {
  ok: boolean;
  publicKey: KeyObject | undefined;
  hostName: string;
  fingerprint: string;
  notAfter: number;
}

export type RejectReason =
  | 'malformed'
  | 'stale'
  | 'replay'
  | 'untrusted-cert'
  | 'bad-signature'
  | 'own-echo'
  | 'bad-name';

export interface PheromoneCacheOptions {
  /** The mesh CA certificate every announcement's host certificate must chain to. */
  ca: X509Certificate;
  /** Accepted clock skew between hosts, both directions. */
  windowMs?: number;
  /** Most instances kept; the least recently refreshed goes first. */
  maxInstances?: number;
  /** Most senders whose last sequence number is remembered. */
  maxSenders?: number;
  /** Upper bound on an announced TTL, so a sender cannot pin an entry for days. */
  maxTtlMs?: number;
  now?: () => number;
}

/**
 * Verification and the discovered-instance table, with no sockets: the receive path of Pheromones
 * and what the unit tests drive directly.
 */
export class PheromoneCache {
  private readonly instances: BoundedMap<string, RemoteInstance>;
  private readonly lastSeq: BoundedMap<string, bigint>;
  private readonly certs = new BoundedMap<string, CertVerdict>(256);
  private readonly ca: X509Certificate;
  private readonly windowMs: number;
  private readonly maxTtlMs: number;
  private readonly now: () => number;
  readonly rejected: Record<RejectReason, number> = {
    malformed: 0,
    stale: 0,
    replay: 0,
    'untrusted-cert': 0,
    'bad-signature': 0,
    'own-echo': 0,
    'bad-name': 0,
  };

  constructor(options: PheromoneCacheOptions) {
    this.ca = options.ca;
    this.windowMs = options.windowMs ?? 10_000;
    this.maxTtlMs = options.maxTtlMs ?? 60_000;
    this.instances = new BoundedMap(options.maxInstances ?? 1024);
    this.lastSeq = new BoundedMap(options.maxSenders ?? 4096);
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.instances.size;
  }

  /**
   * Checks a datagram and, if it is a valid announcement, records it. Returns the verified
   * announcement (announce or query) or the reason it was ignored.
   */
  receive(
    buf: Buffer,
    ownInstanceId?: Buffer,
  ): { ok: true; announcement: Announcement; instance?: RemoteInstance } | { ok: false; reason: RejectReason } {
    const decoded = decodeAnnouncement(buf);
    if (decoded === undefined) return this.reject('malformed');
    const a = decoded.announcement;
    if (ownInstanceId !== undefined && a.instanceId.equals(ownInstanceId)) return this.reject('own-echo');
    const now = this.now();
    if (Math.abs(now - a.timestampMs) > this.windowMs) return this.reject('stale');
    const cert = this.verifyCert(decoded.certDer, now);
    if (!cert.ok || cert.publicKey === undefined) return this.reject('untrusted-cert');
    const sender = `${cert.fingerprint}/${a.instanceId.toString('hex')}`;
    const last = this.lastSeq.get(sender);
    if (last !== undefined && a.seq <= last) return this.reject('replay');
    if (!verify('sha256', decoded.signed, { key: cert.publicKey, dsaEncoding: 'ieee-p1363' }, decoded.signature))
      return this.reject('bad-signature');
    this.lastSeq.set(sender, a.seq);
    if (a.kind === KIND_QUERY) return { ok: true, announcement: a };
    try {
      validateCellName(a.name);
    } catch {
      return this.reject('bad-name');
    }
    if (a.port === 0) return this.reject('malformed');
    const key = `${cert.fingerprint}/${a.name}/${a.address}:${a.port}`;
    const instance: RemoteInstance = {
      key,
      name: a.name,
      fingerprint: a.fingerprint,
      address: a.address,
      port: a.port,
      load: a.load,
      hostName: cert.hostName,
      hostFingerprint: cert.fingerprint,
      expiresAt: now + Math.min(a.ttlMs, this.maxTtlMs, cert.notAfter - now),
    };
    if (a.ttlMs === 0) this.instances.delete(key);
    else this.instances.set(key, instance);
    return { ok: true, announcement: a, instance };
  }

  /** Live instances of a cell, expired ones dropped on the way. */
  lookup(name: string): RemoteInstance[] {
    const now = this.now();
    const out: RemoteInstance[] = [];
    for (const [key, inst] of this.instances.entries()) {
      if (inst.expiresAt <= now) {
        this.instances.delete(key);
        continue;
      }
      if (inst.name === name) out.push(inst);
    }
    return out;
  }

  all(): RemoteInstance[] {
    const now = this.now();
    return [...this.instances.values()].filter((i) => i.expiresAt > now);
  }

  forget(key: string): void {
    this.instances.delete(key);
  }

  private reject(reason: RejectReason): { ok: false; reason: RejectReason } {
    this.rejected[reason]++;
    return { ok: false, reason };
  }

  private verifyCert(der: Buffer, now: number): CertVerdict {
    const id = createHash('sha256').update(der).digest('hex');
    const cached = this.certs.get(id);
    if (cached !== undefined && (!cached.ok || cached.notAfter > now)) return cached;
    let verdict: CertVerdict = { ok: false, publicKey: undefined, hostName: '', fingerprint: id, notAfter: 0 };
    try {
      const cert = new X509Certificate(der);
      const notBefore = Date.parse(cert.validFrom);
      const notAfter = Date.parse(cert.validTo);
      const isMeshHost = !cert.ca && cert.subject.split('\n').includes(`O=${MESH_ORGANIZATION}`);
      if (
        isMeshHost &&
        cert.checkIssued(this.ca) &&
        cert.verify(this.ca.publicKey) &&
        notBefore <= now &&
        now < notAfter
      ) {
        verdict = {
          ok: true,
          publicKey: cert.publicKey,
          hostName: meshCommonName(cert) ?? '',
          fingerprint: certFingerprint(cert),
          notAfter,
        };
      }
    } catch {
      // Not a certificate: stays rejected.
    }
    this.certs.set(id, verdict);
    return verdict;
  }
}

export interface PheromonesOptions {
  identity: MeshIdentity;
  group?: string;
  port?: number;
  /** Local IPv4 address of the interface to send and listen on; the routing table decides when absent. */
  interfaceAddress?: string;
  intervalMs?: number;
  ttlMs?: number;
  windowMs?: number;
  maxInstances?: number;
  onInstance?: (instance: RemoteInstance) => void;
}

export interface AnnouncedCell {
  name: string;
  fingerprint: bigint;
  address: string;
  port: number;
  /** Current calls in flight, read at each announcement. */
  load?: () => number;
}

/** The UDP side: joins the group, announces local cells periodically, feeds a PheromoneCache. */
export class Pheromones {
  readonly cache: PheromoneCache;
  readonly instanceId = randomBytes(8);
  private readonly socket: dgram.Socket;
  private readonly group: string;
  private readonly port: number;
  private readonly intervalMs: number;
  private readonly ttlMs: number;
  private readonly announced = new Map<string, AnnouncedCell>();
  private readonly lastAnswered = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private seq = 0n;
  private closed = false;
  private readonly waiters = new Set<() => void>();

  private constructor(
    private readonly options: PheromonesOptions,
    socket: dgram.Socket,
  ) {
    this.socket = socket;
    this.group = options.group ?? process.env.CELL_PHEROMONE_GROUP ?? PHEROMONE_GROUP;
    this.port = options.port ?? Number(process.env.CELL_PHEROMONE_PORT ?? PHEROMONE_PORT);
    this.intervalMs = options.intervalMs ?? 1_000;
    this.ttlMs = options.ttlMs ?? Math.max(3 * this.intervalMs + 500, 1_000);
    this.cache = new PheromoneCache({
      ca: options.identity.ca,
      windowMs: options.windowMs,
      maxInstances: options.maxInstances,
    });
  }

  static async start(options: PheromonesOptions): Promise<Pheromones> {
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    const p = new Pheromones(options, socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(p.port, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    try {
      socket.addMembership(p.group, options.interfaceAddress);
      if (options.interfaceAddress !== undefined) socket.setMulticastInterface(options.interfaceAddress);
      socket.setMulticastTTL(1); // never routed beyond the local link
      socket.setMulticastLoopback(true); // other processes on this host must hear us; own echoes are dropped by id
    } catch (cause) {
      socket.close();
      throw new CellError(
        'E_INVALID_ARGUMENT',
        `cannot join multicast group ${p.group}: ${(cause as Error).message}.`,
        {
          cause,
          fix: 'the host needs a multicast route (e.g. `ip route add 224.0.0.0/4 dev <iface>`) or set CELL_LAN_INTERFACE.',
        },
      );
    }
    socket.on('message', (msg) => p.onMessage(msg));
    socket.on('error', () => {});
    p.timer = setInterval(() => p.announceAll(), p.intervalMs);
    p.timer.unref();
    return p;
  }

  /** Announces a local cell now and at every interval until withdrawn. */
  announce(cell: AnnouncedCell): void {
    validateCellName(cell.name);
    this.announced.set(`${cell.name}/${cell.address}:${cell.port}`, cell);
    this.send(this.packet(KIND_ANNOUNCE, cell, this.ttlMs));
  }

  /** Stops announcing and tells receivers to drop the entry now (TTL 0) rather than at expiry. */
  withdraw(name: string): void {
    for (const [key, cell] of this.announced) {
      if (cell.name !== name) continue;
      this.announced.delete(key);
      this.send(this.packet(KIND_ANNOUNCE, cell, 0));
    }
  }

  /** Asks announcers of `name` (every cell if empty) to announce now instead of at their next tick. */
  query(name = ''): void {
    this.send(this.packet(KIND_QUERY, { name, fingerprint: 0n, address: '0.0.0.0', port: 0 }, 0));
  }

  lookup(name: string): RemoteInstance[] {
    return this.cache.lookup(name);
  }

  /** Resolves with the instances of `name` once at least `count` are known, or what is known at timeout. */
  async waitFor(name: string, count = 1, timeoutMs = 3_000): Promise<RemoteInstance[]> {
    const deadline = Date.now() + timeoutMs;
    this.query(name);
    for (;;) {
      const found = this.lookup(name);
      if (found.length >= count || Date.now() >= deadline || this.closed) return found;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          this.waiters.delete(done);
          resolve();
        };
        const t = setTimeout(done, Math.min(250, Math.max(1, deadline - Date.now())));
        this.waiters.add(done);
      });
    }
  }

  /** Lets the process exit while only this listener is left running. */
  unref(): void {
    this.socket.unref();
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    for (const cell of [...this.announced.values()]) this.withdraw(cell.name);
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    for (const w of [...this.waiters]) w();
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }

  private nextSeq(): bigint {
    // Time-based so a restarted sender is never behind its earlier self; +1 keeps it strictly increasing.
    const t = BigInt(Date.now()) * 1000n;
    this.seq = t > this.seq ? t : this.seq + 1n;
    return this.seq;
  }

  private packet(kind: number, cell: AnnouncedCell, ttlMs: number): Buffer {
    return encodeAnnouncement(
      {
        kind,
        name: cell.name,
        fingerprint: cell.fingerprint,
        address: cell.address,
        port: cell.port,
        load: cell.load?.() ?? 0,
        ttlMs,
        timestampMs: Date.now(),
        seq: this.nextSeq(),
        instanceId: this.instanceId,
      },
      this.options.identity.certDer,
      this.options.identity.privateKey,
    );
  }

  private send(buf: Buffer): void {
    if (this.closed) return;
    this.socket.send(buf, this.port, this.group, () => {});
  }

  private announceAll(): void {
    for (const cell of this.announced.values()) this.send(this.packet(KIND_ANNOUNCE, cell, this.ttlMs));
  }

  private onMessage(msg: Buffer): void {
    const r = this.cache.receive(msg, this.instanceId);
    if (!r.ok) return;
    if (r.announcement.kind === KIND_QUERY) {
      const now = Date.now();
      for (const [key, cell] of this.announced) {
        if (r.announcement.name !== '' && r.announcement.name !== cell.name) continue;
        // Queries are authenticated, but still answered at most five times a second per cell.
        if (now - (this.lastAnswered.get(key) ?? 0) < 200) continue;
        this.lastAnswered.set(key, now);
        this.send(this.packet(KIND_ANNOUNCE, cell, this.ttlMs));
      }
      return;
    }
    if (r.instance !== undefined) {
      this.options.onInstance?.(r.instance);
      for (const w of [...this.waiters]) w();
    }
  }
}
