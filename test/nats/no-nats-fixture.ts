// Run by nats.test.ts in a child process without CELL_NATS: a cell and a caller through the package
// entry (which registers the NATS resolver and Membrane extension), then a lookup that goes through
// every resolver. Prints which @nats-io modules got loaded: none may.
import { createRequire } from 'node:module';
import { isCellError, Membrane, rpc, Synapse, service, t } from '../../src/index.js';

const Echo = service('nonats', { id: rpc(t.uint, t.uint) });
const m = await Membrane.bind(Echo, { id: (x) => x }, { handleSignals: false, tap: false });
const c = await Synapse.grow(Echo);
const served = await c.id(3);
await c.$close();
await m.close();
let notFound = '';
try {
  await Synapse.grow(service('absent', { id: rpc(t.uint, t.uint) }), { waitMs: 50 });
} catch (err) {
  notFound = isCellError(err) ? err.code : String(err);
}
const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('@nats-io'));
process.stdout.write(`${JSON.stringify({ served, notFound, natsModules: loaded.length })}\n`);
