import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const MESH_CELL = fileURLToPath(new URL('./fixtures/mesh-cell.js', import.meta.url));
export const CLI = fileURLToPath(new URL('./fixtures/cli.js', import.meta.url));

/** Two real cells in their own processes, `beta` calling `alpha` continuously, in a private socket dir. */
export class LiveMesh {
  readonly home = mkdtempSync(join(tmpdir(), 'cell-mesh-'));
  readonly dir = join(this.home, 'run');
  readonly children: ChildProcess[] = [];

  get env(): Record<string, string> {
    return { CELL_SOCKET_DIR: this.dir, CELL_HOME: this.home };
  }

  async start(): Promise<void> {
    await this.cell('alpha');
    await this.cell('beta', 'alpha');
  }

  cell(name: string, peer?: string): Promise<ChildProcess> {
    const child = spawn(process.execPath, [MESH_CELL], {
      env: { ...process.env, ...this.env, CELL_NAME: name, ...(peer ? { CALL_PEER: peer } : {}) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.children.push(child);
    return new Promise((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('ready')) resolve(child);
      });
      child.once('exit', (code) => reject(new Error(`${name} exited with ${code}`)));
    });
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.kill('SIGKILL');
          }),
      ),
    );
    rmSync(this.home, { recursive: true, force: true });
  }
}

/** Runs the CLI fixture to completion and returns its output. */
export function runCli(
  mesh: LiveMesh,
  args: string[],
  timeoutMs = 20_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...mesh.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) =>
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}
