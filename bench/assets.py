"""Benchmark: what the browser downloads for the admin app, and how long until it is live.

Starts the real server binary (point LEPTOS_SITE_ROOT at the site built with it), finds the
script, WASM and stylesheet the signed-in Admin > SMTP page asks for, and fetches each raw,
with gzip and with brotli: the size as sent, and the headers (Content-Encoding, Cache-Control).
Then Chromium (end2end/hydrate.js) loads the page cold five times: median time from navigation
start to <body data-hydrated>, and the bytes on the wire for the three assets.

    python3 bench/assets.py [--runs 5] [--json results.jsonl]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import urllib.request

from harness import ROOT, record, sign_in, start_server, stop

HOME = os.path.expanduser("~")
parser = argparse.ArgumentParser()
parser.add_argument("--runs", type=int, default=5)
parser.add_argument("--server", default=os.environ.get("MAILROOM_SERVER_BIN", f"{HOME}/.cache/mailroom/target/debug/server"))
parser.add_argument("--json", default="")
args = parser.parse_args()

work = tempfile.mkdtemp(prefix="mailroom-assets-")
server, base = start_server(args.server, work)
try:
    opener, jar = sign_in(base)
    html = opener.open(f"{base}/admin/smtp").read()
    assets = sorted(set(m.decode() for m in re.findall(rb'/pkg/[\w.]+\.(?:css|wasm|js)', html)))
    totals = {"identity": 0, "gzip": 0, "br": 0}
    for path in assets:
        line = f"{path}:"
        for encoding in totals:
            request = urllib.request.Request(f"{base}{path}", headers={"Accept-Encoding": encoding})
            with urllib.request.urlopen(request) as response:
                size = len(response.read())
                sent_as = response.headers.get("Content-Encoding", "identity")
                cache = response.headers.get("Cache-Control", "-")
            totals[encoding] += size
            line += f" {encoding} {size / 1024:8.1f} KiB (sent as {sent_as})"
        print(f"{line}; Cache-Control: {cache}", flush=True)
    print(f"total: raw {totals['identity'] / 1024:.1f} KiB, gzip {totals['gzip'] / 1024:.1f} KiB, "
          f"brotli {totals['br'] / 1024:.1f} KiB", flush=True)
    record(args.json, "assets", "JS + WASM + CSS on the wire (brotli accepted)", totals["br"] / 1024, "KiB", 150,
           "goal 150 KB", lower_is_better=True, raw_kib=totals["identity"] / 1024, gzip_kib=totals["gzip"] / 1024)

    cookie = next(f"{c.name}={c.value}" for c in jar)
    out = subprocess.run(["node", "hydrate.js"], cwd=f"{ROOT}/end2end", capture_output=True, text=True, check=True,
                         env=dict(os.environ, MAILROOM_URL=base, COOKIE=cookie, RUNS=str(args.runs))).stdout
    runs = json.loads(out.strip().splitlines()[-1])
    hydrated = statistics.median(run["ms"] for run in runs)
    wire = statistics.median(sum(size for path, size in run["wire"].items() if path in assets) for run in runs)
    print(f"cold load to hydrated (Chromium, {len(runs)} runs): median {hydrated:.0f} ms; "
          f"the three assets took {wire / 1024:.1f} KiB on the wire (headers included)", flush=True)
    record(args.json, "assets", "cold load to data-hydrated (Chromium)", hydrated, "ms", wire_kib=wire / 1024)
finally:
    stop(server)
