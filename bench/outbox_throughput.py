"""Benchmark: outbox delivery throughput to a local SMTP sink, every state change durable.

For each pool size (MAILROOM_OUTBOX_CONCURRENCY = 1, 4, 16) it starts a fresh aiosmtpd sink and
the real server binary on a fresh surrealkv:// database (on disk), saves custom settings that
point at the sink, then creates N users as fast as 8 HTTP clients can. Each creation commits the
user, its one-time link and its invitation in one transaction; the worker claims each message
with a lease, sends it and commits the outcome and the attempt. Delivery rate = N / (time of the
last arrival at the sink - time of the first).

The sink's own ceiling is measured in the same run with a raw asyncio client that pipelines
MAIL/RCPT/DATA over the same number of persistent connections.

    python3 bench/outbox_throughput.py [--messages 1000] [--pools 1 4 16]
"""
import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
import urllib.parse
import urllib.request

from harness import arrivals, plain_form, raw_ceiling, sign_in, start_server, start_sink, post

HOME = os.path.expanduser("~")
parser = argparse.ArgumentParser()
parser.add_argument("--messages", type=int, default=1000)
parser.add_argument("--pools", type=int, nargs="+", default=[1, 4, 16])
parser.add_argument("--server", default=os.environ.get("MAILROOM_SERVER_BIN", f"{HOME}/.cache/mailroom/target/debug/server"))
parser.add_argument("--python", default=os.environ.get("MAILROOM_TEST_PYTHON", f"{HOME}/.cache/mailroom/venv/bin/python"))
args = parser.parse_args()


def run(pool):
    work = tempfile.mkdtemp(prefix="mailroom-throughput-")
    sink, sink_port = start_sink(args.python, work)
    server, base = start_server(args.server, work, MAILROOM_DATABASE_URL=f"surrealkv://{work}/db",
                                MAILROOM_OUTBOX_CONCURRENCY=str(pool))
    try:
        opener, _ = sign_in(base)
        form = plain_form(sink_port)
        body = json.dumps({"form": form, "version": 0}).encode()
        post(opener, f"{base}/api/smtp_save", body, **{"Content-Type": "application/json"})
        expected = args.messages + 1  # the invitations and the admin notice about the save

        def create(start, step):
            for n in range(start, args.messages, step):
                data = urllib.parse.urlencode({"name": f"User {n}", "email": f"user{n}@example.com", "role": "user"}).encode()
                post(opener, f"{base}/api/users_create", data)

        queue_start = time.perf_counter()
        threads = [threading.Thread(target=create, args=(i, 8)) for i in range(8)]
        for thread in threads:
            thread.start()
        first = None
        while arrivals(work) < expected:
            if first is None and arrivals(work) > 0:
                first = time.perf_counter()
            time.sleep(0.01)
        last = time.perf_counter()
        for thread in threads:
            thread.join()
        rate = (expected - 1) / (last - (first or queue_start))
        ceiling = asyncio.run(raw_ceiling(sink_port, pool, 2000))
        print(f"pool {pool:2d}: {expected} messages, delivery {rate:7.1f} msg/s "
              f"(first to last arrival {last - (first or queue_start):6.2f} s); sink ceiling, raw pipelined client "
              f"on {pool} connection(s): {ceiling:7.1f} msg/s")
    finally:
        server.terminate()
        sink.terminate()


for pool in args.pools:
    run(pool)
