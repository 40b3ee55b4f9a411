"""What every benchmark here needs: the real server binary on a fresh database, an admin
session, the form for plaintext custom settings, and the SMTP sink with its raw ceiling."""
import asyncio
import json
import http.cookiejar
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

ADMIN = ("admin@example.com", "bench admin password")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_server(server_bin, work, preexec_fn=None, log=None, **env):
    """Starts the server on a free port (mem:// unless MAILROOM_DATABASE_URL is given); answers
    the process and its base URL, read from its first line. Its stderr goes to `log` if given."""
    environment = dict(
        os.environ,
        MAILROOM_BIND="127.0.0.1:0", MAILROOM_DATABASE_URL="mem://", MAILROOM_SECRET_KEY_FILE=f"{work}/secret.key",
        MAILROOM_ADMIN_EMAIL=ADMIN[0], MAILROOM_ADMIN_PASSWORD=ADMIN[1],
        MAILROOM_SMTP_ACTIONS_PER_MINUTE="1000000", MAILROOM_SMTP_ACTIONS_PER_MINUTE_INSTANCE="1000000",
        RUST_LOG="warn")
    environment.update(env)
    stderr = open(log, "w") if log else subprocess.DEVNULL
    server = subprocess.Popen([server_bin], stdout=subprocess.PIPE, stderr=stderr, text=True,
                              env=environment, preexec_fn=preexec_fn)
    return server, server.stdout.readline().strip().rsplit(" ", 1)[1]


