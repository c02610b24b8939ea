#!/usr/bin/env node
// The `cell` command. Runs the transpiled CLI; in a fresh checkout it runs the set-up step first.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const main = join(root, 'dist', 'src', 'cli', 'main.js');
if (!existsSync(main)) {
  const setup = join(root, 'scripts', 'setup.mjs');
  if (!existsSync(setup)) {
    console.error(`cell: ${main} is missing; reinstall the package (npm install cell-runtime).`);
    process.exit(1);
  }
  const r = spawnSync(process.execPath, [setup, '--quiet'], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
const { run } = await import(pathToFileURL(main).href);
run(process.argv.slice(2));
