// Echo server for the shared-memory benchmark, run as its own process: a link server (socket + shm
// upgrade) on argv[2] and a raw framed echo (the floor: no framework at all) on argv[3].
import { createServer } from 'node:net';
import { ShmServer } from '../../test/support/shm-link.js';

const [linkPath, rawPath] = process.argv.slice(2) as [string, string];
const server = new ShmServer((_method, payload) => {
  const reply = Buffer.allocUnsafe(payload.length);
  reply.set(payload);
  return reply;
});
await server.listen(linkPath);

// Raw floor: the same 13-byte framing, echoed straight back, no dispatch.
const raw = createServer((socket) => {
  socket.setNoDelay(true);
  let buf: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    let off = 0;
    while (buf.length - off >= 4) {
      const len = buf.readUInt32LE(off);
      if (buf.length - off < 4 + len) break;
      off += 4 + len;
    }
    if (off > 0) socket.write(buf.subarray(0, off));
    buf = off === buf.length ? Buffer.alloc(0) : buf.subarray(off);
  });
});
raw.listen(rawPath, () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => process.exit(0));
