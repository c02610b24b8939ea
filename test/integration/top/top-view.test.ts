import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TmuxSession } from './tmux.js';

const fixture = fileURLToPath(new URL('./fixtures/metered-top.js', import.meta.url));

/** The selected row is the one starting with '>'. */
function selectedRow(screen: string): string {
  return screen.split('\n').find((l) => l.startsWith('>')) ?? '';
}

function order(screen: string): string[] {
  return screen
    .split('\n')
    .filter((l) => /^[ >](alpha|bravo|charlie) /.test(l))
    .map((l) => l.slice(1).split(' ')[0]);
}

test('cell top in a real terminal: rows, sparklines, sort keys, selection, logs, actions, quit', {
  skip: !TmuxSession.available() && 'tmux is not installed',
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cell-top-view-'));
  const tmux = new TmuxSession('topview', join(dir, 'tmux.sock'));
  t.after(() => {
    tmux.kill();
    rmSync(dir, { recursive: true, force: true });
  });
  tmux.start(`${process.execPath} ${fixture}`, { TERM: 'xterm-256color' });

  let screen = await tmux.waitFor(
    (s) => /cell top — 3 cells/.test(s) && /[▁▂▃▄▅▆▇█]{3}/.test(s),
    'rows with sparklines',
  );
  assert.deepEqual(order(screen), ['alpha', 'bravo', 'charlie']);
  assert.match(screen, /CELL↑ +STATE +PID +UPTIME +RST +TRANSPORT +REQ\/S/);
  assert.match(screen, /bravo +running +1002 .* 3 shm +\d/);
  assert.match(selectedRow(screen), /^>alpha/);

  tmux.sendKeys('c');
  screen = await tmux.waitFor((s) => /CPU↓/.test(s), 'the cpu sort marker');
  assert.deepEqual(order(screen), ['bravo', 'alpha', 'charlie']);
  tmux.sendKeys('c');
  screen = await tmux.waitFor((s) => /CPU↑/.test(s), 'ascending cpu');
  assert.deepEqual(order(screen), ['charlie', 'alpha', 'bravo']);

  tmux.sendKeys('j');
  screen = await tmux.waitFor((s) => /^>bravo/m.test(s), 'the selection to move down past alpha');
  tmux.sendKeys('Up');
  await tmux.waitFor((s) => /^>alpha/m.test(s), 'the selection to move up');
  tmux.sendKeys('Down');
  tmux.sendKeys('Enter');
  screen = await tmux.waitFor((s) => /logs: bravo/.test(s) && /bravo started/.test(s), 'the log pane');

  tmux.sendKeys('w');
  screen = await tmux.waitFor((s) => /swapped bravo: generation 2 serving/.test(s), 'the swap outcome');
  await tmux.waitFor((s) => /bravo swapped by the dashboard/.test(s), 'the new log line');
  tmux.sendKeys('R');
  await tmux.waitFor((s) => /restarted bravo/.test(s) && /bravo +running +1002 .* 4 shm/.test(s), 'the restart count');

  tmux.sendKeys('q');
  await tmux.waitFor((s) => /top exited/.test(s), 'the dashboard to quit');
});
