"""A Google-like OAuth 2.0 token endpoint for service accounts (the JWT-bearer grant, RFC 7523).

It makes the service account itself: an RSA key pair whose JSON key (in Google Cloud's format,
token_uri pointing here) is written to --key-out, and a second key for the same account that it
never trusts (--rogue-key-out). POST /token verifies the assertion's RS256 signature with the
public key and checks iss, sub, scope, aud, iat and exp the way Google does, answering Google's
own error codes. Each request's claims are appended to --log as a JSON line.
"""

import argparse
import json
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--key-out", required=True)
parser.add_argument("--rogue-key-out")
parser.add_argument("--client-email", default="mailer@mailroom-test.iam.gserviceaccount.com")
parser.add_argument("--delegate", default="", help="comma list of mailboxes the account may act as")
parser.add_argument("--token", default="ya29.service-account-token")
parser.add_argument("--skew", type=int, default=0, help="seconds this endpoint's clock is ahead")
parser.add_argument("--log")
args = parser.parse_args()

SCOPE = "https://mail.google.com/"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
delegated = {m.strip() for m in args.delegate.split(",") if m.strip()}


def new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_key(path, key, key_id, token_uri):
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    document = {
        "type": "service_account",
        "project_id": "mailroom-test",
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": args.client_email,
        "client_id": "104729000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    with open(path, "w", encoding="utf-8") as out:
        json.dump(document, out, indent=2)


trusted = new_key()
public_key = trusted.public_key()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *_):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def refuse(self, status, error, description):
        self.answer(status, {"error": error, "error_description": description})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        field = lambda name: (form.get(name) or [""])[0]
        if self.path != "/token":
            return self.refuse(404, "not_found", "no such endpoint")
        if field("grant_type") != GRANT:
            return self.refuse(400, "unsupported_grant_type", "Invalid grant_type: " + field("grant_type"))
        try:
            claims = jwt.decode(
                field("assertion"),
                public_key,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_aud": False},
            )
        except jwt.InvalidSignatureError:
            return self.refuse(400, "invalid_grant", "Invalid JWT Signature.")
        except jwt.PyJWTError as err:
            return self.refuse(400, "invalid_grant", f"Invalid JWT: {err}")
        if args.log:
            with open(args.log, "a", encoding="utf-8") as out:
                out.write(json.dumps(claims) + "\n")
        now = time.time() + args.skew
        iat, exp = claims.get("iat", 0), claims.get("exp", 0)
        if not (iat - 300 <= now <= exp) or exp - iat > 3600:
            return self.refuse(
                400,
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                "Check your iat and exp values in the JWT claim.",
            )
        if claims.get("aud") != token_uri:
            return self.refuse(400, "invalid_grant", "Invalid JWT: aud is not " + token_uri)
        if claims.get("iss") != args.client_email:
            return self.refuse(401, "invalid_client", "The OAuth client was not found.")
        if claims.get("scope") != SCOPE or claims.get("sub") not in delegated:
            return self.refuse(
                401,
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, "
                "or client not authorized for any of the scopes requested.",
            )
        self.answer(200, {"access_token": args.token, "expires_in": 3599, "token_type": "Bearer"})


server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
token_uri = f"http://127.0.0.1:{server.server_address[1]}/token"
write_key(args.key_out, trusted, "trusted-key-1", token_uri)
if args.rogue_key_out:
    write_key(args.rogue_key_out, new_key(), "deleted-key-2", token_uri)
print(f"READY {server.server_address[1]}", flush=True)
server.serve_forever()
