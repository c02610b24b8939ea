// The layers of src/, bottom to top (docs/ARCHITECTURE.md). A module may import its own layer and the
// ones below it, never one above, and no import cycle is allowed anywhere. `node scripts/layers.mjs`
// checks it (npm test runs that first).
/** @type {string[][]} folders under src/, per layer */
const LAYERS = [
  ['errors', 'paths', 'terminal'],
  ['protein', 'frame', 'vesicle', 'identity'],
  // metrics: the in-cell counters and histograms every Membrane keeps.
  ['service', 'metrics'],
  ['shm'],
  ['synapse', 'membrane'],
  // observation: probing cells and sampling their processes from the host; the Root serves it too.
  // testing: a cell served in a test's own process and a client to it (`cell-runtime/testing`).
  ['observation', 'testing'],
  ['root', 'capsid', 'ribosome', 'swap'],
  ['axon', 'nats', 'consensus'],
  ['tap', 'top'],
  ['cli'],
];

const dir = (names) => `^src/(${names.join('|')})/`;

const upward = LAYERS.slice(0, -1).map((layer, i) => ({
  name: `layer-${i}-upward`,
  comment: `${layer.join(', ')} may import only their own layer and those below (${LAYERS.slice(0, i)
    .flat()
    .join(', ')}).`,
  severity: 'error',
  from: { path: dir(layer) },
  to: { path: dir(LAYERS.slice(i + 1).flat()) },
}));

module.exports = {
  forbidden: [
    ...upward,
    {
      name: 'unlayered-folder',
      comment: 'Every folder under src/ belongs to a layer: add a new one to LAYERS in .dependency-cruiser.cjs.',
      severity: 'error',
      from: { path: '^src/[^/]+/', pathNot: dir(LAYERS.flat()) },
      to: {},
    },
    {
      name: 'no-entry-imports',
      comment:
        'The package entries and the composition root (src/*.ts) sit above every layer: components never import them (the `cell` command uses the composition root, as a program would).',
      severity: 'error',
      from: { path: '^src/[^/]+/' },
      to: { path: '^src/[^/]+\\.ts$', pathNot: '^src/runtime\\.ts$' },
    },
    {
      name: 'runtime-only-from-cli',
      comment: 'Only the package entry and the `cell` command import the composition root.',
      severity: 'error',
      from: { path: '^src/[^/]+/', pathNot: '^src/cli/' },
      to: { path: '^src/runtime\\.ts$' },
    },
    {
      name: 'no-circular',
      comment: 'An import cycle joins its modules into one component; break it with an interface or a registration.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)node_modules/|^dist/' },
    // Type-only imports count too: a type from a higher layer is still an arrow upward.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
