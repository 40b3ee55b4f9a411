"""Benchmark: time from an SMTP status write to its delivery on N open admin streams.

Starts the real server binary (fresh mem:// database), signs in one admin, opens N server-sent
event streams on /api/smtp_status/stream and then flips the status ROUNDS times by saving
settings that fail (a closed port: the post-save check records "connection refused") and
settings that pass (default mode: the local mailbox records healthy). Each status carries
`checked_at`, the server's clock when it wrote the record; each stream notes when the change
arrived. Same machine, same clock: latency = arrival - checked_at.
Also reports the server's RSS growth per open stream: the growth while N streams open after N
others (still open) warmed the server's caches; changes are timed on the second N.

    python3 bench/status_fanout.py [--streams 10 100 1000] [--rounds 20]
"""
import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

from harness import plain_form, record, sign_in, start_server, post

HOME = os.path.expanduser("~")
parser = argparse.ArgumentParser()
parser.add_argument("--streams", type=int, nargs="+", default=[10, 100, 1000])
parser.add_argument("--rounds", type=int, default=20)
parser.add_argument("--server", default=os.environ.get("MAILROOM_SERVER_BIN", f"{HOME}/.cache/mailroom/target/debug/server"))
parser.add_argument("--json", default="")
args = parser.parse_args()

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def raise_limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


work = tempfile.mkdtemp(prefix="mailroom-fanout-")
# A session may hold at most MAILROOM_MAX_STREAMS_PER_SESSION streams (100 at most): one session
# per 100 streams.
server, base = start_server(args.server, work, preexec_fn=raise_limit, MAILROOM_MAX_STREAMS_PER_SESSION="100",
                            MAILROOM_MAX_CONNECTIONS=str(2 * max(args.streams) + 100),
                            MAILROOM_LOGIN_PER_MINUTE="1000")
host, port = base.removeprefix("http://").split(":")
port = int(port)


def rss_kib():
    with open(f"/proc/{server.pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


opener, _ = sign_in(base)
cookies = []
for _ in range(2 * ((max(args.streams) + 99) // 100)):
    _, jar = sign_in(base)
    cookies.append("; ".join(f"{c.name}={c.value}" for c in jar))
closed = socket.socket()
closed.bind(("127.0.0.1", 0))
closed_port = closed.getsockname()[1]
closed.close()


def save(failing):
    version = json.load(post(opener, f"{base}/api/smtp_load", b""))["version"]
    form = plain_form(closed_port, mode="Custom" if failing else "Default")
    body = json.dumps({"form": form, "version": version}).encode()
    post(opener, f"{base}/api/smtp_save", body, **{"Content-Type": "application/json"})


async def stream(cookie, ready, arrivals):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /api/smtp_status/stream HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    first = True
    buffer = b""
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            now_ms = time.time() * 1000
            buffer += chunk
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                for line in frame.split(b"\n"):
                    if line.startswith(b"data: "):
                        health = json.loads(line[6:])
                        if first:
                            first = False
                            ready.release()
                        elif health["nodes"]:
                            arrivals.append(now_ms - max(n["checked_at"] for n in health["nodes"]))
    except asyncio.CancelledError:
        writer.close()
        raise


async def open_streams(n, arrivals, first_session=0):
    ready = asyncio.Semaphore(0)
    tasks = [asyncio.create_task(stream(cookies[first_session + i // 100], ready, arrivals)) for i in range(n)]
    for _ in range(n):
        await asyncio.wait_for(ready.acquire(), 60)
    return tasks


async def close_streams(tasks):
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def run(n):
    arrivals = []
    # N streams opened first and kept open: what the server grows by on first use (database
    # caches, allocator arenas, thread stacks) is not memory per stream. The growth while N
    # more open is; both sets stay open, so no stream reuses another's freed memory.
    warm = await open_streams(n, [])
    await asyncio.sleep(1.0)
    before = rss_kib()
    tasks = await open_streams(n, arrivals, first_session=(n + 99) // 100)
    after = rss_kib()
    failing = True
    for _ in range(args.rounds):
        await asyncio.to_thread(save, failing)
        failing = not failing
        await asyncio.sleep(0.4)
    await asyncio.sleep(1.0)
    await close_streams(tasks + warm)
    arrivals.sort()
    p99 = arrivals[max(0, int(len(arrivals) * 0.99) - 1)]
    print(f"N={n:5d}  deliveries {len(arrivals):6d} (expected {n * args.rounds})  median {statistics.median(arrivals):7.2f} ms"
          f"  p99 {p99:7.2f} ms  RSS +{(after - before) / n:6.1f} KiB per stream ({before} -> {after} KiB)", flush=True)
    record(args.json, "fan-out", f"{n} open status streams: server memory per stream", (after - before) / n, "KiB",
           30, "goal 30 KB", lower_is_better=True, deliveries=len(arrivals), expected=n * args.rounds,
           p50_ms=statistics.median(arrivals), p99_ms=p99)
    await asyncio.sleep(1.0)


try:
    for n in args.streams:
        asyncio.run(run(n))
finally:
    server.terminate()
