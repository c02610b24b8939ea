// Axon: cells across hosts — mutual TLS under the mesh's own CA and pheromone discovery (docs/AXON.md).
// The wiring (`./register.js`) is the composition root's own import, so a cell's start-up loads no
// mesh client; the mesh client here loads with `cell-runtime/mesh`, and `cell mesh` loads `./cli.js`
// on demand.

export type { MeshIdentity } from './identity/index.js';
export { loadMeshIdentity } from './identity/index.js';
export type { GrowAcrossMeshOptions, MeshClient } from './mesh.js';
export { exposeOnMesh, growAcrossMesh } from './mesh.js';
