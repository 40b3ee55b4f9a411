"""An independent SMTP server for Mailroom's tests, built on aiosmtpd.

Prints "READY <port>" once listening; appends every accepted message to --mbox as JSON lines.
Modes: plaintext, STARTTLS or implicit TLS; AUTH PLAIN/LOGIN (or LOGIN only), or XOAUTH2
checking the bearer token; optional TLS 1.2 cap, sender/recipient rejection, a custom 535 and
PIPELINING (each record says whether the client pipelined MAIL with RCPT and DATA).
"""
import argparse
import asyncio
import base64
import email
import email.policy
import json
import re
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--mode", choices=["plain", "starttls", "implicit"], default="plain")
parser.add_argument("--cert")
parser.add_argument("--key")
parser.add_argument("--tls12-only", action="store_true")
parser.add_argument("--client-ca", help="require a client certificate signed by this CA (mutual TLS)")
parser.add_argument("--auth", default="", help="comma list: PLAIN,LOGIN,XOAUTH2 (empty: no AUTH)")
parser.add_argument("--user", default="mailer")
parser.add_argument("--password", default="secret")
parser.add_argument("--token", default="", help="the XOAUTH2 bearer token to accept")
parser.add_argument("--auth-fail-text", default="")
parser.add_argument("--reject-sender", default="")
parser.add_argument("--reject-recipient", default="")
parser.add_argument("--tempfail-first", type=int, default=0, help="answer --tempfail-reply to the first N MAIL commands")
parser.add_argument("--tempfail-reply", default="421 4.7.0 Try again later, closing connection")
parser.add_argument("--pipelining", action="store_true", help="advertise PIPELINING (RFC 2920) in the EHLO reply")
parser.add_argument("--lean", action="store_true",
                    help="record only each message's Message-ID and size (a benchmark sink: no MIME parsing)")
parser.add_argument("--samples", default="",
                    help="with --lean: keep the first 8 messages as they arrived (SAMPLES/0.eml, ...), so a "
                         "benchmark's raw client can send the sink the same bytes")
parser.add_argument("--mbox", required=True)
args = parser.parse_args()

# XOAUTH2 initial responses are long.
SMTP.command_size_limit = 65536
SMTP.line_length_limit = 65536

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)

mechanisms = [m.strip().upper() for m in args.auth.split(",") if m.strip()]


class Handler:
    tempfails_left = args.tempfail_first
    samples_kept = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname  # what aiosmtpd does itself when no handler answers EHLO
        if args.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # Pipelined: the client wrote RCPT (and DATA) with MAIL, so they wait in the read
        # buffer now, before MAIL is answered.
        envelope.pipelined = bytes(server._reader._buffer).startswith(b"RCPT")
        if Handler.tempfails_left > 0:
            Handler.tempfails_left -= 1
            return args.tempfail_reply
        if args.reject_sender and address == args.reject_sender:
            return "550 5.7.1 Sender address rejected: not owned by user"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if args.reject_recipient and address == args.reject_recipient:
            return "550 5.1.1 Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if args.lean:
            found = MESSAGE_ID.search(envelope.original_content or b"")
            record = {"message_id": found.group(1).decode() if found else "", "size": len(envelope.original_content or b"")}
            with open(args.mbox, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
            if args.samples and Handler.samples_kept < 8:
                with open(f"{args.samples}/{Handler.samples_kept}.eml", "wb") as out:
                    out.write(envelope.original_content or b"")
                Handler.samples_kept += 1
            return "250 2.0.0 Message accepted for delivery"
        parsed = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        plain = parsed.get_body(preferencelist=("plain",))
        record = {
            "message_id": parsed.get("Message-ID", ""),
            "subject": parsed.get("Subject", ""),
            "text": plain.get_content() if plain is not None else "",
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "pipelined": getattr(envelope, "pipelined", False),
        }
        with open(args.mbox, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        return "250 2.0.0 Message accepted for delivery"

    async def auth_XOAUTH2(self, server, words):
        if "XOAUTH2" not in mechanisms:
            return AuthResult(success=False, handled=False)
        blob = words[1] if len(words) > 1 else ""
        if not blob:
            blob = (await server.challenge_auth("", encode_to_b64=False)).decode()
        try:
            text = base64.b64decode(blob).decode()
            fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
        except Exception:
            fields = {}
        if fields.get("user") == args.user and fields.get("auth") == f"Bearer {args.token}":
            return AuthResult(success=True, auth_data=fields.get("user"))
        error = json.dumps({"status": "401", "schemes": "Bearer", "scope": "https://mail.example/"})
        await server.challenge_auth(error.encode(), encode_to_b64=True)
        return AuthResult(success=False, handled=False)


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == args.user
        and auth_data.password.decode() == args.password
    )
    if ok:
        return AuthResult(success=True)
    if args.auth_fail_text:
        return AuthResult(success=False, handled=False, message=args.auth_fail_text)
    return AuthResult(success=False, handled=False)


def tls_context():
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    if args.tls12_only:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if args.client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(args.client_ca)
    return context


async def main():
    context = tls_context() if args.mode != "plain" else None
    excluded = [m for m in ("PLAIN", "LOGIN") if m not in mechanisms]

    def factory():
        return SMTP(
            Handler(),
            hostname="peer.test",
            ident="Mailroom test peer",
            tls_context=context if args.mode == "starttls" else None,
            require_starttls=args.mode == "starttls",
            auth_required=bool(mechanisms),
            auth_require_tls=args.mode == "starttls",
            authenticator=authenticator,
            auth_exclude_mechanism=excluded,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory, "127.0.0.1", args.port, ssl=context if args.mode == "implicit" else None
    )
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


asyncio.run(main())
