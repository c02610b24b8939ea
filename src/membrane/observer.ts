// The one seam through which a Membrane's calls are watched. Its metrics are the default observer,
// always there; an extension (the tap) installs one more only while it is wanted.
import type { ServiceMetrics } from '../metrics/index.js';

/**
 * Sees each call a Membrane serves: `begin` when it arrives, `end` when its reply (or error) has been
 * handed to the carrier. A cell counts every call into its metrics (`CallMetrics`); one more observer
 * sits in `Membrane.observer` while someone watches (the tap), else null, so a cell nobody watches
 * pays one null check per call.
 */
export interface CallObserver {
  /** By method id, 1 while the observer wants calls of that method: the others cost it nothing. */
  readonly wanted: Uint8Array;
  /**
   * A call arrived with its request in `bytes[offset, offset + length)`, valid only now. What it
   * returns comes back to `end` as `state` (the tap keeps the decoded request).
   */
  begin(methodId: number, bytes: Uint8Array, offset: number, length: number): unknown;
  /**
   * The call finished after `latencyNs`. `bytesOut` is -1 when it failed: `error` is then what the
   * handler threw, or undefined when its reply could not be encoded.
   */
  end(
    methodId: number,
    requestId: number,
    state: unknown,
    reply: unknown,
    error: unknown,
    latencyNs: number,
    bytesIn: number,
    bytesOut: number,
  ): void;
}

/**
 * The default observer: per-method counters and latency histograms (src/metrics). Besides the
 * observer's per-call `end`, the session may time a carrier chunk's synchronous calls with one clock
 * read: `endUntimed` per call, then `recordBatch` for the lot.
 */
export class CallMetrics implements CallObserver {
  readonly metrics: ServiceMetrics;
  readonly wanted: Uint8Array;

  constructor(metrics: ServiceMetrics) {
    this.metrics = metrics;
    this.wanted = new Uint8Array(metrics.byId.length).fill(1);
  }

  begin(methodId: number, _bytes: Uint8Array, _offset: number, length: number): unknown {
    this.metrics.begin(methodId, length);
    return undefined;
  }

  end(
    methodId: number,
    _requestId: number,
    _state: unknown,
    _reply: unknown,
    _error: unknown,
    latencyNs: number,
    _bytesIn: number,
    bytesOut: number,
  ): void {
    this.metrics.end(methodId, latencyNs, Math.max(0, bytesOut), bytesOut < 0);
  }

  /** Like `end`, with the latency left to `recordBatch`. */
  endUntimed(methodId: number, bytesOut: number): void {
    this.metrics.endCounts(methodId, Math.max(0, bytesOut), bytesOut < 0);
  }

  /** The first `n` of `methods` finished `latencyNs` after their chunk arrived. */
  recordBatch(methods: Int32Array, n: number, latencyNs: number): void {
    const byId = this.metrics.byId;
    for (let i = 0; i < n; i++) byId[methods[i] as number].latency.record(latencyNs);
  }
}
