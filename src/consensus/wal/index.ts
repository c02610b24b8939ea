export { nodeFs, type WalFile, type WalFs } from './fs.js';
export { type CrashMode, SimDisk } from './simdisk.js';
export {
  decodeSnapshotFile,
  encodeSnapshotFile,
  RecordType,
  Wal,
  type WalOptions,
  type WalState,
  type WalStats,
} from './wal.js';
