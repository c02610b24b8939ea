import { createElement as h, type ReactElement, useEffect, useState } from 'react';
import { colorEnabled } from '../terminal/color.js';
import { Box, Text, useApp, useInput } from './ink.js';
import type { SortKey, TopModel } from './model.js';
import { detailLine, HELP_LINE, headerLine, rowLine, titleLine } from './render.js';

const SORT_BY_KEY: Readonly<Record<string, SortKey>> = {
  n: 'name',
  t: 'rate',
  p: 'p99',
  c: 'cpu',
  m: 'rss',
  x: 'restarts',
};

/** No colours under NO_COLOR (bold, inverse and dim stay: they are not colour). */
const tint = (color: string): string | undefined => (colorEnabled({ isTTY: true }) ? color : undefined);

function stateColor(state: string): string | undefined {
  if (!colorEnabled({ isTTY: true })) return undefined;
  if (state === 'running') return 'green';
  if (state === 'starting' || state === 'draining' || state === 'swapping') return 'yellow';
  if (state === 'stopped') return 'gray';
  return 'red';
}

/** The static part of the screen, rendered from the model (used by the live app and by tests). */
export function TopScreen({ model, now }: { model: TopModel; now: number }): ReactElement {
  const header = titleLine(model, now);
  return h(
    Box,
    { flexDirection: 'column' },
    h(Text, { bold: true }, header),
    h(Text, { bold: true, color: tint('cyan') }, ` ${headerLine(model.sortKey, model.descending)}`),
    ...model.rows.map((r) =>
      h(
        Text,
        { key: r.name, inverse: r.name === model.selected, color: stateColor(r.state), wrap: 'truncate-end' },
        `${r.name === model.selected ? '>' : ' '}${rowLine(r)}`,
      ),
    ),
    model.rows.length === 0
      ? h(Text, { dimColor: true }, ' (no cells; start one with `cell spawn <name>`)')
      : h(Text, { dimColor: true, wrap: 'truncate-end' }, ` ${detailLine(model.selectedRow)}`),
    model.logsOpen
      ? h(
          Box,
          { flexDirection: 'column', borderStyle: 'single', marginTop: 1 },
          h(Text, { bold: true }, `logs: ${model.selected ?? '-'}`),
          ...(model.logLines.length > 0 ? model.logLines : ['(no log lines yet)']).map((line, i) =>
            h(Text, { key: String(i), wrap: 'truncate-end' }, line),
          ),
        )
      : null,
    h(Text, { color: tint('yellow') }, model.message || ' '),
    h(Text, { dimColor: true }, HELP_LINE),
  );
}

/** The live app: refreshes the model on a timer and maps keys to model actions. */
export function TopApp({ model, intervalMs }: { model: TopModel; intervalMs: number }) {
  const { exit } = useApp();
  const [, setTick] = useState(0);

  useEffect(() => {
    const off = model.onChange(() => setTick((t) => t + 1));
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const loop = async () => {
      await model.refresh();
      if (!stopped) timer = setTimeout(loop, intervalMs);
    };
    void loop();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      off();
    };
  }, [model, intervalMs]);

  useInput((input, key) => {
    if (input === 'q' || key.escape) exit();
    else if (key.upArrow || input === 'k') model.moveSelection(-1);
    else if (key.downArrow || input === 'j') model.moveSelection(1);
    else if (key.return || input === 'l') model.toggleLogs();
    else if (input === 'w') void model.act('swap');
    else if (input === 'R') void model.act('restart');
    else if (SORT_BY_KEY[input] !== undefined) model.setSort(SORT_BY_KEY[input]);
  });

  return h(TopScreen, { model, now: Date.now() });
}
