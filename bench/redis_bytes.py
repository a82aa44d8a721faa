#!/usr/bin/env python3
"""Redis bytes of one public projection: its entry and the blobs its recipe names (the chunks of
keys and the pieces).

usage: redis_bytes.py PORT PREFIX SESSION_ID...
prints, per session: "<id> <entry bytes> <blob bytes> <blobs>" (MEMORY USAGE of each key; a blob
named twice is counted once). The formats are core/recipe.c's: the entry is a head line, then
"SLR2", version (u64), exchange count (u32), chunk count (u32), nine length-prefixed strings, the
chunks' 16-byte keys; a chunk is "SLC1", count (u32), the pieces' keys; each blob is
"<prefix>x:<32 hex of its key>" (cache/blobs.c).
"""
import socket
import struct
import sys


class Redis:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        return self.read()

    def read(self):
        line = self.f.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if kind == b":":
            return int(rest)
        if kind == b"*":
            return [self.read() for _ in range(int(rest))]
        if kind == b"-":
            raise RuntimeError(rest.decode())
        return rest


def recipe_chunks(value):
    nl = value.index(b"\n")
    r = value[nl + 1:]
    if r[:4] != b"SLR2":
        raise ValueError("not a recipe")
    (nc,) = struct.unpack_from("<I", r, 16)
    at = 20
    for _ in range(9):
        (ln,) = struct.unpack_from("<I", r, at)
        at += 4 + ln
    return [r[at + 16 * i:at + 16 * i + 16] for i in range(nc)]


def chunk_keys(blob):
    if blob is None or blob[:4] != b"SLC1":
        return []
    (n,) = struct.unpack_from("<I", blob, 4)
    return [blob[8 + 16 * i:8 + 16 * i + 16] for i in range(n)]


def main():
    port, prefix, ids = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    r = Redis(port)
    for sid in ids:
        key = prefix + "p:" + sid
        value = r.call("GET", key)
        if value is None or value[:1] != b"P":
            print(sid, 0, 0, 0)
            continue
        entry = r.call("MEMORY", "USAGE", key) or 0
        blobs = 0
        chunks = recipe_chunks(value)
        keys = set(chunks)
        for c in chunks:
            keys.update(chunk_keys(r.call("GET", prefix + "x:" + c.hex())))
        keys = sorted(keys)
        for k in keys:
            blobs += r.call("MEMORY", "USAGE", prefix + "x:" + k.hex()) or 0
        print(sid, entry, blobs, len(keys))


if __name__ == "__main__":
    main()
