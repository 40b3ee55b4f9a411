"""Benchmark: server-rendered pages and static files against a bare axum handler.

Starts the real server binary on a fresh mem:// database, signs in, fetches GET /login and the
signed-in GET /admin/smtp once, and starts tools/static-bytes answering each page's exact bytes.
Then wrk (2 threads, 64 connections) measures in the same run: each page from Mailroom, the same
bytes from the bare handler (the ceiling), and Mailroom's stylesheet and WASM under their hashed
names (static files should be at least as fast as the pages). Two floors say what any answer
costs on Mailroom's own stack, beside the bare handler's /login: a GET refused by the first
layer (a Host this instance does not answer to: 400), and a cross-site POST refused after every
layer but the router (the edge limit, the language link, the session layer: 403).

    python3 bench/ssr.py [--seconds 10] [--connections 64] [--json results.jsonl]
"""
import argparse
import os
import re
import subprocess
import tempfile
import urllib.error
import urllib.request

from harness import record, sign_in, start_server, stop, wrk

HOME = os.path.expanduser("~")
parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=int, default=10)
parser.add_argument("--connections", type=int, default=64)
parser.add_argument("--server", default=os.environ.get("MAILROOM_SERVER_BIN", f"{HOME}/.cache/mailroom/target/debug/server"))
parser.add_argument("--static-bytes", default=os.environ.get("MAILROOM_STATIC_BYTES_BIN", ""))
parser.add_argument("--json", default="")
args = parser.parse_args()

work = tempfile.mkdtemp(prefix="mailroom-ssr-")
server, base = start_server(args.server, work)
ceilings = []
bare_rps = {}
try:
    opener, jar = sign_in(base)
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    pages = {"/login": [], "/admin/smtp": [f"Cookie: {cookie}"]}
    admin_html = opener.open(f"{base}/admin/smtp").read()
    assert b"SMTP" in admin_html, "the signed-in page rendered"
    bodies = {"/login": urllib.request.urlopen(f"{base}/login").read(), "/admin/smtp": admin_html}
    assets = re.findall(rb'/pkg/[\w.]+\.(?:css|wasm|js)', admin_html)
    for path, headers in pages.items():
        page = os.path.join(work, path.strip("/").replace("/", "_") + ".html")
        with open(page, "wb") as out:
            out.write(bodies[path])
        result = wrk(f"{base}{path}", args.connections, args.seconds, headers)
        line = f"GET {path:12s} Mailroom {result['rps']:8.0f} req/s p50 {result['p50']:6.2f} ms p99 {result['p99']:6.2f} ms"
        ceiling = None
        if args.static_bytes:
            bare = subprocess.Popen([args.static_bytes, page, "text/html; charset=utf-8"], stdout=subprocess.PIPE, text=True)
            ceilings.append(bare)
            bare_base = bare.stdout.readline().strip().rsplit(" ", 1)[1]
            ceiling = wrk(f"{bare_base}{path}", args.connections, args.seconds)
            stop(bare)
            bare_rps[path] = ceiling["rps"]
            line += f" | same {len(bodies[path])} bytes from a bare axum handler {ceiling['rps']:8.0f} req/s p99 {ceiling['p99']:6.2f} ms"
        print(line, flush=True)
        record(args.json, "ssr", f"GET {path} ({args.connections} connections)", result["rps"], "req/s",
               ceiling and ceiling["rps"], "same bytes, bare axum handler", p50_ms=result["p50"], p99_ms=result["p99"],
               ceiling_p99_ms=ceiling and ceiling["p99"])
    cross_site = os.path.join(work, "cross_site.lua")
    with open(cross_site, "w") as out:
        out.write('wrk.method = "POST"\nwrk.headers["Origin"] = "http://evil.example"\n'
                  'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\nwrk.body = "a=b"\n')
    floors = [("GET /login with an unknown Host, refused by the first layer (400)", f"{base}/login",
               ["Host: evil.example"], None, 400),
              ("cross-site POST, refused after every layer but the router (403)", f"{base}/api/smtp_load",
               [], cross_site, 403)]
    for case, url, headers, script, status in floors:
        request = urllib.request.Request(url, data=b"a=b" if script else None, method="POST" if script else "GET",
                                         headers={"Origin": "http://evil.example"} if script else {})
        if not script:
            request.add_unredirected_header("Host", "evil.example")
        try:
            urllib.request.urlopen(request)
            raise SystemExit(f"{case}: not refused")
        except urllib.error.HTTPError as refusal:
            assert refusal.code == status, f"{case}: {refusal.code}, not {status}"
        result = wrk(url, args.connections, args.seconds, headers, script=script, refused=True)
        print(f"floor: {case} {result['rps']:8.0f} req/s p99 {result['p99']:6.2f} ms", flush=True)
        record(args.json, "ssr", f"floor: {case}", result["rps"], "req/s", bare_rps.get("/login"),
               "bare axum handler, /login's bytes", p50_ms=result["p50"], p99_ms=result["p99"])
    login = wrk(f"{base}/login", args.connections, args.seconds)
    for asset in sorted(set(assets)):
        path = asset.decode()
        result = wrk(f"{base}{path}", args.connections, args.seconds, ["Accept-Encoding: br, gzip"])
        print(f"GET {path} (br) {result['rps']:8.0f} req/s p50 {result['p50']:6.2f} ms p99 {result['p99']:6.2f} ms"
              f" | GET /login {login['rps']:8.0f} req/s", flush=True)
        record(args.json, "static", f"GET {path.rsplit('.', 1)[-1]} asset ({args.connections} connections)", result["rps"], "req/s",
               login["rps"], "GET /login in the same run", p50_ms=result["p50"], p99_ms=result["p99"])
finally:
    for process in ceilings:
        stop(process)
    stop(server)
