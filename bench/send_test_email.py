"""Benchmark: Send Test Email round trip through Mailroom vs a raw smtplib transaction.

Both talk to the same local aiosmtpd (plaintext, no AUTH, PIPELINING offered unless
--no-pipelining), in its lean mode (it keeps each
message's size and Message-ID without parsing it, so the sink's work does not depend on which
client's headers it would have to parse), with messages of the same headers and size. Mailroom is the real server binary
on a fresh mem:// database; each sample is one POST /api/smtp_test on a kept-alive connection (sign-in done once), which
parses the form, checks the caller and the rate limit, connects, sends and waits for 250.

    python3 bench/send_test_email.py [--samples 300] [--server PATH]

Prints median and p95 of each, in milliseconds.
"""
import argparse
import http.client
import json
import os
import re
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time

from harness import plain_form, record, sign_in, start_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOME = os.path.expanduser("~")
parser = argparse.ArgumentParser()
parser.add_argument("--samples", type=int, default=300)
parser.add_argument("--warmup", type=int, default=20)
parser.add_argument("--server", default=os.environ.get("MAILROOM_SERVER_BIN", f"{HOME}/.cache/mailroom/target/debug/server"))
parser.add_argument("--python", default=os.environ.get("MAILROOM_TEST_PYTHON", f"{HOME}/.cache/mailroom/venv/bin/python"))
parser.add_argument("--json", default="")
parser.add_argument("--pipelining", action=argparse.BooleanOptionalAction, default=True,
                    help="the peer advertises PIPELINING, as Postfix, Exim and the big providers do (smtplib never "
                         "pipelines; Mailroom does when it is offered)")
args = parser.parse_args()

work = tempfile.mkdtemp(prefix="mailroom-bench-")
peer = subprocess.Popen(
    [args.python, f"{ROOT}/server/tests/support/smtp_peer.py", "--mbox", f"{work}/mbox.jsonl", "--lean"]
    + (["--pipelining"] if args.pipelining else []),
    stdout=subprocess.PIPE, text=True,
)
smtp_port = int(peer.stdout.readline().split()[1])
log = f"{work}/server.log"
server, base = start_server(args.server, work, log=log, RUST_LOG="warn,app::smtp_settings::ssr=info")

try:
    _, jar = sign_in(base)
    form = plain_form(smtp_port)
    body = json.dumps({"form": form}).encode()
    # One kept-alive connection, as the admin's browser has.
    connection = http.client.HTTPConnection(base.split("//", 1)[1])
    headers = {"Content-Type": "application/json", "Origin": base,
               "Cookie": "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)}

    def mailroom_once():
        connection.request("POST", "/api/smtp_test", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status

    # The headers lettre writes for the test email (307 bytes).
    message = (
        "From: Mailroom <mail@example.com>\r\nTo: \"Admin\" <admin@example.com>\r\nSubject: Mailroom Mail Test\r\n"
        "Message-ID: <0e5c9a1d-54a7-4c3f-9f3c-1b2d3e4f5a6b@mailroom.localhost>\r\n"
        "Date: Sat, 28 Nov 2026 18:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 7bit\r\n\r\nMailroom mail is working!\r\n"
    )

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
    # Where the server's time went, from its "test email sent" lines (the measured samples).
    fields = {"checks_ms": [], "smtp_ms": [], "record_ms": []}
    with open(log, encoding="utf-8") as lines:
        sent = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines if "test email sent" in line]
    for line in sent[-args.samples:]:
        for name, values in fields.items():
            found = re.search(rf"{name}=([0-9.]+)", line)
            if found:
                values.append(float(found.group(1)))
    parts = {name: statistics.median(values) for name, values in fields.items() if values}
    print("inside the server (medians): " + ", ".join(f"{name} {value:.2f} ms" for name, value in parts.items()))
    record(args.json, "send test", "Send Test Email, median of the HTTP round trip", mailroom, "ms", raw + 1,
           "raw smtplib transaction + 1 ms", lower_is_better=True, p95_ms=mailroom_p95, smtplib_ms=raw,
           smtplib_p95_ms=raw_p95, peer_offers="PIPELINING" if args.pipelining else "no PIPELINING", **parts)
    received = sum(1 for _ in open(f"{work}/mbox.jsonl"))
    print(f"messages at the peer: {received} (expected {2 * (args.samples + args.warmup)})")
finally:
    server.terminate()
    peer.terminate()
