// The replicated key-value cell's contracts: the client-facing service, and the command log format.
import { protein, t } from '../../src/protein/index.js';
import { rpc, service } from '../../src/service/index.js';

/** Why a call did not happen: the reply says which node leads (0: unknown) so the client can go there. */
export const Status = { Ok: 0, NotLeader: 1, Unavailable: 2 } as const;

export const GetReply = protein('KvGetReply', {
  status: t.u8,
  leader: t.u32,
  found: t.bool,
  value: t.string,
});
export const PutRequest = protein('KvPut', { key: t.string, value: t.string });
export const WriteReply = protein('KvWriteReply', {
  status: t.u8,
  leader: t.u32,
  /** cas: whether the swap happened. put: always true when status is Ok. */
  ok: t.bool,
  /** cas: the value found (when it did not match). */
  found: t.bool,
  current: t.string,
});
export const CasRequest = protein('KvCas', {
  key: t.string,
  /** The value the key must hold; absent: the key must not exist. */
  expected: t.option(t.string),
  value: t.string,
});
export const BenchRequest = protein('KvBench', { concurrency: t.u32, durationMs: t.u32, valueBytes: t.u32 });
export const BenchReply = protein('KvBenchReply', {
  status: t.u8,
  leader: t.u32,
  commits: t.uint,
  seconds: t.f64,
  p50us: t.f64,
  p99us: t.f64,
  leaderSyncs: t.uint,
});
export const NodeStats = protein('KvNodeStats', {
  id: t.u32,
  leader: t.u32,
  term: t.uint,
  applied: t.uint,
  syncs: t.uint,
  batches: t.uint,
  keys: t.uint,
});

export const Kv = service('kv', {
  get: rpc(t.string, GetReply),
  put: rpc(PutRequest, WriteReply),
  cas: rpc(CasRequest, WriteReply),
  /** Runs `concurrency` proposers inside the leader for `durationMs` (commit throughput, no client hop). */
  bench: rpc(BenchRequest, BenchReply),
  stats: rpc(t.unit, NodeStats),
  /** CRC-32 of the applied map (sorted), to compare replicas. */
  digest: rpc(t.unit, t.u32),
});

/** One replicated command. op: 0 put, 1 cas. */
export const KvCommand = protein('KvCommand', {
  op: t.u8,
  key: t.string,
  expected: t.option(t.string),
  value: t.string,
});
