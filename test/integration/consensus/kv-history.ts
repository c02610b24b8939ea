// A per-key linearizability check for the KV history (Wing–Gong search with Lowe's memoisation, and
// P-compositionality: each key is an independent register). Used by the nemesis test.

export type KvInput =
  | { op: 'get' }
  | { op: 'put'; value: string }
  | { op: 'cas'; expected: string | null; value: string };
/** get: the value read (null: absent); put: null; cas: whether it swapped; undefined: outcome unknown. */
export type KvOutput = { value: string | null } | { ok: boolean } | null | undefined;

export interface KvOp {
  clientId: number;
  key: string;
  input: KvInput;
  output: KvOutput;
  call: number;
  /** Infinity when the outcome is unknown (timeout, lost connection). */
  ret: number;
}

type State = string | null;

function step(s: State, input: KvInput, output: KvOutput): [boolean, State] {
  switch (input.op) {
    case 'get':
      return [s === (output as { value: string | null }).value, s];
    case 'put':
      return [true, input.value];
    case 'cas': {
      const matches = s === input.expected;
      if (output === undefined) return [true, matches ? input.value : s];
      const ok = (output as { ok: boolean }).ok;
      return ok ? [matches, input.value] : [!matches, s];
    }
  }
}

interface Node {
  op: number;
  isCall: boolean;
  match: Node | null;
  prev: Node | null;
  next: Node | null;
}

export type Verdict = { result: 'ok' } | { result: 'illegal'; key: string } | { result: 'unknown'; key: string };

function checkOne(ops: KvOp[], deadline: number): 'ok' | 'illegal' | 'unknown' {
  const events: { t: number; isCall: boolean; op: number }[] = [];
  ops.forEach((o, i) => {
    events.push({ t: o.call, isCall: true, op: i });
    events.push({ t: o.ret, isCall: false, op: i });
  });
  events.sort((a, b) => a.t - b.t || Number(b.isCall) - Number(a.isCall));
  const head: Node = { op: -1, isCall: false, match: null, prev: null, next: null };
  let prev = head;
  const calls = new Map<number, Node>();
  for (const e of events) {
    const n: Node = { op: e.op, isCall: e.isCall, match: null, prev, next: null };
    prev.next = n;
    prev = n;
    if (e.isCall) calls.set(e.op, n);
    else {
      const c = calls.get(e.op)!;
      c.match = n;
    }
  }
  const lift = (n: Node) => {
    n.prev!.next = n.next;
    if (n.next) n.next.prev = n.prev;
    const m = n.match!;
    m.prev!.next = m.next;
    if (m.next) m.next.prev = m.prev;
  };
  const unlift = (n: Node) => {
    const m = n.match!;
    m.prev!.next = m;
    if (m.next) m.next.prev = m;
    n.prev!.next = n;
    if (n.next) n.next.prev = n;
  };
  let state: State = null;
  let lin = 0n;
  const cache = new Set<string>();
  const stack: { n: Node; state: State }[] = [];
  let entry = head.next;
  let iter = 0;
  while (head.next !== null) {
    if ((++iter & 1023) === 0 && Date.now() > deadline) return 'unknown';
    if (entry === null) return 'illegal';
    if (entry.isCall) {
      const o = ops[entry.op];
      const [ok, next] = step(state, o.input, o.output);
      if (ok) {
        const l2 = lin | (1n << BigInt(entry.op));
        const key = `${l2.toString(36)}|${next}`;
        if (!cache.has(key)) {
          cache.add(key);
          stack.push({ n: entry, state });
          state = next;
          lin = l2;
          lift(entry);
          entry = head.next;
          continue;
        }
      }
      entry = entry.next;
    } else {
      const top = stack.pop();
      if (!top) return 'illegal';
      state = top.state;
      lin &= ~(1n << BigInt(top.n.op));
      unlift(top.n);
      entry = top.n.next;
    }
  }
  return 'ok';
}

export function checkKvHistory(ops: KvOp[], timeoutMs: number): Verdict {
  const deadline = Date.now() + timeoutMs;
  const byKey = new Map<string, KvOp[]>();
  for (const o of ops) {
    // A read whose outcome is unknown constrains nothing.
    if (o.input.op === 'get' && o.output === undefined) continue;
    const l = byKey.get(o.key);
    if (l) l.push(o);
    else byKey.set(o.key, [o]);
  }
  let unknown: string | null = null;
  for (const [key, l] of byKey) {
    const r = checkOne(l, deadline);
    if (r === 'illegal') return { result: 'illegal', key };
    if (r === 'unknown') unknown = key;
  }
  return unknown === null ? { result: 'ok' } : { result: 'unknown', key: unknown };
}
