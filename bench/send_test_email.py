"""Benchmark: Send Test Email round trip through Mailroom vs a raw smtplib transaction.

Both talk to the same local aiosmtpd (plaintext, no AUTH). Mailroom is the real server binary
on a fresh mem:// database; each sample is one POST /api/smtp_test (sign-in done once), which
parses the form, checks the caller and the rate limit, connects, sends and waits for 250.

    python3 bench/send_test_email.py [--samples 300] [--server PATH]

Prints median and p95 of each, in milliseconds.
"""
import argparse
import json
import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from harness import plain_form, record, sign_in, start_server, post

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOME = os.path.expanduser("~")
parser = argparse.ArgumentParser()
parser.add_argument("--samples", type=int, default=300)
parser.add_argument("--warmup", type=int, default=20)
parser.add_argument("--server", default=os.environ.get("MAILROOM_SERVER_BIN", f"{HOME}/.cache/mailroom/target/debug/server"))
parser.add_argument("--python", default=os.environ.get("MAILROOM_TEST_PYTHON", f"{HOME}/.cache/mailroom/venv/bin/python"))
parser.add_argument("--json", default="")
args = parser.parse_args()

work = tempfile.mkdtemp(prefix="mailroom-bench-")
peer = subprocess.Popen(
    [args.python, f"{ROOT}/server/tests/support/smtp_peer.py", "--mbox", f"{work}/mbox.jsonl"],
    stdout=subprocess.PIPE, text=True,
)
smtp_port = int(peer.stdout.readline().split()[1])
server, base = start_server(args.server, work)

try:
    opener, _ = sign_in(base)
    form = plain_form(smtp_port)
    body = json.dumps({"form": form}).encode()

    def mailroom_once():
        with post(opener, f"{base}/api/smtp_test", body, **{"Content-Type": "application/json"}) as response:
            assert response.status == 200, response.status

    message = "From: Mailroom <mail@example.com>\r\nTo: admin@example.com\r\nSubject: Mailroom Mail Test\r\n\r\nMailroom mail is working!\r\n"

    def smtplib_once():
        with smtplib.SMTP("127.0.0.1", smtp_port) as client:
            client.sendmail("mail@example.com", ["admin@example.com"], message)

    def measure(fn):
        for _ in range(args.warmup):
            fn()
        samples = []
        for _ in range(args.samples):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1000)
        samples.sort()
        return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]

    results = {"mailroom Send Test Email (HTTP round trip)": measure(mailroom_once), "raw smtplib transaction": measure(smtplib_once)}
    for name, (median, p95) in results.items():
        print(f"{name:45s} median {median:7.2f} ms   p95 {p95:7.2f} ms   (n={args.samples})")
    (mailroom, mailroom_p95), (raw, raw_p95) = results.values()
    record(args.json, "send test", "Send Test Email, median of the HTTP round trip", mailroom, "ms", raw + 1,
           "raw smtplib transaction + 1 ms", lower_is_better=True, p95_ms=mailroom_p95, smtplib_ms=raw,
           smtplib_p95_ms=raw_p95)
    received = sum(1 for _ in open(f"{work}/mbox.jsonl"))
    print(f"messages at the peer: {received} (expected {2 * (args.samples + args.warmup)})")
finally:
    server.terminate()
    peer.terminate()
