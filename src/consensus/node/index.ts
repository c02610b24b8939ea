export { CellTransport, type CellTransportOptions } from './cell-transport.js';
export {
  type LeaderEvent,
  RaftNode,
  type RaftNodeOptions,
  type RaftNodeStats,
  type RaftTimers,
  type SnapshotEvent,
  type StateMachine,
} from './node.js';
export { InMemoryNetwork, type RaftTransport } from './transport.js';
