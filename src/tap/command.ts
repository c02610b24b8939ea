// `cell tap <name> [filter…] [--json] [--count n]`: prints the requests a cell serves as they finish.

import { validateCellName } from '../paths/index.js';
import { intOption, parseCommand } from '../terminal/args.js';
import { formatTapRecord, openTap } from './client.js';

export const TAP_USAGE = `usage: cell tap <name> [filter expression] [--json] [--count <n>]

Streams every request the cell finishes: time, request id, method, latency, the decoded request and
reply (or the error). The filter keeps matching requests only, e.g.
  cell tap market 'method == place_order && amount > 100'
Grammar: comparisons (== != < <= > >= ~) of fields and literals joined by && || ! and parentheses;
fields are method, ok, error, latency_us, latency_ms, bytes_in, bytes_out, id, req.<path>, res.<path>,
or a bare request/reply field name. Costs the cell nothing while no tap is attached.`;

const SPEC = {
  usage: TAP_USAGE,
  options: { json: { type: 'boolean' }, count: { type: 'string' } },
  positionals: [1, Number.POSITIVE_INFINITY],
  expects: 'a cell name (then an optional filter expression)',
} as const;

export async function runTapCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(args, SPEC);
  if (parsed.help) {
    process.stdout.write(`${TAP_USAGE}\n`);
    return 0;
  }
  const json = parsed.values.json === true;
  const count = intOption(parsed.values.count, '--count', TAP_USAGE, { min: 1 }) ?? Number.POSITIVE_INFINITY;
  const rest = parsed.positionals;
  const name = validateCellName(rest[0] as string);
  const filter = rest.slice(1).join(' ');
  const session = await openTap(name, filter);
  const stop = () => session.close();
  process.once('SIGINT', stop);
  process.stderr.write(`tapping ${name} (pid ${session.hello.pid})${filter ? ` where ${filter}` : ''}; ctrl-c stops\n`);
  let n = 0;
  try {
    for await (const record of session.records()) {
      process.stdout.write(`${json ? JSON.stringify(record) : formatTapRecord(record)}\n`);
      if (!('dropped' in record) && ++n >= count) break;
    }
  } finally {
    session.close();
    process.off('SIGINT', stop);
  }
  return 0;
}
