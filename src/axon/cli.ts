import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CellError, isCellError } from '../errors/index.js';
import {
  createJoinRequest,
  initMesh,
  installJoinBundle,
  loadMeshIdentity,
  meshPaths,
  signJoinRequest,
} from './identity/index.js';

/**
 * `cell mesh …`: create a mesh, join hosts to it. Joining is a file exchange the operator carries:
 *   new host:  cell mesh join --host beta          → ~/.cell/mesh/host.csr
 *   CA host:   cell mesh sign host.csr             → beta.bundle.pem
 *   new host:  cell mesh join --cert beta.bundle.pem [--ca-fingerprint <hex>]
 * Neither the CA key nor the host key ever travels.
 */
type Print = (line: string) => void;

function passphraseFrom(file: string | undefined): string | undefined {
  return file === undefined ? undefined : readFileSync(file, 'utf8').replace(/\r?\n$/, '');
}

export async function meshInit(args: string[], print: Print = console.log): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      name: { type: 'string' },
      host: { type: 'string' },
      'passphrase-file': { type: 'string' },
      force: { type: 'boolean' },
    },
  });
  const r = await initMesh({
    meshName: values.name,
    hostName: values.host,
    passphrase: passphraseFrom(values['passphrase-file']),
    force: values.force,
  });
  print(`mesh CA created in ${r.paths.dir}`);
  print(`  CA fingerprint (sha-256): ${r.caFingerprint}`);
  print(`  this host: ${r.hostName} (${r.hostFingerprint})`);
  print(
    'add a host: run `cell mesh join --host <name>` there, bring its host.csr here, run `cell mesh sign host.csr`.',
  );
  return 0;
}

export async function meshJoin(args: string[], print: Print = console.log): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      host: { type: 'string' },
      cert: { type: 'string' },
      'ca-fingerprint': { type: 'string' },
      'passphrase-file': { type: 'string' },
      force: { type: 'boolean' },
    },
  });
  const passphrase = passphraseFrom(values['passphrase-file']);
  if (values.cert !== undefined) {
    const r = installJoinBundle(readFileSync(values.cert, 'utf8'), {
      passphrase,
      expectCaFingerprint: values['ca-fingerprint'],
    });
    print(`joined the mesh as ${r.hostName} (${r.hostFingerprint})`);
    print(
      `  mesh CA fingerprint: ${r.caFingerprint}${values['ca-fingerprint'] ? ' (matches)' : ' — compare it with `cell mesh status` on the CA host'}`,
    );
    return 0;
  }
  const r = await createJoinRequest({ hostName: values.host, passphrase, force: values.force });
  print(`key and certificate request for ${r.hostName} created: ${r.csrPath}`);
  print('carry host.csr to the CA host and run `cell mesh sign host.csr` there; bring back the bundle and run');
  print('  `cell mesh join --cert <bundle.pem> --ca-fingerprint <CA fingerprint>`');
  return 0;
}

export async function meshSign(args: string[], print: Print = console.log): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { out: { type: 'string', short: 'o' }, days: { type: 'string' }, 'passphrase-file': { type: 'string' } },
  });
  const csrPath = positionals[0];
  if (csrPath === undefined)
    throw new CellError('E_INVALID_ARGUMENT', 'missing the certificate request file.', {
      fix: 'cell mesh sign <host.csr>',
    });
  const days = values.days === undefined ? undefined : Number(values.days);
  const r = await signJoinRequest(readFileSync(csrPath, 'utf8'), {
    passphrase: passphraseFrom(values['passphrase-file']),
    days,
  });
  const out = resolve(values.out ?? `${r.hostName}.bundle.pem`);
  if (existsSync(out))
    throw new CellError('E_INVALID_ARGUMENT', `${out} exists.`, { fix: 'remove it or pass --out <file>.' });
  writeFileSync(out, r.bundlePem, { mode: 0o644 });
  print(`issued a host certificate for ${r.hostName} (${r.fingerprint}): ${out}`);
  print('carry it to that host and run `cell mesh join --cert <file>` there.');
  return 0;
}

export async function meshStatus(args: string[], print: Print = console.log): Promise<number> {
  const { values } = parseArgs({ args, options: { 'passphrase-file': { type: 'string' } } });
  const paths = meshPaths();
  const id = loadMeshIdentity({ passphrase: passphraseFrom(values['passphrase-file']) });
  print(`host ${id.hostName}  certificate ${id.hostFingerprint}  valid until ${id.cert.validTo}`);
  print(`mesh CA ${id.caFingerprint}${existsSync(paths.caKey) ? '  (this host holds the CA key)' : ''}`);
  return 0;
}

const USAGE = `usage: cell mesh <command>
  init  [--name <mesh>] [--host <name>] [--passphrase-file <f>] [--force]   create the mesh CA here
  join  [--host <name>] [--passphrase-file <f>] [--force]                   create a key + host.csr
  sign  <host.csr> [--out <bundle.pem>] [--days <n>]                        (CA host) issue a certificate
  join  --cert <bundle.pem> [--ca-fingerprint <hex>]                        install the issued certificate
  status                                                                    show this host's mesh identity
Keys are encrypted at rest when a passphrase is given (--passphrase-file, CELL_MESH_PASSPHRASE).`;

/** `cell mesh <sub> …`; returns the exit code. */
export async function meshCommand(argv: string[], print: Print = console.log): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    switch (sub) {
      case 'init':
        return await meshInit(rest, print);
      case 'join':
        return await meshJoin(rest, print);
      case 'sign':
        return await meshSign(rest, print);
      case 'status':
        return await meshStatus(rest, print);
      default:
        print(USAGE);
        return sub === undefined || sub === 'help' || sub === '--help' ? 0 : 2;
    }
  } catch (err) {
    if (isCellError(err)) {
      console.error(`cell mesh ${sub}: ${err.message}`);
      return 1;
    }
    if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`cell mesh ${sub}: ${(err as Error).message}\n${USAGE}`);
      return 2;
    }
    throw err;
  }
}

// Runnable on its own: `node dist/src/axon/cli.js mesh init|join|sign|status`.
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  meshCommand(args[0] === 'mesh' ? args.slice(1) : args).then((code) => {
    process.exitCode = code;
  });
}
