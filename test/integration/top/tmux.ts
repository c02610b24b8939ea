import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

/** A detached tmux session running one command in a fixed-size terminal, for driving TUIs in tests. */
export class TmuxSession {
  readonly name: string;
  private readonly socket: string;

  constructor(name: string, socketPath: string) {
    this.name = name;
    this.socket = socketPath;
  }

  static available(): boolean {
    return spawnSync('tmux', ['-V']).status === 0;
  }

  private tmux(...args: string[]): string {
    const r = spawnSync('tmux', ['-S', this.socket, ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tmux ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  }

  start(command: string, env: Record<string, string>, width = 160, height = 40): void {
    const exports = Object.entries(env)
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(' ');
    this.tmux(
      'new-session',
      '-d',
      '-s',
      this.name,
      '-x',
      String(width),
      '-y',
      String(height),
      `env ${exports} ${command}; sleep 30`,
    );
  }

  capture(): string {
    return this.tmux('capture-pane', '-p', '-t', this.name);
  }

  sendKeys(...keys: string[]): void {
    this.tmux('send-keys', '-t', this.name, ...keys);
  }

  /** Polls the screen until `test` accepts it (bounded); returns that screen. */
  async waitFor(test: (screen: string) => boolean, what: string, timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let screen = '';
    while (Date.now() < deadline) {
      screen = this.capture();
      if (test(screen)) return screen;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`timed out waiting for ${what}; the screen was:\n${screen}`);
  }

  kill(): void {
    spawnSync('tmux', ['-S', this.socket, 'kill-server']);
  }
}
