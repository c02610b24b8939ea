/**
 * A linearizability checker: the Wing–Gong search with Lowe's refinements as Porcupine implements it.
 * The history is a doubly linked list of call and return events in time order; the search linearizes
 * a call whose operation the model accepts next, lifting it (and its return) out of the list, and
 * backtracks when it meets a return whose call is not yet linearized. (linearized-set, model state)
 * pairs already explored are memoised, which prunes the search from factorial to roughly the number
 * of distinct states. A model may split a history into independent parts (keys of a KV store).
 */

import { CellError } from '../../errors/index.js';

export interface Operation<I, O> {
  clientId: number;
  input: I;
  /** Ignored by the models when `ret` is Infinity: the outcome is unknown. */
  output: O;
  /** Invocation time. */
  call: number;
  /** Response time; Infinity when the outcome is unknown (the operation may or may not have taken effect). */
  ret: number;
}

export interface Model<S, I, O> {
  init(): S;
  /** Apply `input` to `state`; ok is false when `output` is impossible there. For an operation with an
   * unknown outcome `output` is undefined and any result must be accepted. */
  step(state: S, input: I, output: O | undefined): { ok: boolean; state: S };
  /** A string identifying the state (default JSON.stringify); equal states must hash equally. */
  hash?(state: S): string;
  /** Split the history into parts that can be checked independently. */
  partition?(ops: Operation<I, O>[]): Operation<I, O>[][];
}

export type CheckResult = 'ok' | 'illegal' | 'unknown';

export interface CheckOutcome<I, O> {
  result: CheckResult;
  /** For 'illegal': the part of the history (after partitioning) that has no linearization. */
  illegal?: Operation<I, O>[];
  /** For 'illegal': the longest sequence of operations the search managed to linearize in that part. */
  longestPrefix?: Operation<I, O>[];
  /** Search steps taken (all parts). */
  steps: number;
}

export interface CheckOptions {
  /** Give up with 'unknown' after this long (default: no limit). */
  timeoutMs?: number;
}

interface Node {
  /** Operation index; -1 for the list head. */
  id: number;
  isCall: boolean;
  /** For a call: its return node. */
  match: Node | null;
  prev: Node | null;
  next: Node | null;
}

/**
 * The set of linearized operations, with a 64-bit Zobrist hash of it kept up to date in O(1) (two
 * 32-bit halves: the XOR of fixed random words of the members). The exact key costs O(n) per step,
 * which made long histories quadratic; the hash is what the search memoises on, and a part the
 * hashed search finds illegal is searched again with exact keys, since a hash collision can only prune
 * a branch that was not explored (an 'ok' needs no confirmation: it comes with a witness).
 */
class Bitset {
  readonly words: Uint32Array;
  h1 = 0;
  h2 = 0;
  constructor(n: number) {
    this.words = new Uint32Array((n + 31) >>> 5);
  }
  set(i: number): void {
    this.words[i >>> 5] |= 1 << (i & 31);
    this.h1 ^= fmix32(2 * i + 1);
    this.h2 ^= fmix32((2 * i + 2) ^ 0x5bd1e995);
  }
  clear(i: number): void {
    this.words[i >>> 5] &= ~(1 << (i & 31));
    this.h1 ^= fmix32(2 * i + 1);
    this.h2 ^= fmix32((2 * i + 2) ^ 0x5bd1e995);
  }
  key(exact: boolean): string {
    if (!exact) return `${this.h1},${this.h2}`;
    let s = '';
    for (let i = 0; i < this.words.length; i++) s += `${this.words[i].toString(36)},`;
    return s;
  }
}

