import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CellError, formatCellError, isCellError } from '../errors/index.js';
import { intOption, parseCommand, suggestion, UsageError } from '../terminal/args.js';
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

const PASSPHRASE_NOTE =
  'Keys are encrypted at rest when a passphrase is given (--passphrase-file, CELL_MESH_PASSPHRASE).';

const INIT = {
  usage: `usage: cell mesh init [--name <mesh>] [--host <name>] [--passphrase-file <f>] [--force]

Creates the mesh's certificate authority and this host's identity in ~/.cell/mesh. ${PASSPHRASE_NOTE}`,
  options: {
    name: { type: 'string' },
    host: { type: 'string' },
    'passphrase-file': { type: 'string' },
    force: { type: 'boolean' },
  },
  positionals: [0, 0],
} as const;

export async function meshInit(args: string[], print: Print = console.log): Promise<number> {
  const parsed = parseCommand(args, INIT);
  if (parsed.help) {
    print(INIT.usage);
    return 0;
  }
  const { values } = parsed;
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

const JOIN = {
  usage: `usage: cell mesh join [--host <name>] [--passphrase-file <f>] [--force]
       cell mesh join --cert <bundle.pem> [--ca-fingerprint <hex>] [--passphrase-file <f>]

The first form creates this host's key and a certificate request (~/.cell/mesh/host.csr) to carry to
the CA host; the second installs the certificate bundle issued there. ${PASSPHRASE_NOTE}`,
  options: {
    host: { type: 'string' },
    cert: { type: 'string' },
    'ca-fingerprint': { type: 'string' },
    'passphrase-file': { type: 'string' },
    force: { type: 'boolean' },
  },
  positionals: [0, 0],
} as const;

export async function meshJoin(args: string[], print: Print = console.log): Promise<number> {
  const parsed = parseCommand(args, JOIN);
  if (parsed.help) {
    print(JOIN.usage);
    return 0;
  }
  const { values } = parsed;
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

const SIGN = {
  usage: `usage: cell mesh sign <host.csr> [--out <bundle.pem>] [--days <n>] [--passphrase-file <f>]

On the CA host: issues a host certificate for the request and writes the bundle to carry back.`,
  options: { out: { type: 'string', short: 'o' }, days: { type: 'string' }, 'passphrase-file': { type: 'string' } },
  positionals: [1, 1],
  expects: 'the certificate request file (host.csr)',
} as const;

export async function meshSign(args: string[], print: Print = console.log): Promise<number> {
  const parsed = parseCommand(args, SIGN);
  if (parsed.help) {
    print(SIGN.usage);
    return 0;
  }
  const { values, positionals } = parsed;
  const csrPath = positionals[0] as string;
  let csr: string;
  try {
    csr = readFileSync(csrPath, 'utf8');
  } catch (err) {
    throw new CellError('E_INVALID_ARGUMENT', `cannot read ${csrPath}: ${(err as Error).message}`, {
      fix: 'pass the host.csr that `cell mesh join --host <name>` wrote on the new host.',
    });
  }
  const days = intOption(values.days, '--days', SIGN.usage, { min: 1 });
  const r = await signJoinRequest(csr, {
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

const STATUS = {
  usage: `usage: cell mesh status [--passphrase-file <f>] [--json]

Shows this host's mesh identity: host name, certificate fingerprint and expiry, the mesh CA.`,
  options: { 'passphrase-file': { type: 'string' }, json: { type: 'boolean' } },
  positionals: [0, 0],
} as const;

export async function meshStatus(args: string[], print: Print = console.log): Promise<number> {
  const parsed = parseCommand(args, STATUS);
  if (parsed.help) {
    print(STATUS.usage);
    return 0;
  }
  const { values } = parsed;
  const paths = meshPaths();
  const id = loadMeshIdentity({ passphrase: passphraseFrom(values['passphrase-file']) });
  if (values.json === true) {
    print(
      JSON.stringify({
        host: id.hostName,
        hostFingerprint: id.hostFingerprint,
        validTo: id.cert.validTo,
        caFingerprint: id.caFingerprint,
        holdsCaKey: existsSync(paths.caKey),
      }),
    );
    return 0;
  }
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

const SUBCOMMANDS = ['init', 'join', 'sign', 'status'];

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
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        print(USAGE);
        return sub === undefined ? 2 : 0;
      default: {
        const what = sub.startsWith('-') ? `unknown option ${sub}` : `unknown command '${sub}'`;
        throw new UsageError(`${what}${suggestion(sub, SUBCOMMANDS)}`, USAGE);
      }
    }
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(
        `cell mesh${sub === undefined || sub.startsWith('-') ? '' : ` ${sub}`}: ${err.message}\n${err.usage.split('\n\n')[0]}`,
      );
      return 2;
    }
    if (isCellError(err)) {
      console.error(`cell mesh ${sub}: ${formatCellError(err)}`);
      return isCellError(err, 'E_NAME_INVALID') ? 2 : 1;
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
