import { createInbox, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { META, SRV_PREFIX, SRV_TYPES } from './subjects.js';

/** One instance of a cell as its `$SRV.INFO` answer describes it. */
export interface CellInstance {
  /** The micro service id (one per serving process). */
  readonly id: string;
  /** The cell name (the micro service name). */
  readonly name: string;
  readonly version: string;
  /** The contract's service name and fingerprint, from the metadata. */
  readonly service: string;
  readonly fingerprint: bigint;
  /** The subject prefix its endpoints live under (`cell.<name>.<fp>`). */
  readonly subject: string;
  readonly protocol: number;
  readonly host: string;
  readonly pid: number;
  readonly endpoints: ReadonlyArray<{ name: string; subject: string; queue_group?: string }>;
  readonly metadata: Readonly<Record<string, string>>;
}

export interface GatherOptions {
  /** Give up after this long in any case. */
  maxWaitMs: number;
  /** Stop once no further answer came for this long after the last one. */
  stallMs: number;
  /** Stop after this many answers. */
  max?: number;
}

/**
 * Publishes one request and collects every answer (a scatter-gather over all responders): stops at the
 * first "no responders" status, `stallMs` after the last answer, or at `maxWaitMs`.
 */
export function gather(
  nc: NatsConnection,
  subject: string,
  payload: Uint8Array | string,
  options: GatherOptions,
  inboxPrefix?: string,
): Promise<Msg[]> {
  const inbox = createInbox(inboxPrefix);
  return new Promise<Msg[]>((resolve) => {
    const out: Msg[] = [];
    let stall: NodeJS.Timeout | undefined;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(total);
      clearTimeout(stall);
      try {
        sub.unsubscribe();
      } catch {
        // closed already
      }
      resolve(out);
    };
    const sub = nc.subscribe(inbox, {
      callback: (err, m) => {
        if (err !== null || (m.headers?.code === 503 && m.data.length === 0)) {
          finish();
          return;
        }
        out.push(m);
        if (options.max !== undefined && out.length >= options.max) {
          finish();
          return;
        }
        clearTimeout(stall);
        stall = setTimeout(finish, options.stallMs);
      },
    });
    const total = setTimeout(finish, options.maxWaitMs);
    try {
      nc.publish(subject, payload, { reply: inbox });
    } catch {
      finish();
    }
  });
}

/** Parses an INFO answer of a Cell instance; null for other micro services or malformed answers. */
export function parseInfo(m: Msg): CellInstance | null {
  let v: Record<string, unknown>;
  try {
    v = m.json<Record<string, unknown>>();
  } catch {
    return null;
  }
  if (v.type !== SRV_TYPES.INFO || typeof v.name !== 'string' || typeof v.id !== 'string') return null;
  const meta = (v.metadata ?? {}) as Record<string, string>;
  const fp = meta[META.fingerprint];
  if (typeof fp !== 'string' || !/^0x[0-9a-f]{16}$/.test(fp) || typeof meta[META.subject] !== 'string') return null;
  return {
    id: v.id,
    name: v.name,
    version: typeof v.version === 'string' ? v.version : '',
    service: typeof meta[META.service] === 'string' ? meta[META.service] : v.name,
    fingerprint: BigInt(fp),
    subject: meta[META.subject],
    protocol: Number(meta[META.protocol] ?? 0),
    host: meta[META.host] ?? '',
    pid: Number(meta[META.pid] ?? 0),
    endpoints: Array.isArray(v.endpoints) ? (v.endpoints as CellInstance['endpoints']) : [],
    metadata: meta,
  };
}

/** Every instance of cell `name` that answers `$SRV.INFO.<name>` (none when nobody serves it). */
export async function discoverCell(
  nc: NatsConnection,
  name: string,
  options: GatherOptions = { maxWaitMs: 1000, stallMs: 40 },
  inboxPrefix?: string,
): Promise<CellInstance[]> {
  const answers = await gather(nc, `${SRV_PREFIX}.INFO.${name}`, '', options, inboxPrefix);
  const out: CellInstance[] = [];
  const seen = new Set<string>();
  for (const m of answers) {
    const inst = parseInfo(m);
    if (inst !== null && inst.name === name && !seen.has(inst.id)) {
      seen.add(inst.id);
      out.push(inst);
    }
  }
  return out;
}
