export { RaftLog } from './log.js';
export type { RaftConfig, RaftStorageState } from './raft.js';
export { Raft } from './raft.js';
export * from './types.js';
