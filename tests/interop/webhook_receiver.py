#!/usr/bin/env python3
"""A scripted Standard Webhooks receiver for tests/interop/webhooks.sh.

A threaded HTTP/1.1 server on 127.0.0.1 (keep-alive capable; an idle keep-alive connection
is closed after --idle-timeout seconds, so clients meet connections the server closed).
Every POST outside /_ is a delivery: it is verified with the reference verifier of the
Standard Webhooks project (`standardwebhooks.webhooks.Webhook(secret).verify(body,
headers)`), recorded, and answered by the behaviour of its path:

  /ok           204, always
  /flaky        500 for the first two attempts of each webhook-id, then 200
  /gone         410 Gone
  /retry-after  429 with `Retry-After: 1` for the first attempt of each webhook-id, then 200
  /close        200 with `Connection: close`, and the connection is closed, every time
  /drop         200 (a keep-alive answer), then the connection is closed without notice
  /control      204 (for deliveries the test script forges itself)
  anything else 404 (still recorded)

Control routes:
  POST /_secrets   JSON {"path": "/ok", "secret": "whsec_..."}: the secret that deliveries
                   to that path are verified with (a path without one fails verification)
  GET  /records    JSON {"records": [...]}, in arrival order

Each record: seq, path, webhook_id, webhook_timestamp, webhook_signature, body (text; the
raw bytes decoded as UTF-8 with replacement, and body_utf8 says whether that was exact),
verified, error (why verification failed), tamper_rejected (the same headers with one byte
appended to the body are refused by the verifier, so verification can fail), payload (the
JSON the verifier returned), status (what we answered), t (monotonic seconds), client
(peer port: one per TCP connection), request_version, content_type, user_agent.

The first line on stdout is `webhook receiver listening on http://127.0.0.1:PORT`.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

LOCK = threading.Lock()
RECORDS = []
SECRETS = {}  # path -> whsec_ secret
ATTEMPTS = {}  # (path, webhook-id) -> attempts so far
MAX_BODY = 16 << 20


def verify(secret, body, headers):
    """Returns (verified, error, payload, tamper_rejected)."""
    if secret is None:
        return False, "no secret registered for this path", None, None
    try:
        wh = Webhook(secret)
    except Exception as e:  # a malformed secret is a failure, not a crash
        return False, "bad secret: %r" % (e,), None, None
    try:
        payload = wh.verify(body, headers)
        ok, err = True, None
    except Exception as e:  # WebhookVerificationError, or a malformed header/body
        payload, ok, err = None, False, "%s: %s" % (type(e).__name__, e)
    # The negative control on the very same headers: one extra byte in the body (a space,
    # so the JSON still parses and only the signature can refuse it).
    try:
        wh.verify(body + b" ", headers)
        tamper_rejected = False
    except Exception:
        tamper_rejected = True
    return ok, err, payload, tamper_rejected


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "webhook-receiver"
    sys_version = ""
    timeout = 1.0  # replaced from --idle-timeout; idle keep-alive connections close

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and status not in (204, 304):
            self.wfile.write(body)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data, "chunked"
                data += self.rfile.read(size)
                self.rfile.readline()
                if len(data) > MAX_BODY:
                    raise ValueError("body too large")
        length = self.headers.get("Content-Length")
        if length is None:
            return b"", "none"
        n = int(length)
        if n < 0 or n > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(n), "content-length"

    def do_GET(self):
        if self.path == "/records":
            with LOCK:
                body = json.dumps({"records": RECORDS}).encode()
            self.reply(200, body, [("Content-Type", "application/json")])
        elif self.path == "/healthz":
            self.reply(200, b"ok")
        else:
            self.reply(404, b"not found\n")

    def do_POST(self):
        t = time.monotonic()
        try:
            body, framing = self.read_body()
        except ValueError as e:
            self.close_connection = True
            self.reply(400, ("%s\n" % e).encode(), [("Connection", "close")])
            return
        if self.path == "/_secrets":
            req = json.loads(body)
            with LOCK:
                SECRETS[req["path"]] = req["secret"]
            self.reply(204)
            return

        path = self.path
        headers = {k: v for k, v in self.headers.items()}
        wid = self.headers.get("webhook-id", "")
        with LOCK:
            secret = SECRETS.get(path)
        ok, err, payload, tamper_rejected = verify(secret, body, headers)
        with LOCK:
            n = ATTEMPTS.get((path, wid), 0) + 1
            ATTEMPTS[(path, wid)] = n

        extra = []
        if path in ("/ok", "/control"):
            status = 204
        elif path == "/flaky":
            status = 500 if n <= 2 else 200
        elif path == "/gone":
            status = 410
        elif path == "/retry-after":
            status = 429 if n == 1 else 200
            if n == 1:
                extra.append(("Retry-After", "1"))
        elif path == "/close":
            status = 200
            extra.append(("Connection", "close"))
        elif path == "/drop":
            status = 200
        else:
            status = 404

        record = {
            "path": path,
            "webhook_id": wid,
            "webhook_timestamp": self.headers.get("webhook-timestamp"),
            "webhook_signature": self.headers.get("webhook-signature"),
            "body": body.decode("utf-8", "replace"),
            "body_utf8": _is_utf8(body),
            "verified": ok,
            "error": err,
            "tamper_rejected": tamper_rejected,
            "payload": payload,
            "status": status,
            "attempt": n,
            "t": t,
            "client": self.client_address[1],
            "request_version": self.request_version,
            "framing": framing,
            "content_type": self.headers.get("Content-Type"),
            "user_agent": self.headers.get("User-Agent"),
        }
        with LOCK:
            record["seq"] = len(RECORDS)
            RECORDS.append(record)
        self.reply(status, b"" if status == 204 else b"ok\n", extra)
        if path == "/drop":
            self.close_connection = True


def _is_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--idle-timeout", type=float, default=1.0)
    args = ap.parse_args()
    Handler.timeout = args.idle_timeout
    srv = Server(("127.0.0.1", args.port), Handler)
    print("webhook receiver listening on http://127.0.0.1:%d" % srv.server_address[1])
    sys.stdout.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
