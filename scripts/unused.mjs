// Checks that src/ has no unused files or exports (knip, knip.json): an export nobody imports is a
// public surface nobody asked for. Exits non-zero and names each one otherwise.
// `node scripts/unused.mjs [--cwd <dir>]` (default: the repository). npm test runs it after the layers.
// knip is a devDependency; CELL_KNIP may name another node_modules holding it.
import { join } from 'node:path';
import { runDevTool } from './dev-tool.mjs';

runDevTool({
  name: 'unused',
  pkg: 'knip',
  bin: join('bin', 'knip.js'),
  envVar: 'CELL_KNIP',
  // Files and exports only: dependencies are the package suite's business (publint, attw, the install walk).
  args: (cwd) => [
    '--config',
    join(cwd, 'knip.json'),
    '--directory',
    cwd,
    '--include',
    'files,exports,types',
    '--no-progress',
  ],
  failure:
    'src/ has unused files or exports: delete them, or export from the component’s index.ts only what is public.',
});
