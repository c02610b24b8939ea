import type { RemoteInstance } from './pheromones/index.js';

export type BalanceStrategy = 'least-in-flight' | 'round-robin';

export interface BalancerOptions {
  strategy?: BalanceStrategy;
  /** How long an instance that failed is skipped; doubles on repeated failure up to maxCooldownMs. */
  cooldownMs?: number;
  maxCooldownMs?: number;
  now?: () => number;
}

interface Health {
  failures: number;
  until: number;
}

/**
 * Chooses among the live instances of one cell. Least-in-flight counts the calls this client has
 * outstanding on each instance (exact and current) and breaks ties by the load the instance last
 * announced, then by rotation, so equal instances share work evenly. An instance that failed is
 * skipped for a cool-down; if every instance is cooling down, the one that recovers first is tried.
 */
export class Balancer {
  private readonly strategy: BalanceStrategy;
  private readonly cooldownMs: number;
  private readonly maxCooldownMs: number;
  private readonly now: () => number;
  private readonly health = new Map<string, Health>();
  private rotation = 0;

  constructor(options: BalancerOptions = {}) {
    this.strategy = options.strategy ?? 'least-in-flight';
    this.cooldownMs = options.cooldownMs ?? 500;
    this.maxCooldownMs = options.maxCooldownMs ?? 5_000;
    this.now = options.now ?? Date.now;
  }

  pick(
    instances: readonly RemoteInstance[],
    inFlight: (key: string) => number,
    exclude?: ReadonlySet<string>,
  ): RemoteInstance | undefined {
    const now = this.now();
    const n = instances.length;
    if (n === 0) return undefined;
    this.rotation = (this.rotation + 1) % 0x7fffffff;
    let best: RemoteInstance | undefined;
    let bestScore = Number.POSITIVE_INFINITY;
    let fallback: RemoteInstance | undefined;
    let fallbackUntil = Number.POSITIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const inst = instances[(i + this.rotation) % n] as RemoteInstance;
      if (exclude?.has(inst.key)) continue;
      const h = this.health.get(inst.key);
      if (h !== undefined && h.until > now) {
        if (h.until < fallbackUntil) {
          fallback = inst;
          fallbackUntil = h.until;
        }
        continue;
      }
      if (this.strategy === 'round-robin') return inst;
      // In-flight dominates; the announced load only separates instances this client treats alike.
      const score = inFlight(inst.key) * 1_000_000 + Math.min(inst.load, 999_999);
      if (score < bestScore) {
        best = inst;
        bestScore = score;
      }
    }
    return best ?? fallback;
  }

  markFailed(key: string): void {
    const h = this.health.get(key);
    const failures = (h?.failures ?? 0) + 1;
    const wait = Math.min(this.cooldownMs * 2 ** (failures - 1), this.maxCooldownMs);
    this.health.set(key, { failures, until: this.now() + wait });
  }

  markHealthy(key: string): void {
    this.health.delete(key);
  }

  isCoolingDown(key: string): boolean {
    const h = this.health.get(key);
    return h !== undefined && h.until > this.now();
  }
}
