// Checks the layering of src/ (.dependency-cruiser.cjs, docs/ARCHITECTURE.md): no import points to a
// higher layer, and there is no import cycle. Exits non-zero and names each offending arrow otherwise.
// `node scripts/layers.mjs [--cwd <dir>]` (default: the repository). npm test runs it first.
// dependency-cruiser is a devDependency; CELL_DEPCRUISE may name another node_modules holding it.
import { join } from 'node:path';
import { runDevTool } from './dev-tool.mjs';

runDevTool({
  name: 'layers',
  pkg: 'dependency-cruiser',
  bin: join('bin', 'dependency-cruise.mjs'),
  envVar: 'CELL_DEPCRUISE',
  args: (cwd) => ['--config', join(cwd, '.dependency-cruiser.cjs'), '--output-type', 'err', 'src'],
  failure: 'an import breaks the layering of src/ (see docs/ARCHITECTURE.md).',
});
