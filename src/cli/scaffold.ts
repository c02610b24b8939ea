// `cell new <name>`: a cell that runs under the Root with one more command (`cell up`). Writes the
// contract and the cell into the DNA folder <name>/ (so editing the contract rebuilds the cell), a
// caller beside it, the cell's entry in cell.json (created or extended) and, when missing, a strict
// tsconfig.json and a package.json that makes the folder an ES module project.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CellError } from '../errors/index.js';
import { validateCellName } from '../paths/index.js';
import { parseCommand } from '../terminal/args.js';

export const NEW_USAGE = `usage: cell new <name> [--dir <folder>] [--json]

Scaffolds a cell in the folder (default: the current one):
  <name>/contract.ts   the contract (protein messages and the service) the cell and its callers share
  <name>/index.ts      the cell: binds its Membrane to the contract
  call-<name>.ts       a caller: Synapse.grow(contract) and one call
  cell.json            registers the cell (added to an existing manifest), with "$schema" for editors
  tsconfig.json        strict, NodeNext (only when there is none)
  package.json         "type": "module" (created, or the field added when missing)
Then \`npx tsc\` type-checks and compiles the caller, \`cell up\` starts the Root and the cell, and
\`cell call <name> greet '{"name": "you"}'\` or \`node dist/call-<name>.js\` calls it.`;

const SPEC = {
  usage: NEW_USAGE,
  options: { dir: { type: 'string' }, json: { type: 'boolean' } },
  positionals: [1, 1],
  expects: 'the new cell name',
} as const;

interface PackageInfo {
  name: string;
  root: string;
}

/** This package's name and folder (what the scaffold imports, and where its JSON Schema lives). */
export function ownPackage(): PackageInfo {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string };
      if (typeof pkg.name === 'string') return { name: pkg.name, root: dir };
    }
    dir = dirname(dir);
  }
  return { name: 'cell-runtime', root: dirname(dirname(dirname(fileURLToPath(import.meta.url)))) };
}

/** `my-cell` → `MyCell`; a name starting with a digit gets a `Cell` prefix. */
export function typeName(name: string): string {
  const camel = name
    .split(/[-_]+/)
    .filter((p) => p !== '')
    .map((p) => p[0]?.toUpperCase() + p.slice(1))
    .join('');
  return /^[0-9]/.test(camel) ? `Cell${camel}` : camel;
}

export function contractSource(name: string, pkg: string): string {
  const T = typeName(name);
  return `// The contract of the '${name}' cell: the cell (index.ts) and every caller import it. Appending
// optional fields (t.option) keeps old callers working; anything else changes the fingerprint.
import { type Infer, protein, rpc, service, t } from '${pkg}';

export const Greeting = protein('Greeting', {
  name: t.string,
  /** How many times to say it (at least once). */
  times: t.uint,
});
export type Greeting = Infer<typeof Greeting>;

export const Reply = protein('Reply', {
  text: t.string,
  /** Greetings this cell has answered since it started. */
  served: t.u64,
});
export type Reply = Infer<typeof Reply>;

export const ${T} = service('${name}', {
  greet: rpc(Greeting, Reply),
  ping: rpc(t.unit, t.unit),
});
`;
}

export function cellSource(name: string, pkg: string): string {
  const T = typeName(name);
  return `// The '${name}' cell. The Root builds this folder (its DNA) into a bundle and runs it in a sandbox.
import { Membrane } from '${pkg}';
import { ${T} } from './contract.js';

let served = 0n;

await Membrane.bind(${T}, {
  // \`greeting\` is a lazy view over the request bytes: each field is read when used.
  greet: (greeting) => {
    served += 1n;
    const text = Array.from({ length: Math.max(1, greeting.times) }, () => \`Hello, \${greeting.name}!\`).join(' ');
    return { text, served };
  },
  ping: () => undefined,
});
console.log('${name} ready');
`;
}

export function callerSource(name: string, pkg: string): string {
  const T = typeName(name);
  const v = T[0]?.toLowerCase() + T.slice(1);
  return `// Calls the '${name}' cell: the Root starts it on demand if it is not running.
import { Synapse } from '${pkg}';
import { ${T} } from './${name}/contract.js';

const ${v} = await Synapse.grow(${T});
const reply = await ${v}.greet({ name: process.argv[2] ?? 'world', times: 1 });
console.log(\`\${reply.text} (greeting #\${reply.served})\`);
await ${v}.$close();
`;
}

export const TSCONFIG = `{
  "compilerOptions": {
    "target": "ES2022",
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "lib": ["ES2023"],
    "types": ["node"],
    "strict": true,
    "skipLibCheck": true,
    "outDir": "dist",
    "rootDir": ".",
    "sourceMap": true
  },
  "exclude": ["node_modules", "dist"]
}
`;

function posix(p: string): string {
  return p.split(sep).join('/');
}

