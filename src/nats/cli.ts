import { CellError } from '../errors/index.js';
import { acquireNats } from './connection.js';
import { type CellInstance, gather, parseInfo } from './discovery.js';
import { NATS_ENV, natsSettings } from './settings.js';
import { SRV_PREFIX, SRV_TYPES } from './subjects.js';

export interface MeshCellRow {
  name: string;
  host: string;
  pid: number;
  version: string;
  service: string;
  fingerprint: string;
  endpoints: number;
  requests: number;
  errors: number;
  id: string;
}

/** Every Cell instance answering `$SRV.INFO` on the cluster, with its `$SRV.STATS` totals. */
export async function listMeshCells(waitMs = 1500): Promise<MeshCellRow[]> {
  const settings = natsSettings();
  if (settings === null) {
    throw new CellError('E_INVALID_ARGUMENT', 'no NATS servers configured.', {
      fix: `set ${NATS_ENV.servers}=nats://host:4222[,…] (and the credentials variables your cluster needs, docs/NATS.md).`,
    });
  }
  const lease = await acquireNats(settings, 'cli');
  try {
    const opts = { maxWaitMs: waitMs, stallMs: 300 };
    const [infos, stats] = await Promise.all([
      gather(lease.nc, `${SRV_PREFIX}.INFO`, '', opts, settings.inboxPrefix),
      gather(lease.nc, `${SRV_PREFIX}.STATS`, '', opts, settings.inboxPrefix),
    ]);
    const totals = new Map<string, { requests: number; errors: number }>();
    for (const m of stats) {
      try {
        const s = m.json<{
          type?: string;
          id?: string;
          endpoints?: Array<{ num_requests?: number; num_errors?: number }>;
        }>();
        if (s.type !== SRV_TYPES.STATS || typeof s.id !== 'string') continue;
        let requests = 0;
        let errors = 0;
        for (const e of s.endpoints ?? []) {
          requests += e.num_requests ?? 0;
          errors += e.num_errors ?? 0;
        }
        totals.set(s.id, { requests, errors });
      } catch {
        // not a stats answer we can read
      }
    }
    const rows: MeshCellRow[] = [];
    const seen = new Set<string>();
    for (const m of infos) {
      const inst: CellInstance | null = parseInfo(m);
      if (inst === null || seen.has(inst.id)) continue;
      seen.add(inst.id);
      const t = totals.get(inst.id);
      rows.push({
        name: inst.name,
        host: inst.host,
        pid: inst.pid,
        version: inst.version,
        service: inst.service,
        fingerprint: `0x${inst.fingerprint.toString(16).padStart(16, '0')}`,
        endpoints: inst.endpoints.length,
        requests: t?.requests ?? 0,
        errors: t?.errors ?? 0,
        id: inst.id,
      });
    }
    rows.sort((a, b) => a.name.localeCompare(b.name) || a.host.localeCompare(b.host) || a.pid - b.pid);
    return rows;
  } finally {
    lease.release();
    await lease.nc.close();
  }
}

export function meshTable(rows: readonly MeshCellRow[]): string {
  const head = ['NAME', 'HOST', 'PID', 'VERSION', 'FINGERPRINT', 'ENDPOINTS', 'REQUESTS', 'ERRORS', 'ID'];
  const body = rows.map((r) => [
    r.name,
    r.host,
    String(r.pid),
    r.version,
    r.fingerprint,
    String(r.endpoints),
    String(r.requests),
    String(r.errors),
    r.id,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] as string).length)));
  const line = (cols: string[]) =>
    cols
      .map((c, i) => c.padEnd(widths[i] as number))
      .join('  ')
      .trimEnd();
  return [line(head), ...body.map(line)].join('\n') + (rows.length === 0 ? '\n(no cell answers $SRV.INFO)' : '');
}
