// The first code a cell's process runs: `node cell-boot.mjs <bundle>` (or `--stem`), inside the sandbox.
// It reads the boot contract the Root wrote into fd 3 (src/paths/boot.ts), gives the cell its
// environment, keeps the identity key in memory only, then loads the cell's bundle. Secrets never pass
// through argv, and nothing in the manifest's env reaches a host-side process (bwrap, the shell) or
// Node's own start-up (NODE_OPTIONS, LD_* are refused by the manifest, and arrive here too late to matter).
//
// With `--stem` the process is a stem cell: started (sandboxed, in its own cgroup) before any cell
// was chosen for it, it says so on fd 5 and blocks reading fd 3 until the Root hands it a cell's
// contract, whose `bundle` names what to load. No cell code runs before that read returns.
import { closeSync, existsSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { BOOT_FD, CELL_ENV, readBootFrom, STEM_READY_FD, setBootInfo } from '../paths/boot.js';

const stem = process.argv[2] === '--stem';
if (process.argv[2] === undefined) {
  process.stderr.write('cell-boot: usage: node cell-boot.mjs <bundle>\n');
  process.exit(64);
}
/**
 * What a cell's runtime loads first, loaded while a stem waits: Node's own modules are compiled on
 * first use, which is time a cell would otherwise spend after its contract arrived.
 */
const WARM = [
  'node:buffer',
  'node:crypto',
  'node:dgram',
  'node:dns',
  'node:events',
  'node:fs',
  'node:module',
  'node:net',
  'node:os',
  'node:path',
  'node:perf_hooks',
  'node:stream',
  'node:tls',
  'node:url',
  'node:util',
  'node:worker_threads',
];
/** Where the Capsid binds the shared-memory addon (src/capsid INSIDE.addon). */
const ADDON_INSIDE = '/cell/cell_native.node';

if (stem) {
  await Promise.all(WARM.map((m) => import(m)));
  // The runtime requires the addon by this same path; the module cache then hands it the loaded one.
  try {
    if (existsSync(ADDON_INSIDE)) createRequire(import.meta.url)(ADDON_INSIDE);
  } catch {
    // the cell reports it when it needs the addon
  }
  try {
    writeSync(STEM_READY_FD, '1');
    closeSync(STEM_READY_FD);
  } catch {
    // nobody listens: the Root adopts a stem whether or not it said it was ready
  }
}
let boot: ReturnType<typeof readBootFrom>;
try {
  boot = readBootFrom(BOOT_FD);
} catch (err) {
  process.stderr.write(`cell-boot: ${(err as Error).message}\n`);
  process.exit(78);
}
const bundle = stem ? boot.bundle : process.argv[2];
if (bundle === undefined) {
  process.stderr.write('cell-boot: the boot contract of a stem cell names no bundle\n');
  process.exit(78);
}
for (const [k, v] of Object.entries(boot.env)) process.env[k] = v;
process.env[CELL_ENV.name] = boot.name;
process.env[CELL_ENV.generation] = String(boot.generation);
process.env[CELL_ENV.socketDir] = boot.socketDir;
process.env[CELL_ENV.bindPath] = boot.bindPath;
process.env[CELL_ENV.tapPath] = boot.tapPath;
process.env[CELL_ENV.umbilical] = boot.umbilical;
process.env[CELL_ENV.lan] = boot.lan ? '1' : '0';
if (boot.parentPid !== undefined) process.env.CELL_PARENT_PID = String(boot.parentPid);
setBootInfo(boot);
// The cell sees itself as `node <bundle> …args`, as if it had been started directly.
process.argv.splice(1, stem ? 2 : 1, ...(stem ? [bundle] : []));
await import(pathToFileURL(bundle).href);
