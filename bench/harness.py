"""What every benchmark here needs: the real server binary on a fresh database, an admin
session, and the form for plaintext custom settings."""
import http.cookiejar
import os
import subprocess
import urllib.parse
import urllib.request

ADMIN = ("admin@example.com", "bench admin password")


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


def plain_form(port, mode="Custom"):
    """Custom settings for a plaintext SMTP server on 127.0.0.1 without AUTH."""
    return {
        "mode": mode, "host": "127.0.0.1", "port": str(port), "from": "Mailroom <mail@example.com>",
        "tls_enabled": False, "tls_version": "Tls12", "tls_mode": "StartTls", "auth_type": "Basic",
        "username": "", "password": "", "client_id": "", "client_secret": "", "token_url": "", "scope": "",
    }
