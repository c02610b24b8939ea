import type { Message } from '../raft/types.js';
import type { Prng } from './prng.js';

export interface NetworkFaults {
  /** Probability that a message is lost, and that it is delivered twice (the copy possibly much later). */
  drop: number;
  dup: number;
  /** Delivery delay in virtual ms, uniform in [delayMin, delayMax]: messages overtake each other. */
  delayMin: number;
  delayMax: number;
}

/**
 * The simulated network: per-message delay (so reordering), loss and duplication, partitions and
 * one-way link failures. Delivery is an event the cluster schedules (`deliver(delay, to, msg)`).
 * Without faults (`faults = false`) every message arrives within 5 ms.
 */
export class SimNetwork {
  faults = true;
  private readonly blocked = new Set<string>();

  constructor(
    private readonly rng: Prng,
    private readonly cfg: NetworkFaults,
    private readonly deliver: (delay: number, to: number, m: Message) => void,
  ) {}

  send(m: Message): void {
    const r = this.rng;
    const c = this.cfg;
    if (!this.faults) {
      this.deliver(r.int(c.delayMin, Math.min(c.delayMax, 5)), m.to, m);
      return;
    }
    if (this.blocked.has(`${m.from}>${m.to}`)) return;
    if (r.chance(c.drop)) return;
    this.deliver(r.int(c.delayMin, c.delayMax), m.to, m);
    if (r.chance(c.dup)) this.deliver(r.int(c.delayMin, c.delayMax * 3), m.to, m);
  }

  /** Splits the nodes into two random groups that cannot reach each other. */
  split(ids: readonly number[]): void {
    this.blocked.clear();
    const side = new Map(ids.map((i) => [i, this.rng.chance(0.5)]));
    for (const a of ids) for (const b of ids) if (side.get(a) !== side.get(b)) this.blocked.add(`${a}>${b}`);
  }

  /** Cuts `x` off from every other node, both ways. */
  isolate(x: number, ids: readonly number[]): void {
    this.blocked.clear();
    for (const o of ids) {
      if (o === x) continue;
      this.blocked.add(`${x}>${o}`);
      this.blocked.add(`${o}>${x}`);
    }
  }

  /** Messages from `a` to `b` are lost; the other direction still works. */
  cutOneWay(a: number, b: number): void {
    if (a !== b) this.blocked.add(`${a}>${b}`);
  }

  heal(): void {
    this.blocked.clear();
  }
}
