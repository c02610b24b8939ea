// What Cell adds per call on the NATS path, without NATS: one process, a stand-in connection that
// hands each published message to the matching subscription on the next turn of the event loop
// (copying the payload, as the real client copies into its output buffer). The same echo is called
//   floor        one inbox subscription, publish with a reply subject, replies matched by id in a Map;
//   cell-client  Cell's Synapse and NATS carrier against that bare echo (on the cell's subject);
//   cell-server  the floor's caller against a Membrane served by Cell's NATS service;
//   cell         both Cell ends.
// The differences are Cell's own CPU per call on each side; the real client library and the kernel
// (bench/nats/index.ts) come on top, the same for every row. Prints JSON lines, one per run.
//   node dist/bench/nats/glue.js <variant> <window> <calls>
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { Membrane } from '../../src/index.js';
import { NatsCarrier } from '../../src/nats/carrier.js';
import type { NatsLease } from '../../src/nats/connection.js';
import { parseInfo } from '../../src/nats/discovery.js';
import { NatsCellService } from '../../src/nats/service.js';
import { natsSettings } from '../../src/nats/settings.js';
import { Synapse } from '../../src/synapse/index.js';
import { PingService } from '../transport/contract.js';

type Callback = (err: Error | null, msg: Msg) => void;

class StandInMsg {
  headers = undefined;
  constructor(
    private readonly nc: StandIn,
    readonly subject: string,
    readonly reply: string,
    readonly data: Uint8Array,
  ) {}
  respond(data?: Uint8Array | string): boolean {
    this.nc.publish(this.reply, typeof data === 'string' ? Buffer.from(data) : data);
    return true;
  }
  json<T>(): T {
    return JSON.parse(Buffer.from(this.data).toString()) as T;
  }
  string(): string {
    return Buffer.from(this.data).toString();
  }
}

/** Exact subjects and `prefix.*` wildcards; delivery on the next turn, in publication order. */
class StandIn {
  readonly info = { max_payload: 1024 * 1024 };
  private readonly exact = new Map<string, Callback>();
  private readonly prefixes: Array<[string, Callback]> = [];
  private queue: Array<string | Uint8Array> = [];
  private scheduled = false;

  subscribe(subject: string, opts: { callback: Callback }) {
    if (subject.endsWith('*')) this.prefixes.push([subject.slice(0, -1), opts.callback]);
    else this.exact.set(subject, opts.callback);
    return { unsubscribe: () => {}, drain: async () => {}, closed: new Promise(() => {}) };
  }

  publish(subject: string, data: Uint8Array = new Uint8Array(0), opts?: { reply?: string }): void {
    this.queue.push(subject, opts?.reply ?? '', new Uint8Array(data));
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.pump());
    }
  }

  private pump(): void {
    this.scheduled = false;
    const q = this.queue;
    this.queue = [];
    for (let i = 0; i < q.length; i += 3) {
      const subject = q[i] as string;
      let cb = this.exact.get(subject);
      if (cb === undefined) for (const [p, c] of this.prefixes) if (subject.startsWith(p)) cb = c;
      cb?.(null, new StandInMsg(this, subject, q[i + 1] as string, q[i + 2] as Uint8Array) as unknown as Msg);
    }
  }

  async flush(): Promise<void> {}
  getServer(): string {
    return 'stand-in';
  }
  isClosed(): boolean {
    return false;
  }
  closed(): Promise<void> {
    return new Promise(() => {});
  }
  async *status(): AsyncGenerator<never> {}
}

const [variant, windowArg, callsArg] = process.argv.slice(2) as [string, string, string];
const window = Number(windowArg);
const total = Number(callsArg);
const nc = new StandIn();
const lease: NatsLease = {
  nc: nc as unknown as NatsConnection,
  settings: natsSettings('nats://stand-in:4222', {})!,
  closed: new Promise(() => {}),
  release: () => {},
};
const PAYLOAD = Buffer.alloc(32, 0x30);
const subject = `cell.bench.${PingService.fingerprint.toString(16).padStart(16, '0')}`;

function floorCaller(target: string): () => Promise<Uint8Array> {
  const inbox = '_INBOX.floor.';
  const waiting = new Map<number, (d: Uint8Array) => void>();
  let next = 0;
  nc.subscribe(`${inbox}*`, {
    callback: (_e, m) => {
      const id = +m.subject.substring(inbox.length);
      const r = waiting.get(id);
      waiting.delete(id);
      r?.(m.data);
    },
  });
  return () =>
    new Promise((resolve) => {
      const id = next++;
      waiting.set(id, resolve);
      nc.publish(target, PAYLOAD, { reply: inbox + id });
    });
}

async function cellCaller(info: Record<string, unknown>): Promise<() => Promise<Uint8Array>> {
  const instance = parseInfo(new StandInMsg(nc, '', '', Buffer.from(JSON.stringify(info))) as unknown as Msg);
  if (instance === null) throw new Error('unreadable info');
  const ex = await Synapse.attach(PingService, new NatsCarrier(lease, 'bench', [instance]));
  return () => ex.ping(PAYLOAD);
}

async function cellServer(): Promise<NatsCellService> {
  const m = new Membrane(PingService, { ping: (p) => p }, { handleSignals: false, tap: false });
  return NatsCellService.start(m, lease.settings, lease);
}

function bareEcho(): void {
  nc.subscribe(`${subject}.ping`, { callback: (_e, m) => void m.respond(m.data) });
}

const echoInfo = {
  type: 'io.nats.micro.v1.info_response',
  name: 'bench',
  id: 'echo',
  version: '0.0.0',
  metadata: {
    'cell.fingerprint': `0x${PingService.fingerprint.toString(16).padStart(16, '0')}`,
    'cell.subject': subject,
    'cell.service': 'bench',
    'cell.genome': JSON.stringify(PingService.genome),
  },
  endpoints: [{ name: 'ping', subject: `${subject}.ping` }],
};

let call: () => Promise<Uint8Array>;
if (variant === 'floor') {
  bareEcho();
  call = floorCaller(`${subject}.ping`);
} else if (variant === 'cell-client') {
  bareEcho();
  call = await cellCaller(echoInfo);
} else if (variant === 'cell-server') {
  await cellServer();
  call = floorCaller(`${subject}.ping`);
} else {
  const svc = await cellServer();
  call = await cellCaller(svc.info());
}

async function run(n: number): Promise<void> {
  let started = 0;
  await Promise.all(
    Array.from({ length: window }, async () => {
      while (started < n) {
        started++;
        const r = await call();
        if (r.length !== 32) throw new Error('corrupted echo');
      }
    }),
  );
}

await run(Math.min(20_000, total));
const c0 = process.cpuUsage();
const t0 = performance.now();
await run(total);
const ms = performance.now() - t0;
const c = process.cpuUsage(c0);
process.stdout.write(
  `${JSON.stringify({ variant, window, rate: (total / ms) * 1000, cpuUs: (c.user + c.system) / total })}\n`,
);
process.exit(0);
