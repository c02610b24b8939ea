// The benchmark's contract: one method echoing opaque bytes.
import { t } from '../../src/protein/index.js';
import { rpc, service } from '../../src/service/index.js';

export const PingService = service('bench', { ping: rpc(t.bytes, t.bytes) });
