// `cell-runtime/mesh`: cells across hosts through Axon — mutual TLS under the mesh's own CA and
// pheromone discovery (docs/AXON.md). The `cell mesh` commands create and join the mesh.
export type { GrowAcrossMeshOptions, MeshClient, MeshIdentity } from './axon/index.js';
export { exposeOnMesh, growAcrossMesh, loadMeshIdentity } from './axon/index.js';
