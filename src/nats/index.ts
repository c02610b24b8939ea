// NATS: cells as NATS micro services across hosts — discovery, balancing and failover through a real
// NATS cluster, and a carrier for calls where no direct path exists (docs/NATS.md). Only the settings
// and the wiring load eagerly; the NATS client loads when a cell or a caller is configured to use it.

export { closeNats, natsResolver, registerNats, serveOnNats } from './register.js';
export type { NatsOption, NatsSettings } from './settings.js';
export { NATS_ENV, natsSettings } from './settings.js';
