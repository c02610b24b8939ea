export { Raft } from './raft.js';
export type { RaftConfig, RaftStorageState } from './raft.js';
export { RaftLog } from './log.js';
export * from './types.js';
