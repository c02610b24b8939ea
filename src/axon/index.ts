// Axon: cells across hosts over mutual TLS 1.3, found through signed multicast pheromones.

export type { BalanceStrategy } from './balancer.js';
export { Balancer } from './balancer.js';
export type { RemoteCellOptions, RemoteChannel } from './client.js';
export { parsePeer, RemoteCell } from './client.js';
export { FramedChannel, serveFrames } from './framed.js';
export type { MeshIdentity } from './identity/index.js';
export {
  createJoinRequest,
  initMesh,
  installJoinBundle,
  loadMeshIdentity,
  meshPaths,
  signJoinRequest,
} from './identity/index.js';
export type { AnnouncedCell, RemoteInstance } from './pheromones/index.js';
export { PHEROMONE_GROUP, PHEROMONE_PORT, PheromoneCache, Pheromones } from './pheromones/index.js';
export type { MeshCellServer } from './server.js';
export { lanAddress, lanEnabled, serveCellOnMesh } from './server.js';
export { AXON_ALPN, connectMesh, listenMesh, meshClientOptions, meshServerOptions } from './tls/index.js';
