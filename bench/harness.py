"""What every benchmark here needs: the real server binary on a fresh database, an admin
session, the form for plaintext custom settings, and the SMTP sink with its raw ceiling."""
import asyncio
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


def start_server(server_bin, work, preexec_fn=None, **env):
    """Starts the server on a free port (mem:// unless MAILROOM_DATABASE_URL is given); answers
    the process and its base URL, read from its first line."""
    environment = dict(
        os.environ,
        MAILROOM_BIND="127.0.0.1:0", MAILROOM_DATABASE_URL="mem://", MAILROOM_SECRET_KEY_FILE=f"{work}/secret.key",
        MAILROOM_ADMIN_EMAIL=ADMIN[0], MAILROOM_ADMIN_PASSWORD=ADMIN[1],
        MAILROOM_SMTP_ACTIONS_PER_MINUTE="1000000", MAILROOM_SMTP_ACTIONS_PER_MINUTE_INSTANCE="1000000",
        RUST_LOG="warn")
    environment.update(env)
    server = subprocess.Popen([server_bin], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
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


def start_sink(python, work):
    """The aiosmtpd sink (server/tests/support/smtp_peer.py) appending to WORK/mbox.jsonl; the
    process and its port."""
    sink = subprocess.Popen([python, f"{ROOT}/server/tests/support/smtp_peer.py", "--mbox", f"{work}/mbox.jsonl"],
                            stdout=subprocess.PIPE, text=True)
    return sink, int(sink.stdout.readline().split()[1])


def arrivals(work):
    """How many messages the sink has accepted."""
    try:
        with open(f"{work}/mbox.jsonl") as mbox:
            return sum(1 for _ in mbox)
    except FileNotFoundError:
        return 0


async def raw_ceiling(port, connections, total):
    """The sink's own rate: MAIL/RCPT/DATA pipelined over `connections` persistent connections."""
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
