// `cell-runtime/mesh`: cells across hosts through Axon — mutual TLS under the mesh's own CA and
// pheromone discovery (docs/AXON.md). The `cell mesh` commands create and join the mesh.
export type { MeshIdentity } from './axon/identity/index.js';
export { loadMeshIdentity } from './axon/identity/index.js';
export type { GrowAcrossMeshOptions, MeshClient } from './axon/mesh.js';
export { exposeOnMesh, growAcrossMesh } from './axon/mesh.js';
