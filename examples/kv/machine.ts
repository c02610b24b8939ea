import { crc32 } from 'node:zlib';
import type { StateMachine } from '../../src/consensus/index.js';
import { KvCommand } from './contract.js';

export interface KvResult {
  ok: boolean;
  /** For a failed cas: the value found (undefined when the key was absent). */
  current: string | undefined;
}

/** The replicated map. Deterministic: every node applies the same commands in the same order. */
export class KvMachine implements StateMachine<KvResult> {
  readonly map = new Map<string, string>();

  apply(cmd: Uint8Array): KvResult {
    const c = KvCommand.decode(cmd);
    if (c.op === 0) {
      this.map.set(c.key, c.value);
      return { ok: true, current: undefined };
    }
    const cur = this.map.get(c.key);
    if (cur === c.expected) {
      this.map.set(c.key, c.value);
      return { ok: true, current: undefined };
    }
    return { ok: false, current: cur };
  }

  /** CRC-32 of the sorted entries: equal on replicas that applied the same commands. */
  digest(): number {
    return crc32(JSON.stringify([...this.map].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))));
  }

  snapshot(): Uint8Array {
    return Buffer.from(JSON.stringify([...this.map]));
  }

  restore(data: Uint8Array): void {
    this.map.clear();
    for (const [k, v] of JSON.parse(Buffer.from(data).toString()) as [string, string][]) this.map.set(k, v);
  }
}
