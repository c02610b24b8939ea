export type { WalFs } from './fs.js';
export { SimDisk } from './simdisk.js';
export { Wal, type WalOptions, type WalState } from './wal.js';
