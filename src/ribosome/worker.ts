/**
 * The build process: the Ribosome forks it per build, sends one CompileRequest and gets one
 * CompileOutcome back. It exits when done, taking esbuild's service and every buffer with it.
 */
import { type CompileRequest, compileHere } from './build.js';

process.once('disconnect', () => process.exit(1)); // the Root went away: nobody wants the result
process.once('message', (req) => {
  compileHere(req as CompileRequest)
    .catch((err: unknown) => ({ ok: false as const, crash: err instanceof Error ? err.message : String(err) }))
    .then((outcome) => process.send?.(outcome, () => process.exit(0)));
});
