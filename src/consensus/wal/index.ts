export { nodeFs, type WalFile, type WalFs } from './fs.js';
export { RecordType, type SegmentDamage, type SegmentScan, scanSegment, type WalRecord } from './scan.js';
export { type CrashMode, SimDisk } from './simdisk.js';
export {
  decodeSnapshotFile,
  encodeSnapshotFile,
  Wal,
  type WalOptions,
  type WalState,
  type WalStats,
} from './wal.js';
