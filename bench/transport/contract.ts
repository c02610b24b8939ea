// The benchmark's contract: one method echoing 16 opaque bytes.
import { defineService, rawBytes } from '../../test/integration/wire/fixtures/codec.js';

export const PingService = defineService('bench', { ping: { input: rawBytes, output: rawBytes } });
