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
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request

from harness import plain_form, sign_in, start_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOME = os.path.expanduser("~")
parser = argparse.ArgumentParser()
parser.add_argument("--messages", type=int, default=1000)
parser.add_argument("--pools", type=int, nargs="+", default=[1, 4, 16])
parser.add_argument("--server", default=os.environ.get("MAILROOM_SERVER_BIN", f"{HOME}/.cache/mailroom/target/debug/server"))
parser.add_argument("--python", default=os.environ.get("MAILROOM_TEST_PYTHON", f"{HOME}/.cache/mailroom/venv/bin/python"))
args = parser.parse_args()


def start_sink(work):
    sink = subprocess.Popen([args.python, f"{ROOT}/server/tests/support/smtp_peer.py", "--mbox", f"{work}/mbox.jsonl"],
                            stdout=subprocess.PIPE, text=True)
    return sink, int(sink.stdout.readline().split()[1])


def arrivals(work):
    try:
        with open(f"{work}/mbox.jsonl") as mbox:
            return sum(1 for _ in mbox)
    except FileNotFoundError:
        return 0


async def raw_ceiling(port, connections, total):
    body = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: raw\r\n\r\nhello\r\n.\r\n"

    async def one_connection(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        writer.write(b"EHLO raw\r\n")
        while not (await reader.readline()).startswith(b"250 "):
            pass
        for _ in range(count):
            writer.write(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
            for _ in range(3):
                await reader.readline()
            writer.write(body)
            await reader.readline()
        writer.write(b"QUIT\r\n")
        await writer.drain()
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(one_connection(total // connections) for _ in range(connections)))
    return (total // connections * connections) / (time.perf_counter() - start)


def run(pool):
    work = tempfile.mkdtemp(prefix="mailroom-throughput-")
    sink, sink_port = start_sink(work)
    server, base = start_server(args.server, work, MAILROOM_DATABASE_URL=f"surrealkv://{work}/db",
                                MAILROOM_OUTBOX_CONCURRENCY=str(pool))
    try:
        opener, _ = sign_in(base)
        form = plain_form(sink_port)
        body = json.dumps({"form": form, "version": 0}).encode()
        opener.open(urllib.request.Request(f"{base}/api/smtp_save", data=body, headers={"Content-Type": "application/json"}))
        expected = args.messages + 1  # the invitations and the admin notice about the save

        def create(start, step):
            for n in range(start, args.messages, step):
                data = urllib.parse.urlencode({"name": f"User {n}", "email": f"user{n}@example.com", "role": "user"}).encode()
                opener.open(urllib.request.Request(f"{base}/api/users_create", data=data))

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
