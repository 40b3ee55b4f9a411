"""Benchmark: Mailroom as a cluster, several nodes on one real SurrealDB server.

1. Outbox throughput with 1, 2 and 3 nodes. Per node count: a fresh SurrealDB server (surrealkv
   on disk), the nodes on it (one shared instance key; each MAILROOM_OUTBOX_CONCURRENCY = --pool),
   a fresh aiosmtpd sink and custom settings pointing at it. Once the admin notice about that save
   has arrived, 8 HTTP clients create N users round robin over the nodes; each creation queues an
   invitation, which whichever node claims it sends. Delivery rate = N / (time of the last
   invitation's arrival at the sink - time of the first). Each Message-ID must arrive once:
   duplicates = lines - distinct Message-IDs. The sink's ceiling is measured in the same run with
   the raw pipelined client of outbox_throughput.py, on nodes x pool connections.
2. Status fan-out over three nodes: S streams on /api/smtp_status/stream, round robin over the
   nodes, then ROUNDS flips of the status by saving failing settings (a closed port) and passing
   ones (default mode: the local mailbox) on a rotating node. A change may reach a stream as
   several events (each node's check, heartbeats, deliveries): per stream and change, the first
   event whose is_valid has the new value counts. Latency = its arrival - the newest checked_at
   in it (same machine, same clock).

    MAILROOM_SURREAL_PROFILE=fast bash scripts/build-surreal.sh   # once per machine, ~25 min
    python3 bench/cluster.py [--messages 2000] [--pool 16] [--nodes 1 2 3] [--streams 1000] [--rounds 10]
"""
import argparse
import asyncio
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from harness import ADMIN, Mbox, free_port, plain_form, post, raw_ceiling, sign_in, start_sink, stop, wait_ready

HOME = os.path.expanduser("~")
parser = argparse.ArgumentParser()
parser.add_argument("--messages", type=int, default=2000)
parser.add_argument("--pool", type=int, default=16)
parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 3])
parser.add_argument("--streams", type=int, default=1000)
parser.add_argument("--rounds", type=int, default=10)
parser.add_argument("--server", default=os.environ.get("MAILROOM_SERVER_BIN", f"{HOME}/.cache/mailroom/target/debug/server"))
# The optimised build (MAILROOM_SURREAL_PROFILE=fast bash scripts/build-surreal.sh): unoptimised, the
# database server is the bottleneck, and this would measure it instead of Mailroom.
parser.add_argument("--surreal", default=os.environ.get("MAILROOM_SURREAL_BIN", f"{HOME}/.cache/mailroom/bin/surreal-fast"))
parser.add_argument("--python", default=os.environ.get("MAILROOM_TEST_PYTHON", f"{HOME}/.cache/mailroom/venv/bin/python"))
args = parser.parse_args()

# A thousand streams need a thousand sockets here, and a third of them in each node.
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
STREAMS_PER_SESSION = 100  # MAILROOM_MAX_STREAMS_PER_SESSION's maximum; more streams, more sessions
JSON = {"Content-Type": "application/json"}


