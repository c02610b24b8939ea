import type { CellErrorCode } from '../errors/index.js';

/**
 * The subjects a cell uses on NATS (docs/NATS.md § 4). Everything of cell `<name>` lives under
 * `cell.<name>.>`, so one permission grants or denies serving a cell; the contract's fingerprint is a
 * token of its own, so instances of two contract versions never share a queue group and a caller only
 * ever reaches an instance that decodes its requests.
 *
 *   cell.<name>.<fp>.<method>    one endpoint per method, queue group `q` (micro services default)
 *   cell.<name>.<fp>.$genome     the built-in methods ($health, $metrics alike), queue group `q`
 *   cell.<name>.<fp>.$cancel     a caller gave up on a call (payload: its reply subject), every instance
 *   cell.<name>.<fp>.$calls      which of these calls do you hold? (liveness probe), every instance
 *   $SRV.PING|INFO|STATS[.<name>[.<id>]]   the micro services protocol
 *
 * Method names start with a letter or "_", so the "$" tokens cannot collide with an endpoint.
 */
export const SUBJECT_ROOT = 'cell';
export const QUEUE_GROUP = 'q';
export const SRV_PREFIX = '$SRV';

/** 16 lowercase hex digits: the fingerprint token of a subject. */
export function fingerprintToken(fp: bigint): string {
  return fp.toString(16).padStart(16, '0');
}

export function serviceSubject(cell: string, fp: bigint): string {
  return `${SUBJECT_ROOT}.${cell}.${fingerprintToken(fp)}`;
}

export const BUILTIN_TOKENS: ReadonlyMap<number, string> = new Map([
  [0xffff, '$genome'],
  [0xfffe, '$health'],
  [0xfffd, '$metrics'],
]);
export const CANCEL_TOKEN = '$cancel';
export const CALLS_TOKEN = '$calls';

/** Metadata keys a cell's service carries in PING/INFO/STATS (micro metadata is string → string). */
export const META = {
  fingerprint: 'cell.fingerprint',
  service: 'cell.service',
  genome: 'cell.genome',
  protocol: 'cell.protocol',
  host: 'cell.host',
  pid: 'cell.pid',
  subject: 'cell.subject',
} as const;

/** Micro services response types. */
export const SRV_TYPES = {
  PING: 'io.nats.micro.v1.ping_response',
  INFO: 'io.nats.micro.v1.info_response',
  STATS: 'io.nats.micro.v1.stats_response',
} as const;

/**
 * Headers of an error reply. The micro services pair (`Nats-Service-Error-Code`, a number, and
 * `Nats-Service-Error`, the description) lets generic NATS tooling see a failure; the `Cell-Error-*`
 * headers carry the CellError itself. Values are single-line (newlines become spaces); `details` is JSON.
 */
export const HEADER = {
  serviceErrorCode: 'Nats-Service-Error-Code',
  serviceError: 'Nats-Service-Error',
  code: 'Cell-Error-Code',
  message: 'Cell-Error-Message',
  fix: 'Cell-Error-Fix',
  details: 'Cell-Error-Details',
} as const;

/** The micro services status number for a Cell error code: 400 for the caller's mistakes, 500 else. */
export function serviceStatusOf(code: CellErrorCode): number {
  switch (code) {
    case 'E_DECODE':
    case 'E_UNKNOWN_METHOD':
    case 'E_SCHEMA_MISMATCH':
    case 'E_FRAME_TOO_LARGE':
    case 'E_INVALID_ARGUMENT':
      return 400;
    case 'E_OVERLOADED':
      return 503;
    default:
      return 500;
  }
}

/** A header value on one line (NATS headers end at CR LF). */
export function headerValue(s: string): string {
  return s.replace(/[\r\n]+/g, ' ');
}