export async function runNewCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(args, SPEC);
  if (parsed.help) {
    process.stdout.write(`${NEW_USAGE}\n`);
    return 0;
  }
  const name = validateCellName(parsed.positionals[0] as string);
  const dir = resolve(parsed.values.dir ?? '.');
  const pkg = ownPackage();
  const dna = join(dir, name);
  if (existsSync(dna)) {
    throw new CellError('E_INVALID_ARGUMENT', `${dna} already exists.`, {
      cell: name,
      fix: 'pick another name, or remove the folder first.',
    });
  }
  const manifestFile = join(dir, 'cell.json');
  const manifest = existingManifest(manifestFile, name);
  // Read before anything is written: a package.json `cell new` cannot use stops it with no files left behind.
  const pkgFile = join(dir, 'package.json');
  const project = existsSync(pkgFile)
    ? readJsonObject(pkgFile, 'fix it first: `cell new` sets "type": "module" in it.')
    : undefined;

  const created: string[] = [];
  const write = (path: string, text: string) => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text, { flag: 'wx' });
    created.push(posix(relative(dir, path)));
  };
  write(join(dna, 'contract.ts'), contractSource(name, pkg.name));
  write(join(dna, 'index.ts'), cellSource(name, pkg.name));
  write(join(dir, `call-${name}.ts`), callerSource(name, pkg.name));

  const schema = posix(relative(dir, join(pkg.root, 'schemas', 'cell.schema.json')));
  const updated = {
    $schema: manifest.$schema ?? (schema.startsWith('.') ? schema : `./${schema}`),
    ...manifest,
    cells: { ...((manifest.cells as object | undefined) ?? {}), [name]: { dna: `./${name}` } },
  };
  writeFileSync(manifestFile, `${JSON.stringify(updated, null, 2)}\n`);
  created.push('cell.json');

  if (!existsSync(join(dir, 'tsconfig.json'))) write(join(dir, 'tsconfig.json'), TSCONFIG);
  const notes = project === undefined ? newProject(pkgFile, name, pkg, write) : adaptProject(pkgFile, project);

  if (parsed.values.json === true) {
    process.stdout.write(`${JSON.stringify({ name, dir, created, notes })}\n`);
    return 0;
  }
  const lines = [`created cell '${name}' in ${dir}:`, ...created.map((f) => `  ${f}`)];
  for (const n of notes) lines.push(`note: ${n}`);
  lines.push(
    'next:',
    '  npx tsc                                   # type-check (strict) and compile to dist/',
    '  npx cell up                               # start the Root and the cells of cell.json',
    `  npx cell call ${name} greet '{"name": "you", "times": 1}'`,
    `  node dist/call-${name}.js you              # the same from TypeScript`,
    '  npx cell down                             # stop everything',
  );
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

/** A JSON file that must hold an object, or a CellError naming the file, what is wrong and `fix`. */
function readJsonObject(file: string, fix: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new CellError('E_INVALID_ARGUMENT', `${file} is not valid JSON: ${(err as Error).message}`, { fix });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new CellError('E_INVALID_ARGUMENT', `${file} does not hold a JSON object.`, { fix });
  }
  return value as Record<string, unknown>;
}

/** The cell.json the new cell joins (empty when there is none); refuses one that registers it already. */
function existingManifest(file: string, name: string): Record<string, unknown> {
  if (!existsSync(file)) return {};
  const manifest = readJsonObject(file, 'fix it first: `cell new` adds the cell to it.');
  const cells = manifest.cells;
  if (cells !== undefined && (cells === null || typeof cells !== 'object' || Array.isArray(cells))) {
    throw new CellError('E_INVALID_ARGUMENT', `${file}: "cells" is not an object.`, {
      fix: 'make "cells" an object of cell names, or remove it: `cell new` adds the cell to it.',
    });
  }
  if ((cells as Record<string, unknown> | undefined)?.[name] !== undefined) {
    throw new CellError('E_INVALID_ARGUMENT', `${file} already registers '${name}'.`, {
      cell: name,
      fix: 'pick another name.',
    });
  }
  return manifest;
}

/** A package.json for a folder that has none: the runtime, TypeScript, an ES module project. */
function newProject(
  file: string,
  name: string,
  pkg: PackageInfo,
  write: (path: string, text: string) => void,
): string[] {
  const project = {
    name: name,
    private: true,
    type: 'module',
    scripts: { build: 'tsc', call: `node dist/call-${name}.js` },
    dependencies: { [pkg.name]: `^${packageVersion(pkg.root)}` },
    devDependencies: { '@types/node': '^20.0.0', typescript: '^5.9.0' },
  };
  write(file, `${JSON.stringify(project, null, 2)}\n`);
  return ['install the dependencies: npm install'];
}

/** An existing package.json made an ES module project (the scaffold is one); what is missing, noted. */
function adaptProject(file: string, project: Record<string, unknown>): string[] {
  const notes: string[] = [];
  if (project.type === undefined || project.type === 'commonjs') {
    project.type = 'module';
    writeFileSync(file, `${JSON.stringify(project, null, 2)}\n`);
    notes.push('package.json: set "type": "module" (the scaffold is an ES module project)');
  }
  const deps = { ...(project.dependencies as object), ...(project.devDependencies as object) };
  const missing = ['typescript', '@types/node'].filter((d) => !(d in deps));
  if (missing.length > 0) notes.push(`for \`tsc\`: npm install -D ${missing.join(' ')}`);
  return notes;
}

function packageVersion(root: string): string {
  try {
    return (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '0.1.0';
  }
}
