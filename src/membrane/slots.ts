/**
 * Who may hold a connection (docs/PROTOCOL.md § 2.9): the admission rules of a Membrane as a pure
 * core, decided at HELLO, when the server knows whether the peer asks for a contract.
 *
 * - `maxConnections` ordinary slots, shared by every handshaken connection;
 * - of those, one peer uid holds at most `perUid` (a runaway caller locks out only its own uid);
 * - `reserved` further slots that only inspection connections (fingerprint 0: health, genome and
 *   metrics, what the Root's probes and `cell top` use) may take once the ordinary ones are full.
 *
 * An inspection connection takes an ordinary slot while one is free to it, so the reserved slots stay
 * free until they are needed. A peer whose uid is unknown (a TLS stream, no native addon) is held to
 * the shared limit only.
 */
export const SLOT_NONE = 0;
export const SLOT_ORDINARY = 1;
export const SLOT_RESERVED = 2;
export type Slot = typeof SLOT_NONE | typeof SLOT_ORDINARY | typeof SLOT_RESERVED;

export interface SlotLimits {
  maxConnections: number;
  perUid: number;
  reserved: number;
}

/** Why a connection was refused, for the E_OVERLOADED message. */
export type Refusal = 'full' | 'uid';

export class ConnectionSlots {
  readonly limits: SlotLimits;
  ordinary = 0;
  reservedInUse = 0;
  private readonly byUid = new Map<number, number>();

  constructor(limits: SlotLimits) {
    this.limits = limits;
  }

  /** Ordinary slots held by `uid`. */
  heldBy(uid: number): number {
    return this.byUid.get(uid) ?? 0;
  }

  /** Takes a slot for a peer (uid < 0: unknown); returns it, or why there is none. */
  admit(uid: number, inspection: boolean): Slot | Refusal {
    const { maxConnections, perUid, reserved } = this.limits;
    const full = this.ordinary >= maxConnections;
    const uidFull = uid >= 0 && this.heldBy(uid) >= perUid;
    if (!full && !uidFull) {
      this.ordinary++;
      if (uid >= 0) this.byUid.set(uid, this.heldBy(uid) + 1);
      return SLOT_ORDINARY;
    }
    if (inspection && this.reservedInUse < reserved) {
      this.reservedInUse++;
      return SLOT_RESERVED;
    }
    return full ? 'full' : 'uid';
  }

  /** Gives back what `admit` returned for that peer. */
  release(slot: Slot, uid: number): void {
    if (slot === SLOT_RESERVED) {
      this.reservedInUse--;
      return;
    }
    if (slot !== SLOT_ORDINARY) return;
    this.ordinary--;
    if (uid < 0) return;
    const n = this.heldBy(uid) - 1;
    if (n > 0) this.byUid.set(uid, n);
    else this.byUid.delete(uid);
  }
}
