import { setBigBytes } from '../protein/index.js';

/**
 * Big decoded `bytes` fields (a reply read out of a big slot, or off the socket) are copied into
 * memory the addon recycles (`takeCopy`): fresh memory would fault every page in on first touch,
 * which on a VM cost ~150× the copy itself. The pool's idle chunks go back to the system once no big
 * copy was made for a whole interval, so a process that stopped receiving big messages keeps none.
 * Big `bytes` written by encode go through the addon's memcpy (`copyInto`): V8 copies into a shared
 * buffer at another alignment byte by byte.
 */
const IDLE_TRIM_MS = 2000;

let trimTimer: NodeJS.Timeout | null = null;
let usedSinceSweep = false;

/** Routes protein's big copies and writes through the addon; an addon built without them leaves both as they are. */
export function installCopyPool(addon: {
  takeCopy?: (view: Uint8Array, offset: number, length: number) => ArrayBuffer;
  trimCopyPool?: () => number;
  copyInto?: (target: Uint8Array, offset: number, source: Uint8Array) => void;
}): void {
  const take = addon.takeCopy;
  const trim = addon.trimCopyPool;
  const write = addon.copyInto;
  if (typeof take !== 'function' || typeof trim !== 'function' || typeof write !== 'function') return;
  const copy = (u8: Uint8Array, p: number, len: number): Uint8Array => {
    usedSinceSweep = true;
    if (trimTimer === null) {
      trimTimer = setInterval(() => {
        if (usedSinceSweep) {
          usedSinceSweep = false;
          return;
        }
        trim();
        clearInterval(trimTimer as NodeJS.Timeout);
        trimTimer = null;
      }, IDLE_TRIM_MS);
      trimTimer.unref();
    }
    return new Uint8Array(take(u8, p, len));
  };
  setBigBytes({ copy, write });
}
