#!/usr/bin/env python3
"""A Cell client written from docs/PROTOCOL.md alone (§ 1 codec, § 2 framing), with no Cell code.

Talks to the wire tests' echo cell (test/integration/wire/fixtures/contract.ts) and prints one JSON
line per check: {"check": name, "ok": bool, "detail": ...}. The Node test runs it and asserts each.
"""
import json
import socket
import struct
import sys

from cellwire import ERROR, GENOME, HEALTH, HELLO, REPLY, REQUEST, WELCOME, frame, handshake, report


class Conn:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def read_frame(self):
        while True:
            if len(self.buf) >= 4:
                (length,) = struct.unpack_from("<I", self.buf, 0)
                if len(self.buf) >= 4 + length:
                    ftype, flags, method, rid = struct.unpack_from("<BBHI", self.buf, 4)
                    payload = self.buf[12 : 4 + length]
                    self.buf = self.buf[4 + length :]
                    return ftype, method, rid, payload
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def closed_by_peer(self):
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, socket.timeout):
            return False


def welcome_fields(payload):
    magic = payload[0:4]
    version, flags, fingerprint, max_frame, max_in_flight, pid, n = struct.unpack_from("<HHQIIIH", payload, 4)
    name = payload[30 : 30 + n].decode()
    return {"magic": magic.decode(), "version": version, "fingerprint": fingerprint, "maxInFlight": max_in_flight, "name": name}


def fnv1a64(data):
    # § 1.7: 64-bit FNV-1a.
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def canonical(value):
    # § 1.7: keys sorted, no whitespace, arrays in order.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def struct_u32s(*values):
    # § 1.2: u32 F, then the fixed section (fixed-width fields inline, no padding), empty heap.
    return struct.pack("<I", 4 * len(values)) + struct.pack("<" + "I" * len(values), *values)


def main(path):
    # An inspection connection (fingerprint 0) for the genome.
    c = Conn(path)
    c.send(frame(HELLO, 0, 0, handshake(0, "echo")))
    ftype, _, _, payload = c.read_frame()
    w = welcome_fields(payload)
    report("welcome", ftype == WELCOME and w["magic"] == "CELL" and w["version"] == 1 and w["name"] == "echo", w)
    c.send(frame(REQUEST, GENOME, 1))
    ftype, method, rid, payload = c.read_frame()
    genome = json.loads(payload.decode())
    announced = int(genome["fingerprint"], 16)
    computed = fnv1a64(canonical(genome["genome"]).encode())
    report("genome fingerprint", ftype == REPLY and rid == 1 and announced == computed == w["fingerprint"],
           {"announced": hex(announced), "computed": hex(computed)})
    ids = {m["name"]: m["id"] for m in genome["methods"]}
    report("dense method ids", sorted(ids.values()) == list(range(len(ids))), ids)
    c.send(frame(REQUEST, ids["echo"], 2, struct_u32s(1, 0)))
    ftype, _, _, payload = c.read_frame()
    err = json.loads(payload.decode()) if ftype == ERROR else {}
    report("user method on inspection connection", ftype == ERROR and err.get("code") == "E_SCHEMA_MISMATCH", err)
    c.sock.close()

    # A contract connection: HELLO and requests pipelined in one write (§ 2.3).
    c = Conn(path)
    fp = w["fingerprint"]
    c.send(frame(HELLO, 0, 0, handshake(fp, "echo")) + frame(REQUEST, ids["echo"], 7, struct_u32s(41, 0))
           + frame(REQUEST, ids["sum"], 8, bytes([1, 2, 3, 250])))
    ftype, *_ = c.read_frame()
    report("welcome first", ftype == WELCOME, ftype)
    replies = {}
    for _ in range(2):
        ftype, method, rid, payload = c.read_frame()
        replies[rid] = (ftype, method, payload)
    t, m, p = replies[7]
    f_size, echoed = struct.unpack_from("<II", p, 0)
    report("echo struct", t == REPLY and m == ids["echo"] and f_size == 4 and echoed == 41, p.hex())
    t, m, p = replies[8]
    report("sum bytes -> u32", t == REPLY and len(p) == 4 and struct.unpack("<I", p)[0] == 256, p.hex())

    c.send(frame(REQUEST, ids["fail"], 9, struct_u32s(1)))
    ftype, _, rid, payload = c.read_frame()
    err = json.loads(payload.decode())
    report("handler CellError", ftype == ERROR and rid == 9 and err["code"] == "E_INVALID_ARGUMENT"
           and err.get("fix") == "use another id" and "id 1" in err["message"], err)
    c.send(frame(REQUEST, 200, 10, b""))
    ftype, _, rid, payload = c.read_frame()
    err = json.loads(payload.decode())
    report("unknown method", ftype == ERROR and rid == 10 and err["code"] == "E_UNKNOWN_METHOD", err)
    c.send(frame(REQUEST, ids["echo"], 11, b"\x01\x02"))
    ftype, _, rid, payload = c.read_frame()
    err = json.loads(payload.decode())
    report("undecodable input", ftype == ERROR and rid == 11 and err["code"] == "E_DECODE", err)
    c.send(frame(REQUEST, HEALTH, 12))
    ftype, _, rid, payload = c.read_frame()
    health = json.loads(payload.decode())
    report("health", ftype == REPLY and health.get("status") == "ok" and health.get("cell") == "echo", health)
    c.send(frame(REQUEST, ids["echo"], 0, struct_u32s(1, 0)))
    ftype, _, rid, payload = c.read_frame()
    err = json.loads(payload.decode()) if ftype == ERROR else {}
    report("request id 0", ftype == ERROR and rid == 0 and err.get("code") == "E_PROTOCOL" and c.closed_by_peer(), err)

    # A malformed frame: connection-level ERROR, then close (§ 2.1).
    c = Conn(path)
    c.send(frame(HELLO, 0, 0, handshake(fp, "echo")))
    c.read_frame()
    c.send(struct.pack("<IBBHI", 3, REQUEST, 0, 0, 1))
    ftype, _, rid, payload = c.read_frame()
    err = json.loads(payload.decode()) if ftype == ERROR else {}
    report("malformed length", ftype == ERROR and rid == 0 and err.get("code") == "E_FRAME_MALFORMED" and c.closed_by_peer(), err)

    # A different contract under the same name: WELCOME first, then E_SCHEMA_MISMATCH (§ 2.3).
    c = Conn(path)
    c.send(frame(HELLO, 0, 0, handshake(fp ^ 1, "echo")))
    first = c.read_frame()
    second = c.read_frame()
    err = json.loads(second[3].decode()) if second and second[0] == ERROR else {}
    report("schema mismatch", first[0] == WELCOME and err.get("code") == "E_SCHEMA_MISMATCH", err)


if __name__ == "__main__":
    main(sys.argv[1])
