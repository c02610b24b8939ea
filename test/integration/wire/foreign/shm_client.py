#!/usr/bin/env python3
"""A shared-memory client written from docs/PROTOCOL.md § 3 alone, with no Cell code.

Upgrades a connection to the wire tests' echo cell (§ 3.2), then calls through the rings (§ 3.3,
§ 3.4): sequential calls past several wraps of the ring, a frame too large for a record (it takes
the socket and its reply is matched by request id), and the server's doorbell after it fell asleep.
Prints one JSON line per check, as client.py does.

Python has no atomic fence: a store followed by a load (publish, then look at `sleeping`) may be
reordered by the CPU, so besides the protocol's wake-up this client rings the server's doorbell
again when an answer is late. An extra ring is harmless (§ 3.3: a wake-up finds nothing).
"""
import array
import hashlib
import hmac
import json
import mmap
import os
import select
import socket
import struct
import sys
import time

from cellwire import GENOME, HELLO, REPLY, REQUEST, WELCOME, frame, handshake, report

UPGRADE_REQUEST, UPGRADE_CHALLENGE, UPGRADE_DECLINED = 0x10, 0x11, 0x12
HEADER = 256
FRAMES, WRAP = 0x46, 0xFFFF


def frames_in(data):
    out, off = [], 0
    while off + 12 <= len(data):
        (length,) = struct.unpack_from("<I", data, off)
        ftype, _, method, rid = struct.unpack_from("<BBHI", data, off + 4)
        out.append((ftype, method, rid, bytes(data[off + 12 : off + 4 + length])))
        off += 4 + length
    assert off == len(data), "a record must hold whole frames"
    return out


class Stream:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.buf = b""
        self.pending = []

    def poll_frames(self, wait):
        """Frames that arrived on the socket (waits up to `wait` seconds for the first bytes)."""
        r, _, _ = select.select([self.sock], [], [], wait)
        if r:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("the cell closed the connection")
            self.buf += chunk
        out, self.pending = self.pending, []
        while len(self.buf) >= 4:
            (length,) = struct.unpack_from("<I", self.buf, 0)
            if len(self.buf) < 4 + length:
                break
            out += frames_in(self.buf[: 4 + length])
            self.buf = self.buf[4 + length :]
        return out

    def read_frame(self):
        deadline = time.time() + 10
        while time.time() < deadline:
            got = self.poll_frames(0.5)
            if got:
                self.pending = got[1:]
                return got[0]
        raise TimeoutError("no frame")


class Ring:
    """One ring: its memfd mapped whole; positions are the monotonic byte counters of § 3.3."""

    def __init__(self, fd, capacity):
        self.mem = mmap.mmap(fd, HEADER + capacity)
        self.cap = capacity
        self.shift = capacity.bit_length() - 1
        self.pos = 0  # producer: next write position; consumer: next read position

    def u32(self, off):
        return struct.unpack_from("<I", self.mem, off)[0]

    def put(self, off, v):
        struct.pack_into("<I", self.mem, off, v & 0xFFFFFFFF)

    def at(self, pos):
        return HEADER + (pos & (self.cap - 1))

    def lap(self, pos):
        return (pos >> self.shift) & 0xFFFF

    # producer side
    def publish(self, payload, kind=FRAMES):
        need = 16 + ((len(payload) + 15) & ~15)
        pos = self.pos
        to_end = self.cap - (pos & (self.cap - 1))
        if need > to_end:  # a WRAP record fills the rest of the lap
            self.put(self.at(pos), to_end - 16)
            self.put(self.at(pos) + 4, 0)
            self.put(self.at(pos) + 12, 0)
            wrap_at = pos
            pos += to_end
        else:
            wrap_at = None
        head = self.u32(0)
        if (pos + need) - head > self.cap:
            return False
        off = self.at(pos)
        self.mem[off + 16 : off + 16 + len(payload)] = payload
        struct.pack_into("<IIII", self.mem, off, len(payload), 0, 0, 0)
        end = pos + need
        if end - head < self.cap:  # clear the next header's kind word unless the ring is exactly full
            self.put(self.at(end) + 8, 0)
        self.put(64, end)  # tail first, then the kind words, the run's first one last
        self.put(off + 8, kind | (self.lap(pos) << 16))
        if wrap_at is not None:
            self.put(self.at(wrap_at) + 8, WRAP | (self.lap(wrap_at) << 16))
        self.pos = end
        return True

    # consumer side
    def take(self):
        """The payloads of the records published at the read position, released as read."""
        out = []
        while True:
            off = self.at(self.pos)
            word = self.u32(off + 8)
            kind, lap = word & 0xFFFF, word >> 16
            if kind == 0 or lap != self.lap(self.pos):
                break
            length = self.u32(off)
            if kind == WRAP:
                assert length == self.cap - (self.pos & (self.cap - 1)) - 16, "bad WRAP length"
                self.pos += length + 16
                continue
            assert kind == FRAMES, f"unexpected kind {kind:#x}"
            out.append(bytes(self.mem[off + 16 : off + 16 + length]))
            self.pos += 16 + ((length + 15) & ~15)
        if out:
            self.put(0, self.pos)  # head: everything read is released
        return out