def raise_limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_cluster(count, work, processes):
    """A fresh SurrealDB server and `count` nodes on it, each appended to `processes` (the database
    first); answers the nodes' base URLs."""
    db_port, password = free_port(), secrets.token_urlsafe(18)
    processes.append(subprocess.Popen(
        [args.surreal, "start", "--bind", f"127.0.0.1:{db_port}", f"surrealkv://{work}/db"],
        stdout=open(f"{work}/surreal.log", "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=dict(os.environ, SURREAL_USER="root", SURREAL_PASS=password, SURREAL_ONLINE_VERSION_CHECK="false")))
    wait_ready("surreal", f"http://127.0.0.1:{db_port}/health", processes[0], f"{work}/surreal.log", 60)
    bases = []
    # One at a time, as scripts/cluster.sh does: the first creates the instance key file and the
    # first admin (nodes started together manage too, see server/tests/cluster.rs).
    for i in range(count):
        node, port = f"node-{'abcdefghi'[i]}", free_port()
        os.makedirs(f"{work}/{node}")  # each runs in a directory of its own: a node reads a .env where it runs
        environment = dict(
            os.environ, MAILROOM_BIND=f"127.0.0.1:{port}", MAILROOM_NODE_ID=node,
            MAILROOM_DATABASE_URL=f"ws://127.0.0.1:{db_port}", MAILROOM_DATABASE_USER="root",
            MAILROOM_DATABASE_PASSWORD=password, MAILROOM_SECRET_KEY_FILE=f"{work}/secret.key",
            MAILROOM_ADMIN_EMAIL=ADMIN[0], MAILROOM_ADMIN_PASSWORD=ADMIN[1], MAILROOM_OUTBOX_CONCURRENCY=str(args.pool),
            MAILROOM_LOGIN_PER_MINUTE="1000000", MAILROOM_SMTP_ACTIONS_PER_MINUTE="1000000",
            MAILROOM_SMTP_ACTIONS_PER_MINUTE_INSTANCE="1000000",
            MAILROOM_MAX_STREAMS_PER_SESSION=str(STREAMS_PER_SESSION), RUST_LOG="warn")
        processes.append(subprocess.Popen(
            [args.server], cwd=f"{work}/{node}", env=environment, preexec_fn=raise_limit,
            stdout=open(f"{work}/{node}.log", "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        bases.append(f"http://127.0.0.1:{port}")
        wait_ready(node, f"{bases[i]}/healthz", processes[-1], f"{work}/{node}.log", 120)
    return bases


def stop_all(processes):
    """The nodes together (each releases what it is sending), then the database."""
    for process in processes[1:]:
        if process.poll() is None:
            process.terminate()
    for process in reversed(processes):
        stop(process)


def until(condition, seconds, failure):
    """Polls `condition` every 10 ms; after `seconds`, exits with `failure()`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(failure())
        time.sleep(0.01)


def throughput(count):
    work = tempfile.mkdtemp(prefix="mailroom-cluster-")
    processes = []
    sink, sink_port = start_sink(args.python, work)
    try:
        bases = start_cluster(count, work, processes)
        opener, _ = sign_in(bases[0])
        post(opener, f"{bases[0]}/api/smtp_save", json.dumps({"form": plain_form(sink_port), "version": 0}).encode(), **JSON)
        mbox = Mbox(f"{work}/mbox.jsonl")
        # The admin notice about the save comes first; the invitations are timed without it.
        until(lambda: mbox.read() >= 1, 60, lambda: "the admin notice about the saved settings never reached the sink")
        errors = []

        def create(start, step):
            try:
                for n in range(start, args.messages, step):
                    data = urllib.parse.urlencode({"name": f"User {n}", "email": f"user{n}@example.com", "role": "user"})
                    post(opener, f"{bases[n % count]}/api/users_create", data.encode())
            except Exception as err:  # reported below
                errors.append(err)

        for i in range(8):
            threading.Thread(target=create, args=(i, 8), daemon=True).start()
        until(lambda: mbox.read() >= args.messages + 1 or errors, 120 + args.messages / 5,
              lambda: f"only {len(set(mbox.ids)) - 1} of {args.messages} invitations arrived in time")
        if errors:
            sys.exit(f"creating users failed: {errors[0]!r}")
        first, last = mbox.seen[1], mbox.seen[-1]
        time.sleep(1.0)  # a duplicate sent a little late still counts
        mbox.read()
        duplicates = len(mbox.ids) - len(set(mbox.ids))
        rate = args.messages / (last - first)
        connections = count * args.pool
        ceiling = asyncio.run(raw_ceiling(sink_port, connections, max(2000, connections)))
        print(f"nodes {count}: {args.messages} invitations, delivery {rate:7.1f} msg/s (first to last arrival "
              f"{last - first:6.2f} s); sink ceiling, raw pipelined client on {connections} connections: "
              f"{ceiling:7.1f} msg/s; ratio {rate / ceiling:5.3f}; duplicates {duplicates}", flush=True)
    finally:
        stop_all(processes)
        stop(sink)


async def fan(bases, cookies, save):
    n = args.streams
    ready, latencies = [], [[] for _ in range(args.rounds)]
    change = {"round": -1, "valid": None}  # the change being waited for: its round and its new is_valid

    async def stream(i):
        host, port = bases[i % len(bases)].removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /api/smtp_status/stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
                     f"Cookie: {cookies[i // STREAMS_PER_SESSION]}\r\nAccept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        buffer, first, seen = b"", True, set()
        try:
            while chunk := await reader.read(65536):
                now_ms = time.time() * 1000
                if first and not buffer and not chunk.startswith(b"HTTP/1.1 200"):
                    status = chunk.split(b"\r\n")[0].decode()
                    raise RuntimeError(f"stream {i} on port {port}: {status}")
                buffer += chunk
                while b"\n\n" in buffer:
                    frame, buffer = buffer.split(b"\n\n", 1)
                    for line in (line for line in frame.split(b"\n") if line.startswith(b"data: ")):
                        health = json.loads(line[6:])
                        if first:  # the current status, before any change
                            first = False
                            if not health["is_valid"]:
                                raise RuntimeError("the status is failing before the first change")
                            ready.append(i)
                        elif change["round"] not in seen and health["is_valid"] == change["valid"] and health["nodes"]:
                            seen.add(change["round"])
                            latencies[change["round"]].append(now_ms - max(s["checked_at"] for s in health["nodes"]))
            raise RuntimeError(f"stream {i} on port {port} ended")
        finally:
            writer.close()

    async def until_streams(condition, seconds, failure):
        deadline = time.monotonic() + seconds
        while not condition():
            for task in tasks:
                if task.done():
                    task.result()  # raises what ended the stream
            if time.monotonic() > deadline:
                sys.exit(failure())
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(stream(i)) for i in range(n)]
    await until_streams(lambda: len(ready) == n, 120, lambda: f"only {len(ready)} of {n} streams opened within 120 s")
    for r in range(args.rounds):
        failing = r % 2 == 0
        change.update(round=r, valid=not failing)
        await asyncio.to_thread(save, bases[r % len(bases)], failing)
        await until_streams(lambda: len(latencies[r]) == n, 30,
                            lambda: f"change {r + 1}: only {len(latencies[r])} of {n} streams saw is_valid={not failing} within 30 s")
        await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    every = sorted(ms for each in latencies for ms in each)
    p99 = every[max(0, int(len(every) * 0.99) - 1)]
    print(f"streams {n} over {len(bases)} nodes, {args.rounds} changes: p50 {statistics.median(every):7.2f} ms  "
          f"p99 {p99:7.2f} ms  max {every[-1]:7.2f} ms; streams that received each change: "
          f"{' '.join(str(len(each)) for each in latencies)} (of {n})", flush=True)


def fanout():
    work = tempfile.mkdtemp(prefix="mailroom-cluster-fanout-")
    processes = []
    try:
        bases = start_cluster(3, work, processes)
        opener, _ = sign_in(bases[0])
        cookies = []
        for k in range(-(-args.streams // STREAMS_PER_SESSION)):  # sessions live in the database: any node will do
            _, jar = sign_in(bases[k % len(bases)])
            cookies.append("; ".join(f"{c.name}={c.value}" for c in jar))
        closed_port = free_port()

        def save(base, failing):
            version = json.load(post(opener, f"{base}/api/smtp_load", b""))["version"]
            form = plain_form(closed_port, mode="Custom" if failing else "Default")
            post(opener, f"{base}/api/smtp_save", json.dumps({"form": form, "version": version}).encode(), **JSON)

        asyncio.run(fan(bases, cookies, save))
    finally:
        stop_all(processes)


for count in args.nodes:
    throughput(count)
fanout()
