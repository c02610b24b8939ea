// Runs a checking tool that is a devDependency (dependency-cruiser, knip) the way scripts/layers.mjs
// and scripts/unused.mjs need it: on the repository or on `--cwd <dir>` (their tests plant violations
// in a scratch tree), found in the repository's node_modules or in the one an environment variable
// names, its output passed through and its exit status kept; a missing tool exits 2 naming the fix.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * @param {{ name: string, pkg: string, bin: string, envVar: string, args: (cwd: string) => string[], failure: string }} tool
 */
export function runDevTool(tool) {
  const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
  const at = process.argv.indexOf('--cwd');
  const cwd = at >= 0 ? resolve(process.argv[at + 1]) : repo;
  const candidates = [process.env[tool.envVar], join(repo, 'node_modules')].filter(Boolean);
  const bin = candidates.map((dir) => join(dir, tool.pkg, tool.bin)).find((p) => existsSync(p));
  if (bin === undefined) {
    process.stderr.write(
      `${tool.name}: ${tool.pkg} is not installed (looked in ${candidates.join(', ')}).\n` +
        `  fix: npm install (it is a devDependency), or set ${tool.envVar} to a node_modules that has it.\n`,
    );
    process.exit(2);
  }
  const r = spawnSync(process.execPath, [bin, ...tool.args(cwd)], { cwd, encoding: 'utf8' });
  process.stdout.write(r.stdout ?? '');
  process.stderr.write(r.stderr ?? '');
  if (r.status !== 0) process.stderr.write(`${tool.name}: ${tool.failure}\n`);
  process.exit(r.status ?? 1);
}
