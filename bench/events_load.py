#!/usr/bin/env python3
"""Live-event load for `make bench` (bench/events.sh): many open streams of one session, the time from
an owner call's return to its event on every stream, and how many bytes of server RSS a stream costs.

usage: events_load.py PORT SESSION_ID TOKEN STREAMS CHANGES SERVER_PID
Opens STREAMS HTTP/1.1 connections to GET /share/SESSION_ID/events on 127.0.0.1:PORT (standard
library only, asyncio), waits for each one's first event, reads the server's RSS, then makes CHANGES
owner calls (UpdateSessionTitle, one at a time) and for each records when every stream received the
event of the version the call answered. Prints one JSON object.
"""
import asyncio, json, statistics, sys, time, urllib.request


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Stream:
    def __init__(self):
        self.first = asyncio.get_event_loop().create_future()
        self.seen = {}  # version -> monotonic time it arrived


async def follow(port, path, s):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    buf = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            break
        buf += chunk
        while b"\nid: " in buf:
            i = buf.index(b"\nid: ") + 5
            j = buf.find(b"\n", i)
            if j < 0:
                break
            v = buf[i:j].strip()
            if v.isdigit():
                s.seen.setdefault(int(v), time.monotonic())
            if not s.first.done():
                s.first.set_result(True)
            buf = buf[j:]
        if len(buf) > 1 << 20:
            buf = buf[-4096:]


def call(port, token, method, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/rpc/shareline.v1.Sessions/{method}",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


async def main():
    port, sid, token, n, changes, pid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    port = int(port)
    path = f"/share/{sid}/events"
    rss0 = rss_kb(pid)
    streams = [Stream() for _ in range(n)]
    tasks = []
    t0 = time.monotonic()
    for k, s in enumerate(streams):
        tasks.append(asyncio.ensure_future(follow(port, path, s)))
        if k % 200 == 199:
            await asyncio.sleep(0.01)  # do not overflow the listen backlog
    await asyncio.wait_for(asyncio.gather(*(s.first for s in streams)), timeout=120)
    connect_s = time.monotonic() - t0
    await asyncio.sleep(1.0)
    rss1 = rss_kb(pid)
    loop = asyncio.get_event_loop()
    lat = []
    last_all = []
    for c in range(changes):
        ans = await loop.run_in_executor(None, call, port, token, "UpdateSessionTitle",
                                         {"session_id": sid, "title": f"bench title {c} {time.time()}"})
        returned = time.monotonic()
        v = int(ans["version"])
        end = returned + 10
        while time.monotonic() < end and not all(v in s.seen for s in streams):
            await asyncio.sleep(0.005)
        # an event may arrive before the call returns (every node hears the change before the
        # owner's call goes on): counted as 0
        got = [max(0.0, s.seen[v] - returned) for s in streams if v in s.seen]
        lat += got
        last_all.append(max(got) if len(got) == n else float("inf"))
        await asyncio.sleep(0.2)
    for t in tasks:
        t.cancel()
    print(json.dumps({
        "streams": n, "connect_seconds": round(connect_s, 2),
        "rss_kb_before": rss0, "rss_kb_with_streams": rss1,
        "rss_bytes_per_stream": round((rss1 - rss0) * 1024 / n) if n else 0,
        "changes": changes, "events_received": len(lat), "events_expected": n * changes,
        "fanout_ms_p50": round(statistics.median(lat) * 1000, 1) if lat else None,
        "fanout_ms_p99": round(pct(lat, 0.99) * 1000, 1) if lat else None,
        "last_stream_ms_max": round(max(last_all) * 1000, 1) if last_all else None,
    }))


if __name__ == "__main__":
    asyncio.get_event_loop().run_until_complete(main())
