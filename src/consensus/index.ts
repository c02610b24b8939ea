// Consensus: a Raft core (deterministic, no I/O), its write-ahead log, and RaftNode, the shell that
// runs it for a cell over a transport.
export {
  CellTransport,
  type CellTransportOptions,
  InMemoryNetwork,
  type LeaderEvent,
  RaftNode,
  type RaftNodeOptions,
  type RaftNodeStats,
  type RaftTimers,
  type RaftTransport,
  type SnapshotEvent,
  type StateMachine,
} from './node/index.js';
export type { Entry, HardState, Message, Snapshot } from './raft/types.js';
export { SimDisk, Wal, type WalFs, type WalOptions, type WalState } from './wal/index.js';
