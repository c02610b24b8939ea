"""§ 2 framing shared by the Python clients here, written from docs/PROTOCOL.md alone."""
import json
import os
import struct

HELLO, WELCOME, REQUEST, REPLY, ERROR = 1, 2, 3, 4, 5
GENOME, HEALTH = 0xFFFF, 0xFFFE


def report(check, ok, detail=None):
    """One JSON line per check: {"check": name, "ok": bool, "detail": ...}; the Node test asserts each."""
    print(json.dumps({"check": check, "ok": bool(ok), "detail": detail}), flush=True)


def frame(ftype, method, request_id, payload=b""):
    # § 2.1: u32 length (8 + payload), u8 type, u8 flags, u16 method, u32 request id.
    return struct.pack("<IBBHI", 8 + len(payload), ftype, 0, method, request_id) + payload


def handshake(fingerprint, name):
    # § 2.3: magic, version 1, flags 0, u64 fingerprint, max frame 0, in-flight 0, pid, name.
    raw = name.encode()
    return b"CELL" + struct.pack("<HHQIIIH", 1, 0, fingerprint, 0, 0, os.getpid(), len(raw)) + raw
