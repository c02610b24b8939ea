// Axon: cells across hosts — mutual TLS under the mesh's own CA and pheromone discovery (docs/AXON.md).
// The composition root imports `./register.js` itself, so a cell's start-up loads only the wiring;
// the mesh client here loads with `cell-runtime/mesh`, and `cell mesh` loads `./cli.js` on demand.

export type { MeshIdentity } from './identity/index.js';
export { loadMeshIdentity } from './identity/index.js';
export type { GrowAcrossMeshOptions, MeshClient } from './mesh.js';
export { exposeOnMesh, growAcrossMesh } from './mesh.js';
export { registerAxon } from './register.js';
