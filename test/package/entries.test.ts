// What the package's entry points pull in. A cell imports only `cell-runtime`: its bundle must not
// carry the Root, the Capsid, the Ribosome, consensus or the dashboard; the CLI loads ink and React
// only for `cell top`. Checked on the import graph esbuild sees (static imports are what loads at
// start; dynamic ones load only when the code path runs).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as {
  name: string;
  exports: Record<string, string | { types: string; import: string }>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  files: string[];
  scripts: Record<string, string>;
};

interface Graph {
  inputs: string[];
  /** Reached from the entry through static imports only. */
  eager: Set<string>;
  meta: esbuild.Metafile;
}

async function graph(contents: string, packagesExternal = false): Promise<Graph> {
  const r = await esbuild.build({
    stdin: { contents, resolveDir: repo, loader: 'ts', sourcefile: 'entry.ts' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    write: false,
    metafile: true,
    outfile: join(repo, 'probe.js'),
    external: ['*.node'],
    ...(packagesExternal ? { packages: 'external' as const } : {}),
    logLevel: 'silent',
  });
  const meta = r.metafile;
  const eager = new Set(['entry.ts']);
  const queue = ['entry.ts'];
  while (queue.length > 0) {
    for (const i of meta.inputs[queue.pop() as string]?.imports ?? []) {
      if (i.kind !== 'import-statement' || i.external || eager.has(i.path)) continue;
      eager.add(i.path);
      queue.push(i.path);
    }
  }
  return { inputs: Object.keys(meta.inputs), eager, meta };
}

const HEAVY = [
  /^src\/consensus\//,
  /^src\/capsid\//,
  /^src\/ribosome\//,
  /^src\/swap\//,
  /^src\/root\/(daemon|main|engine|manifest)\.ts$/,
  /^src\/top\/(index|view|ink|command)\.ts$/,
  /^src\/cli\//,
  /node_modules\/(ink|react|esbuild|yoga-layout)\//,
];

test("a cell that imports only the package's main entry bundles none of the runtime's other parts", async () => {
  const g = await graph(
    "import { Membrane, Synapse, protein, rpc, service, t } from './src/index.ts';\n" +
      'console.log(Membrane, Synapse, protein, rpc, service, t);\n',
  );
  for (const input of g.inputs) {
    for (const re of HEAVY) assert.doesNotMatch(input, re, `the cell bundle carries ${input}`);
  }
  // What loads when the cell starts: contracts, Membrane, Synapse and what they use, no certificates.
  for (const input of g.eager) {
    assert.doesNotMatch(input, /node_modules\//, `loaded at start: ${input}`);
    assert.doesNotMatch(input, /^src\/(root|axon\/mesh)/, `loaded at start: ${input}`);
  }
  // Lazily, only on the path that needs it: the Root's spawn-on-demand client, Axon (CELL_LAN /
  // CELL_PEER) and the NATS carrier with its client (CELL_NATS, docs/NATS.md).
  const lazy = g.inputs.filter((i) => !g.eager.has(i));
  for (const input of lazy) {
    assert.match(
      input,
      /^src\/(root\/(client|contract|resolver)|axon\/|nats\/)|node_modules\/(@peculiar|@nats-io|tweetnacl|reflect-metadata|tsyringe|tslib|asn1js|pvtsutils|pvutils)/,
      `unexpected lazily bundled input ${input}`,
    );
  }
});

test('the cell command loads ink and React only for `cell top`', async () => {
  const g = await graph("import { run } from './src/cli/main.ts';\nconsole.log(run);\n", true);
  for (const input of g.eager) {
    assert.doesNotMatch(input, /^src\/top\/(index|view|ink|command)\.ts$/, `loaded at start: ${input}`);
    for (const i of g.meta.inputs[input]?.imports ?? []) {
      if (i.kind === 'import-statement')
        assert.ok(!/^(ink|react)(\/|$)/.test(i.path), `${input} imports ${i.path} eagerly`);
    }
  }
  const view = g.inputs.find((i) => i === 'src/top/view.ts');
  assert.ok(view !== undefined, 'the dashboard is still reachable (lazily)');
});

test('every export of package.json points at a source entry that exists, and the subpaths are separate', async () => {
  assert.equal(pkg.name, 'cell-runtime');
  const subpaths = Object.keys(pkg.exports);
  assert.deepEqual(subpaths, [
    '.',
    './host',
    './observation',
    './mesh',
    './consensus',
    './testing',
    './schemas/cell.schema.json',
    './package.json',
  ]);
  for (const [path, target] of Object.entries(pkg.exports)) {
    if (typeof target === 'string') continue;
    assert.deepEqual(Object.keys(target), ['types', 'import'], `${path}: types first, then import`);
    assert.equal(target.types, target.import.replace(/\.js$/, '.d.ts'), path);
    const source = join(repo, target.import.replace(/^\.\/dist\//, '').replace(/\.js$/, '.ts'));
    readFileSync(source);
  }
  const main = await import('../../src/index.js');
  for (const name of [
    'protein',
    't',
    'service',
    'rpc',
    'Membrane',
    'Synapse',
    'CellError',
    'isCellError',
    'formatCellError',
  ]) {
    assert.ok(name in main, `the main entry exports ${name}`);
  }
  for (const name of [
    'RaftNode',
    'encapsulate',
    'synthesize',
    'connectRoot',
    'growAcrossMesh',
    'serveMetrics',
    'openTap',
  ]) {
    assert.ok(!(name in main), `${name} moved to a subpath`);
  }
  const host = await import('../../src/host.js');
  for (const name of ['connectRoot', 'withRoot', 'RootService', 'encapsulate', 'synthesize', 'swapGenerations']) {
    assert.ok(name in host, `host exports ${name}`);
  }
  const observation = await import('../../src/observation.js');
  for (const name of ['serveMetrics', 'formatCellMetrics', 'openTap', 'compileFilter', 'CellProbe']) {
    assert.ok(name in observation, `observation exports ${name}`);
  }
  const mesh = await import('../../src/mesh.js');
  for (const name of ['growAcrossMesh', 'exposeOnMesh', 'loadMeshIdentity'])
    assert.ok(name in mesh, `mesh exports ${name}`);
  const consensus = await import('../../src/consensus/index.js');
  for (const name of ['RaftNode', 'Wal', 'CellTransport']) assert.ok(name in consensus, `consensus exports ${name}`);
  const testing = await import('../../src/testing/index.js');
  assert.deepEqual(Object.keys(testing).sort(), ['startTestCell', 'tempCellHome']);
});

test('the testing subpath carries the Membrane and Synapse, never the Root, the sandbox or a dev tool', async () => {
  const g = await graph("import * as testing from './src/testing/index.ts';\nconsole.log(testing);\n");
  for (const input of g.inputs) {
    for (const re of HEAVY) assert.doesNotMatch(input, re, `cell-runtime/testing carries ${input}`);
    assert.doesNotMatch(input, /node_modules\/(typescript|fast-check|@biomejs|ajv)\//, input);
  }
  assert.ok(g.inputs.includes('src/membrane/index.ts') && g.inputs.includes('src/synapse/index.ts'));
});

/** Bare specifiers imported (statically or dynamically) anywhere under src/. */
function importedPackages(): Set<string> {
  const found = new Set<string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) {
        const text = readFileSync(p, 'utf8');
        const imports =
          /^\s*(?:(?:import|export)\b[^'\n]*?|\}\s*)from\s*'([^'.][^']*)'|\bimport\(\s*'([^'.][^']*)'\s*\)/gm;
        for (const m of text.matchAll(imports)) {
          const spec = (m[1] ?? m[2]) as string;
          if (spec.startsWith('node:') || builtinModules.includes(spec)) continue;
          // Template text (the scaffold's sources) is not an import of this package.
          if (!/^[a-z@][a-z0-9@/._-]*$/.test(spec)) continue;
          found.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : (spec.split('/')[0] as string));
        }
      }
    }
  };
  walk(join(repo, 'src'));
  return found;
}

test('the runtime depends only on its dependencies; what only the repository needs is a devDependency', () => {
  const used = importedPackages();
  for (const name of used) {
    assert.ok(name in pkg.dependencies, `src imports ${name}, which is not a dependency`);
  }
  for (const name of Object.keys(pkg.dependencies)) {
    // node-addon-api is the native addon's C++ header library (native/binding.gyp).
    if (name === 'node-addon-api') continue;
    assert.ok(used.has(name), `${name} is a dependency but src never imports it`);
  }
  for (const dev of ['typescript', '@biomejs/biome', 'fast-check', 'zeromq', '@grpc/grpc-js', 'moleculer', 'publint']) {
    assert.ok(!(dev in pkg.dependencies), `${dev} is a dev tool`);
  }
  assert.match(readFileSync(join(repo, 'native', 'binding.gyp'), 'utf8'), /node-addon-api/);
  for (const f of [
    'dist/src',
    // The boot entry every cell process starts with (the Capsid runs it before the cell's bundle).
    'dist/boot',
    'bin',
    'native/*.cc',
    'native/binding.gyp',
    'schemas',
    'ATTRIBUTION',
    'scripts/install-native.mjs',
  ]) {
    assert.ok(pkg.files.includes(f), `files lists ${f}`);
  }
  assert.equal(pkg.scripts.install, 'node scripts/install-native.mjs');
  assert.equal(pkg.scripts.prepack, 'node scripts/build.mjs --types');
});
