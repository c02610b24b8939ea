// `cell startup`: a systemd user unit that starts the Root at login, so cells are grown on demand
// without a `cell up` first. The unit runs the same Root `cell up` would start, with the environment
// this command runs in (CELL_HOME, CELL_SOCKET_DIR, CELL_UMBILICAL, PATH), and is checked with
// `systemd-analyze verify` where that exists.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { intOption, parseCommand } from '../terminal/args.js';
import { ownPackage } from './scaffold.js';

export const UNIT_NAME = 'cell-root.service';

export const STARTUP_USAGE = `usage: cell startup [--no-sandbox] [--metrics-port <port>] [--print] [--json]

Writes a systemd user unit, $XDG_CONFIG_HOME/systemd/user/${UNIT_NAME} (default ~/.config/…), that
runs the Root (as \`cell up\` would start it) with this shell's CELL_HOME, CELL_SOCKET_DIR,
CELL_UMBILICAL and PATH, restarts it if it fails, and stops it (and its cells, gracefully) with the
session. Checks the unit with \`systemd-analyze verify\` when that is installed. Then:
  systemctl --user daemon-reload && systemctl --user enable --now ${UNIT_NAME}
  loginctl enable-linger "$USER"     # to start it at boot rather than at login
--print prints the unit instead of writing it; --no-sandbox and --metrics-port are passed to the Root.`;

const SPEC = {
  usage: STARTUP_USAGE,
  options: {
    'no-sandbox': { type: 'boolean' },
    'metrics-port': { type: 'string' },
    print: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  positionals: [0, 0],
} as const;

/** One ExecStart word or Environment assignment, quoted for systemd (specifiers and variables escaped). */
export function systemdQuote(word: string): string {
  const escaped = word.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /[\s"'\\;$%]/.test(word) || word === '' ? `"${escaped}"` : escaped;
}

export interface UnitOptions {
  node: string;
  rootMain: string;
  noSandbox: boolean;
  metricsPort: number | undefined;
  env: Record<string, string>;
  docs: string | undefined;
  version: string;
}

export function unitText(o: UnitOptions): string {
  const exec = [
    o.node,
    o.rootMain,
    ...(o.noSandbox ? ['--no-sandbox'] : []),
    ...(o.metricsPort === undefined ? [] : ['--metrics-port', String(o.metricsPort)]),
  ];
  const lines = [
    `# Written by \`cell startup\` (cell-runtime ${o.version}). Enable it with:`,
    `#   systemctl --user daemon-reload && systemctl --user enable --now ${UNIT_NAME}`,
    '[Unit]',
    'Description=Cell Mycelium Root: builds, sandboxes and supervises your cells',
    ...(o.docs === undefined ? [] : [`Documentation=file://${o.docs}`]),
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${exec.map(systemdQuote).join(' ')}`,
    ...Object.entries(o.env).map(([k, v]) => `Environment=${systemdQuote(`${k}=${v}`)}`),
    'Restart=on-failure',
    'RestartSec=2',
    // SIGTERM goes to the Root alone: it drains and stops its cells itself, SIGKILL after the timeout.
    'KillMode=mixed',
    'TimeoutStopSec=30',
    // The Capsid puts each cell in a cgroup of its own under the Root's.
    'Delegate=yes',
    '',
    '[Install]',
    'WantedBy=default.target',
    '',
  ];
  return lines.join('\n');
}

export function unitPath(): string {
  const config = process.env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(config, 'systemd', 'user', UNIT_NAME);
}

function findOnPath(bin: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir !== '' && existsSync(join(dir, bin))) return join(dir, bin);
  }
  return undefined;
}

/**
 * `systemd-analyze verify` on the unit: user mode first, system mode when there is no user manager
 * to ask (containers, CI). `checked: false` with the reason when the tool is missing.
 */
export function verifyUnit(path: string): { checked: boolean; ok: boolean; output: string } {
  const tool = findOnPath('systemd-analyze');
  if (tool === undefined) return { checked: false, ok: true, output: 'systemd-analyze is not installed' };
  let r = spawnSync(tool, ['--user', 'verify', path], { encoding: 'utf8' });
  if (r.status !== 0 && /initialize manager|RuntimeDirectory|XDG_RUNTIME_DIR/.test(r.stderr)) {
    r = spawnSync(tool, ['verify', path], { encoding: 'utf8' });
  }
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  return { checked: true, ok: r.status === 0 && !/is not executable|Unknown key|Failed to/i.test(output), output };
}

export async function runStartupCommand(args: string[], rootMain: string): Promise<number> {
  const parsed = parseCommand(args, SPEC);
  if (parsed.help) {
    process.stdout.write(`${STARTUP_USAGE}\n`);
    return 0;
  }
  const { values } = parsed;
  const pkg = ownPackage();
  const env: Record<string, string> = {};
  for (const k of ['CELL_HOME', 'CELL_SOCKET_DIR', 'CELL_UMBILICAL', 'PATH'] as const) {
    const v = process.env[k];
    if (v !== undefined && v !== '') env[k] = v;
  }
  const docs = join(pkg.root, 'docs', 'CLI.md');
  let version = 'unknown';
  try {
    version = (JSON.parse(readFileSync(join(pkg.root, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    // keep 'unknown'
  }
  const text = unitText({
    node: process.execPath,
    rootMain,
    noSandbox: values['no-sandbox'] === true,
    metricsPort: intOption(values['metrics-port'], '--metrics-port', STARTUP_USAGE, { min: 0, max: 65535 }),
    env,
    docs: existsSync(docs) ? docs : undefined,
    version,
  });
  if (values.print === true) {
    process.stdout.write(text);
    return 0;
  }
  const path = unitPath();
  const existed = existsSync(path);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, text);
  const check = verifyUnit(path);
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify({ path, updated: existed, verified: check })}\n`);
    return check.ok ? 0 : 1;
  }
  const lines = [`${existed ? 'updated' : 'wrote'} ${path}`];
  if (!check.checked) lines.push(`not verified: ${check.output}`);
  else if (check.ok) lines.push('verified with systemd-analyze');
  else lines.push(`systemd-analyze verify reports:\n${check.output}`);
  lines.push(
    'enable it (starts the Root now and at every login):',
    `  systemctl --user daemon-reload && systemctl --user enable --now ${UNIT_NAME}`,
    'to start it at boot without a login: loginctl enable-linger "$USER"',
  );
  process.stdout.write(`${lines.join('\n')}\n`);
  return check.ok ? 0 : 1;
}