/** MurmurHash3's 32-bit finaliser: a bijection that scatters consecutive integers. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

class Timeout extends Error {}

function buildList<I, O>(ops: Operation<I, O>[]): Node {
  const events: { time: number; isCall: boolean; id: number; node: Node }[] = [];
  ops.forEach((op, id) => {
    const ret: Node = { id, isCall: false, match: null, prev: null, next: null };
    const call: Node = { id, isCall: true, match: ret, prev: null, next: null };
    events.push({ time: op.call, isCall: true, id, node: call });
    events.push({ time: op.ret, isCall: false, id, node: ret });
  });
  // Calls before returns at equal times: touching operations count as concurrent (the permissive side).
  events.sort((a, b) => a.time - b.time || Number(b.isCall) - Number(a.isCall) || a.id - b.id);
  const head: Node = { id: -1, isCall: false, match: null, prev: null, next: null };
  let tail = head;
  for (const e of events) {
    e.node.prev = tail;
    tail.next = e.node;
    tail = e.node;
  }
  return head;
}

function lift(call: Node): void {
  call.prev!.next = call.next;
  if (call.next) call.next.prev = call.prev;
  const ret = call.match!;
  ret.prev!.next = ret.next;
  if (ret.next) ret.next.prev = ret.prev;
}

function unlift(call: Node): void {
  const ret = call.match!;
  ret.prev!.next = ret;
  if (ret.next) ret.next.prev = ret;
  call.prev!.next = call;
  if (call.next) call.next.prev = call;
}

function checkPart<S, I, O>(
  model: Model<S, I, O>,
  ops: Operation<I, O>[],
  deadline: number,
  counter: { steps: number },
  exact: boolean,
): { ok: boolean; longest: number[] } {
  const hash = model.hash ?? ((s: S) => JSON.stringify(s));
  const head = buildList(ops);
  const linearized = new Bitset(ops.length);
  const seen = new Set<string>();
  const stack: { node: Node; state: S }[] = [];
  let state = model.init();
  let node = head.next;
  // The longest linearized prefix, for reports: `longest` agrees with the stack below `kept`, so a new
  // maximum copies only what changed since (copying it all each time was quadratic).
  const longest: number[] = [];
  let kept = 0;
  while (head.next !== null) {
    if ((++counter.steps & 1023) === 0 && Date.now() > deadline) throw new Timeout();
    // Unreachable: every call's return follows it in the list, so the walk meets a return first.
    if (node === null) throw new CellError('E_INTERNAL', 'linearizability: search ran off the history');
    if (node.isCall) {
      const op = ops[node.id];
      const r = model.step(state, op.input, op.ret === Number.POSITIVE_INFINITY ? undefined : op.output);
      if (r.ok) {
        linearized.set(node.id);
        const key = `${linearized.key(exact)}|${hash(r.state)}`;
        if (!seen.has(key)) {
          seen.add(key);
          stack.push({ node, state });
          state = r.state;
          lift(node);
          if (stack.length > longest.length) {
            for (let k = kept; k < stack.length; k++) longest[k] = stack[k].node.id;
            kept = stack.length;
          }
          node = head.next;
          continue;
        }
        linearized.clear(node.id);
      }
      node = node.next;
    } else {
      // A return whose call is not linearized: nothing before it can go next; backtrack.
      const top = stack.pop();
      if (!top) return { ok: false, longest };
      if (stack.length < kept) kept = stack.length;
      state = top.state;
      linearized.clear(top.node.id);
      unlift(top.node);
      node = top.node.next;
    }
  }
  return { ok: true, longest };
}

export function checkOperations<S, I, O>(
  model: Model<S, I, O>,
  ops: Operation<I, O>[],
  opts: CheckOptions = {},
): CheckOutcome<I, O> {
  const deadline = opts.timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + opts.timeoutMs;
  for (const op of ops) {
    if (!(op.ret >= op.call)) {
      throw new CellError(
        'E_INVALID_ARGUMENT',
        `linearizability: operation of client ${op.clientId} returns (${op.ret}) before its call (${op.call})`,
      );
    }
  }
  const parts = model.partition ? model.partition(ops) : [ops];
  const counter = { steps: 0 };
  let timedOut = false;
  for (const part of parts) {
    try {
      let r = checkPart(model, part, deadline, counter, false);
      // Confirm with exact keys: a collision of the 64-bit hashes could have pruned the one good branch.
      if (!r.ok) r = checkPart(model, part, deadline, counter, true);
      if (!r.ok) {
        return { result: 'illegal', illegal: part, longestPrefix: r.longest.map((i) => part[i]), steps: counter.steps };
      }
    } catch (e) {
      if (!(e instanceof Timeout)) throw e;
      timedOut = true;
      // Keep going: another part may still prove the history illegal.
    }
  }
  return { result: timedOut ? 'unknown' : 'ok', steps: counter.steps };
}

// ---- a key-value model: get / put / cas on string keys -----------------------------------------

export type KvInput =
  | { op: 'get'; key: string }
  | { op: 'put'; key: string; value: string }
  | { op: 'cas'; key: string; from: string | null; to: string };

/** get: the value read (null when absent); put: nothing; cas: whether it swapped. */
export type KvOutput = { value: string | null } | { ok: boolean } | Record<string, never>;

export type KvOperation = Operation<KvInput, KvOutput | undefined>;

/** One register per key (the partitioning makes the state a single value). */
export const kvModel: Model<string | null, KvInput, KvOutput | undefined> = {
  init: () => null,
  step(state, input, output) {
    switch (input.op) {
      case 'get':
        if (output === undefined) return { ok: true, state };
        return { ok: (output as { value: string | null }).value === state, state };
      case 'put':
        return { ok: true, state: input.value };
      case 'cas': {
        const swaps = state === input.from;
        const next = swaps ? input.to : state;
        if (output === undefined) return { ok: true, state: next };
        return { ok: (output as { ok: boolean }).ok === swaps, state: next };
      }
    }
  },
  hash: (s) => (s === null ? '\u0000' : `=${s}`),
  partition(ops) {
    const byKey = new Map<string, KvOperation[]>();
    for (const op of ops) {
      const list = byKey.get(op.input.key);
      if (list) list.push(op);
      else byKey.set(op.input.key, [op]);
    }
    return [...byKey.values()];
  },
};
