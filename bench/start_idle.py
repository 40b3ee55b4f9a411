"""Benchmark: start-up time and idle memory with the embedded database.

Starts the real server binary on a fresh on-disk surrealkv:// database (the default kind of
deployment) and polls GET /healthz every 2 ms from the moment the process is spawned until it
answers 200; then lets the server idle for 5 s and reads its resident set (VmRSS, and its anonymous
and file-backed parts). Five fresh starts; the median of each.

    python3 bench/start_idle.py [--runs 5] [--json results.jsonl]
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request

from harness import ADMIN, free_port, record, stop

HOME = os.path.expanduser("~")
parser = argparse.ArgumentParser()
parser.add_argument("--runs", type=int, default=5)
parser.add_argument("--idle", type=float, default=5.0)
parser.add_argument("--server", default=os.environ.get("MAILROOM_SERVER_BIN", f"{HOME}/.cache/mailroom/target/debug/server"))
parser.add_argument("--json", default="")
args = parser.parse_args()


def rss_mb(pid):
    """VmRSS, and the two parts it is made of: RssAnon (the heap, the stacks: memory the process
    costs) and RssFile (pages of the executable's code and data mapped from the page cache, shared
    with it and dropped by the kernel under pressure)."""
    parts = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                parts[key] = int(rest.split()[0]) / 1024
    return parts.get("VmRSS", 0.0), parts.get("RssAnon", 0.0), parts.get("RssFile", 0.0)


starts, idles, anons, files = [], [], [], []
for _ in range(args.runs):
    work = tempfile.mkdtemp(prefix="mailroom-start-")
    port = free_port()
    env = dict(os.environ, MAILROOM_BIND=f"127.0.0.1:{port}", MAILROOM_DATABASE_URL=f"surrealkv://{work}/db",
               MAILROOM_SECRET_KEY_FILE=f"{work}/secret.key", MAILROOM_ADMIN_EMAIL=ADMIN[0],
               MAILROOM_ADMIN_PASSWORD=ADMIN[1], RUST_LOG="warn")
    began = time.perf_counter()
    server = subprocess.Popen([args.server], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.perf_counter() - began > 60:
                raise SystemExit("the server did not become healthy within 60 s")
            time.sleep(0.002)
        starts.append((time.perf_counter() - began) * 1000)
        time.sleep(args.idle)
        rss, anon, file = rss_mb(server.pid)
        idles.append(rss)
        anons.append(anon)
        files.append(file)
    finally:
        stop(server)
start, idle = statistics.median(starts), statistics.median(idles)
anon, file = statistics.median(anons), statistics.median(files)
print(f"start to first healthy /healthz: median {start:.0f} ms (runs: {', '.join(f'{s:.0f}' for s in starts)}); "
      f"idle RSS after {args.idle:.0f} s: median {idle:.1f} MB (anonymous {anon:.1f} MB, "
      f"mapped from the executable and libraries {file:.1f} MB)", flush=True)
record(args.json, "start", "process start to first 200 from /healthz (embedded surrealkv)", start, "ms", 1000,
       "goal 1 s", lower_is_better=True)
record(args.json, "start", "idle RSS (embedded surrealkv)", idle, "MB", 60, "goal 60 MB", lower_is_better=True,
       anonymous_mb=round(anon, 1), file_mb=round(file, 1))
