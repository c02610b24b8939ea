// The Root daemon process: `node dist/src/root/main.js [--no-sandbox]`, normally started detached by
// `cell up` with stdout/stderr on ~/.cell/logs/root.log. Writes ~/.cell/root/root.pid while it runs.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { formatCellError, isCellError } from '../errors/index.js';
import { CellProbe, serveMetrics } from '../observation/index.js';
import { rootPidPath } from './client.js';
import { Root } from './daemon.js';
import { sampleRootCells } from './top-source.js';

const noSandbox = process.argv.includes('--no-sandbox');
const portAt = process.argv.indexOf('--metrics-port');
const metricsPort = portAt < 0 ? undefined : Number(process.argv[portAt + 1]);
const pidFile = rootPidPath();
const log = (line: string) => process.stdout.write(`[root ${new Date().toISOString()}] ${line}\n`);

function removePidFile(): void {
  try {
    if (readFileSync(pidFile, 'utf8').trim() === String(process.pid)) rmSync(pidFile, { force: true });
  } catch {
    // not ours or gone
  }
}

let root: Root;
try {
  root = await Root.start({
    noSandbox,
    onShutdown: () => {
      log('shut down on request');
      removePidFile();
      process.exit(0);
    },
  });
} catch (err) {
  log(`cannot start: ${isCellError(err) ? formatCellError(err) : (err as Error).message}`);
  process.exit(1);
}
mkdirSync(dirname(pidFile), { recursive: true, mode: 0o700 });
writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o600 });
log(`listening on ${root.socketPath} (pid ${process.pid}${noSandbox ? ', NO SANDBOX: cells run unconfined' : ''})`);

if (metricsPort !== undefined) {
  // The same view as `cell metrics`: the Root's registry and states plus each cell's own counters, /proc CPU and RSS.
  try {
    const probe = new CellProbe();
    const server = await serveMetrics({ port: metricsPort, collect: () => sampleRootCells(() => root.list(), probe) });
    log(`metrics on ${server.url}`);
  } catch (err) {
    log(`cannot serve metrics on port ${metricsPort}: ${(err as Error).message}`);
    await root.shutdown();
    process.exit(1);
  }
}

// Nothing a client sends may take the daemon down; a bug in a handler is logged, not fatal.
process.on('uncaughtException', (err) => log(`uncaught: ${err.stack ?? err.message}`));
process.on('unhandledRejection', (err) => log(`unhandled rejection: ${(err as Error)?.stack ?? String(err)}`));
process.on('exit', () => {
  root.killAll();
  removePidFile();
});
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.on(sig, () => {
    log(`${sig}: stopping cells`);
    root.shutdown().catch(() => process.exit(1));
  });
}