def peercred(sock):
    pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return pid, uid


def main(path):
    s = Stream(path)
    s.sock.sendall(frame(HELLO, 0, 0, handshake(0, "echo")) + frame(REQUEST, GENOME, 1))
    s.read_frame()
    genome = json.loads(s.read_frame()[3].decode())
    fp = int(genome["fingerprint"], 16)
    ids = {m["name"]: m["id"] for m in genome["methods"]}
    s.sock.close()

    s = Stream(path)
    s.sock.sendall(frame(HELLO, 0, 0, handshake(fp, "echo")))
    assert s.read_frame()[0] == WELCOME
    s.sock.sendall(frame(UPGRADE_REQUEST, 0, 0))  # no feature bits: no big slots
    ftype, _, _, payload = s.read_frame()
    report("challenge", ftype == UPGRADE_CHALLENGE and len(payload) == 52, {"type": ftype, "payload": payload[:80].hex() if ftype == UPGRADE_CHALLENGE else payload.decode(errors="replace")})
    challenge, ticket = payload[:32], payload[32:48]
    (capacity,) = struct.unpack_from("<I", payload, 48)

    pickup = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    pickup.settimeout(10)
    pickup.connect(path)
    proof = hmac.new(challenge, b"cell-shm-v1" + ticket, hashlib.sha256).digest()
    pickup.sendall(b"CELLSHM1" + ticket + proof)
    msg, fds, _, _ = socket.recv_fds(pickup, 64, 8)
    same_peer = peercred(pickup) == peercred(s.sock)
    pickup.close()
    ok = msg[:2] == b"OK" and len(msg) == 6 and struct.unpack_from("<I", msg, 2)[0] == capacity and len(fds) in (4, 5)
    report("pickup", ok and same_peer, {"answer": msg[:2].decode(errors="replace"), "fds": len(fds), "capacity": capacity})

    sealed = all(fcntl_seals(fd) & 0x2 for fd in fds[:2])  # F_SEAL_SHRINK
    big_enough = all(os.fstat(fd).st_size >= HEADER + capacity for fd in fds[:2])
    report("sealed rings", sealed and big_enough, {"sizes": [os.fstat(fd).st_size for fd in fds[:2]]})
    to_server, to_client = Ring(fds[0], capacity), Ring(fds[1], capacity)
    bell_server, bell_client = fds[2], fds[3]
    board = mmap.mmap(fds[4], 4096) if len(fds) == 5 else None
    for fd in fds[:2] + fds[4:]:
        os.close(fd)
    magic = to_server.u32(192), to_client.u32(192)
    report("ring headers", magic == (0x32525343, 0x32525343) and to_server.u32(196) == capacity, [hex(m) for m in magic])

    def ring_server():
        struct.pack_into("<I", to_server.mem, 132, to_server.u32(132) + 1)
        os.write(bell_server, struct.pack("<Q", 1))

    def send(payload):
        assert to_server.publish(payload)
        bit = to_server.u32(200)
        if board is not None and bit != 0xFFFFFFFF and to_server.u32(204) == 1:
            off = 64 + 4 * (bit >> 5)
            struct.pack_into("<I", board, off, struct.unpack_from("<I", board, off)[0] | (1 << (bit & 31)))
        if to_server.u32(128) == 1:
            to_server.put(128, 0)
            ring_server()

    arrived = {}

    def await_reply(rid):
        deadline, late = time.time() + 10, time.time() + 0.002
        while time.time() < deadline:
            for rec in to_client.take():
                for f in frames_in(rec):
                    arrived[f[2]] = (f, "ring")
            for f in s.poll_frames(0):
                arrived[f[2]] = (f, "socket")
            if rid in arrived:
                return arrived.pop(rid)
            if time.time() > late:
                ring_server()
                late = time.time() + 0.05
        raise TimeoutError(f"no reply to {rid}")

    # Sequential calls whose records wrap the ring several times (4 KiB + headers each).
    blob = bytes(range(256)) * 16
    want = sum(blob) & 0xFFFFFFFF
    wraps = (4 * capacity) // (len(blob) + 32) + 3
    bad, paths = [], set()
    for i in range(1, wraps + 1):
        send(frame(REQUEST, ids["sum"], i, blob))
        (ftype, method, rid, payload), via = await_reply(i)
        paths.add(via)
        if ftype != REPLY or struct.unpack("<I", payload)[0] != want:
            bad.append((i, ftype, payload[:40].hex()))
    report("calls through the rings, wrapping", not bad and paths == {"ring"} and to_server.pos > 3 * capacity,
           {"calls": wraps, "bad": bad[:3], "paths": sorted(paths), "bytes": to_server.pos})

    # Echo structs, pipelined in one run of records.
    rids = list(range(100_000, 100_064))
    for rid in rids:
        send(frame(REQUEST, ids["echo"], rid, struct.pack("<III", 8, rid, 0)))
    got = {}
    for rid in rids:
        (ftype, _, r, payload), _ = await_reply(rid)
        got[r] = struct.unpack_from("<I", payload, 4)[0] if ftype == REPLY else None
    report("pipelined echoes", all(got.get(r) == r for r in rids), {"wrong": [r for r in rids if got.get(r) != r][:5]})

    # A frame over the record limit takes the socket; its reply, too big for a record, comes back by request id.
    big = capacity // 4
    s.sock.sendall(frame(REQUEST, ids["blob"], 200_000, struct.pack("<I", big)))
    (ftype, _, rid, payload), via = await_reply(200_000)
    report("big reply over the socket", ftype == REPLY and via == "socket" and len(payload) == big and payload[:3] == b"\x07\x07\x07",
           {"via": via, "bytes": len(payload)})

    # The server falls asleep when idle; the protocol's wake-up (sleeping, bell, eventfd) must reach it.
    time.sleep(0.3)
    slept = to_server.u32(128) == 1
    send(frame(REQUEST, ids["echo"], 300_000, struct.pack("<III", 8, 7, 0)))
    t0 = time.time()
    (ftype, _, rid, payload), via = await_reply(300_000)
    report("wakes a sleeping server", slept and ftype == REPLY and via == "ring", {"slept": slept, "via": via, "ms": round((time.time() - t0) * 1000, 2)})
    s.sock.close()


def fcntl_seals(fd):
    import fcntl
    return fcntl.fcntl(fd, 1034)  # F_GET_SEALS


if __name__ == "__main__":
    main(sys.argv[1])