def sign_in(base):
    """An opener holding the admin's session cookie, and its cookie jar."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    body = urllib.parse.urlencode({"email": ADMIN[0], "password": ADMIN[1]}).encode()
    opener.open(urllib.request.Request(f"{base}/api/login", data=body))
    return opener, jar


def post(opener, url, data, **headers):
    """POST as the admin page does: with a session cookie the server wants a same-site Origin
    (server/src/origin.rs)."""
    origin = "/".join(url.split("/")[:3])
    return opener.open(urllib.request.Request(url, data=data, headers={"Origin": origin, **headers}))


def plain_form(port, mode="Custom"):
    """Custom settings for a plaintext SMTP server on 127.0.0.1 without AUTH."""
    return {
        "mode": mode, "host": "127.0.0.1", "port": str(port), "from": "Mailroom <mail@example.com>",
        "tls_enabled": False, "tls_version": "Tls12", "tls_mode": "StartTls", "auth_type": "Basic",
        "username": "", "password": "", "client_id": "", "client_secret": "", "token_url": "", "scope": "",
    }


def free_port():
    """A port nothing listens on now (the system's pick for port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process, seconds=15):
    """SIGTERM, then SIGKILL if the process has not exited within `seconds`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(name, url, process, log, seconds):
    """Until GET url answers 200; exits with the end of `log` if the process ends or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            with open(log, errors="replace") as text:
                tail = text.read()[-3000:]
            why = "exited" if process.poll() is not None else f"was not ready within {seconds} s"
            sys.exit(f"{name} {why}; the end of {log}:\n{tail}")
        time.sleep(0.2)


def start_sink(python, work, lean=False, pipelining=False):
    """The aiosmtpd sink (server/tests/support/smtp_peer.py) appending to WORK/mbox.jsonl; the
    process and its port. `lean`: it records only Message-ID and size (no MIME parsing), so
    the sink is not what a throughput benchmark measures, and keeps the first messages it takes
    in WORK/samples (see `sample_message`); `pipelining`: it offers PIPELINING."""
    samples = []
    if lean:
        os.makedirs(f"{work}/samples", exist_ok=True)
        samples = ["--lean", "--samples", f"{work}/samples"]
    sink = subprocess.Popen([python, f"{ROOT}/server/tests/support/smtp_peer.py", "--mbox", f"{work}/mbox.jsonl"]
                            + samples + (["--pipelining"] if pipelining else []),
                            stdout=subprocess.PIPE, text=True)
    return sink, int(sink.stdout.readline().split()[1])


class Mbox:
    """The sink's mbox, read as it grows: each line's Message-ID and when it was first seen."""

    def __init__(self, path):
        self.path, self.offset, self.ids, self.seen = path, 0, [], []

    def read(self):
        """Reads what was appended; answers the number of distinct Message-IDs."""
        try:
            with open(self.path, "rb") as mbox:
                mbox.seek(self.offset)
                data = mbox.read()
        except FileNotFoundError:
            return 0
        complete = data[:data.rfind(b"\n") + 1]  # a line being written waits for the next read
        self.offset += len(complete)
        now = time.perf_counter()
        for line in complete.splitlines():
            self.ids.append(json.loads(line)["message_id"])
            self.seen.append(now)
        return len(set(self.ids))


def sample_message(work, size):
    """Of the messages a lean sink kept in WORK/samples, the one whose size is nearest `size`;
    None if it kept none."""
    kept = [open(f"{work}/samples/{name}", "rb").read() for name in sorted(os.listdir(f"{work}/samples"))] \
        if os.path.isdir(f"{work}/samples") else []
    return min(kept, key=lambda message: abs(len(message) - size), default=None)


async def raw_ceiling(port, connections, total, size=0, message=None):
    """The sink's own rate: MAIL/RCPT/DATA pipelined over `connections` persistent connections.
    Each message is `message` (bytes as a sink received them: one Mailroom sent, so the sink
    parses the same lines), else `size` bytes of 76-character text lines."""
    if message is not None:
        message = message if message.endswith(b"\r\n") else message + b"\r\n"
        # Dot-stuffed again, as on the wire.
        body = b"".join(b"." + line if line.startswith(b".") else line
                        for line in message.splitlines(keepends=True)) + b".\r\n"
    else:
        head = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: raw\r\n\r\n"
        lines = max(0, size - len(head)) // 78
        body = head + b"".join(b"x" * 76 + b"\r\n" for _ in range(lines)) + b"hello\r\n.\r\n"

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


def cpu_seconds(pid):
    """CPU time (user + system, every thread) a process has used so far, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def record(path, bench, case, value, unit, ceiling=None, ceiling_name="", lower_is_better=False, **extra):
    """Appends one result to the JSON-lines file `path` (bench/all's table), if given. `ratio` is
    value / ceiling (ceiling / value when lower is better), so 1.0 means at the ceiling."""
    if not path:
        return
    ratio = None
    if ceiling:
        ratio = (ceiling / value if lower_is_better else value / ceiling) if value else 0.0
    with open(path, "a") as out:
        out.write(json.dumps(dict(bench=bench, case=case, value=value, unit=unit, ceiling=ceiling,
                                  ceiling_name=ceiling_name, ratio=ratio, **extra)) + "\n")


def wrk(url, connections=64, seconds=10, headers=(), script=None, refused=False):
    """wrk's requests/s and latency percentiles (ms) for GET url (or what the Lua `script` sends):
    {'rps', 'p50', 'p99'}. Every answer must be a 2xx, or with `refused` every one a refusal."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for header in headers:
        command += ["-H", header]
    if script:
        command += ["-s", script]
    out = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    result, answers, not_2xx = {}, None, 0
    for line in out.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(words[1])
        elif len(words) == 2 and words[0] in ("50%", "99%"):
            result["p" + words[0].rstrip("%")] = to_ms(words[1])
        elif "requests in" in line:
            answers = int(words[0])
        elif "Non-2xx" in line:
            not_2xx = int(words[-1])
    if not refused and not_2xx:
        sys.exit(f"wrk got {not_2xx} errors from {url}")
    if refused and not_2xx != answers:
        sys.exit(f"wrk expected only refusals from {url}: {not_2xx} of {answers}")
    return result


def to_ms(text):
    for suffix, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)
