// Transpiles every TypeScript file (src, test, bench, examples) to dist/ one-to-one, keeping the
// folder layout, so tests, benchmarks and spawned cells run plain JavaScript with no loader.
// Type checking is separate (`npm run typecheck`), which keeps this step under a second.
// `--types` also writes the package's declaration files (dist/src/**/*.d.ts, tsconfig.build.json):
// `npm pack` runs that through the `prepack` script.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const roots = ['src', 'test', 'bench', 'examples'];

function walk(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    if (e.name === 'node_modules' || e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

const files = roots.flatMap((r) => walk(join(root, r), []));
const tsFiles = files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
// Fixtures and assets (JSON manifests, certificates, C sources for references) travel with the code.
const assets = files.filter((f) => /\.(json|c|txt|pem|py)$/.test(f));

rmSync(join(root, 'dist'), { recursive: true, force: true });
await esbuild.build({
  entryPoints: tsFiles,
  outdir: join(root, 'dist'),
  outbase: root,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: 'inline',
  bundle: false,
  logLevel: 'warning',
});
for (const a of assets) {
  const dest = join(root, 'dist', relative(root, a));
  mkdirSync(dirname(dest), { recursive: true });
  copyFileSync(a, dest);
}
if (process.argv.includes('--types')) {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], {
    cwd: root,
    stdio: 'inherit',
  });
  if (r.status !== 0 || !existsSync(join(root, 'dist', 'src', 'index.d.ts'))) {
    console.error('build: declaration files were not written (tsc failed, see above)');
    process.exit(1);
  }
}
if (process.argv.includes('--verbose')) console.log(`built ${tsFiles.length} files into dist/`);

// The boot entry a cell's process runs first (src/capsid/boot.ts): one self-contained file, because
// the sandbox binds just this file (and the cell's bundle), not Cell's whole tree.
await esbuild.build({
  entryPoints: [join(root, 'src', 'capsid', 'boot.ts')],
  outfile: join(root, 'dist', 'boot', 'cell-boot.mjs'),
  format: 'esm',
  platform: 'node',
  target: 'node20',
  bundle: true,
  logLevel: 'warning',
});
