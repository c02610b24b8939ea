// Shared by the layer and unused-code tests: a repository check script run on a directory, and a
// scratch tree holding the repository's config for it plus the sources a test plants.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// dist/test/arch/scratch.js → the repository
export const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** `node scripts/<script> --cwd <cwd>`. */
export function check(script: string, cwd: string) {
  return spawnSync(process.execPath, [join(repo, 'scripts', script), '--cwd', cwd], { encoding: 'utf8' });
}

/** A scratch tree with copies of the repository's `configs`, a NodeNext tsconfig and `files`. */
export function tree(prefix: string, configs: string[], files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  for (const c of configs) copyFileSync(join(repo, c), join(dir, c));
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext' }, include: ['src'] }),
  );
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}
