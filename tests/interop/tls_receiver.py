#!/usr/bin/env python3
"""An https:// Standard Webhooks receiver for tests/interop/tls.sh.

A threaded HTTP/1.1 server on 127.0.0.1 behind TLS (Python `ssl`, the certificate chain
and key given), keep-alive capable (an idle connection is closed after --idle-timeout
seconds). Every TCP connection it accepts is counted before its handshake, so a client that
refuses the certificate still shows up: as a connection whose handshake failed, with the
error OpenSSL reported (the alert the client sent), and no request. For each connection it
records the SNI name the client sent (None for none), the ALPN protocol agreed and the TLS
version.

Every POST is a delivery: verified with the reference verifier of the Standard Webhooks
project (`standardwebhooks.webhooks.Webhook(secret).verify(body, headers)`), with the
secret registered for `https://<Host header><path>` (so the Host header has to be right
too), recorded, and answered 204.

A second, plaintext listener (127.0.0.1 too) is the control side, reachable whatever the
certificate is:
  POST /_secrets   JSON {"url": "https://127.0.0.1:PORT/hook", "secret": "whsec_..."}
  GET  /records    JSON {"records": [...], "connections": [...]}, in arrival order

The first two lines on stdout are `tls receiver listening on https://127.0.0.1:PORT` and
`control on http://127.0.0.1:PORT`.
"""

import argparse
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

LOCK = threading.Lock()
RECORDS = []
CONNECTIONS = []  # one dict per TCP connection accepted on the TLS listener
SECRETS = {}  # url -> whsec_ secret
MAX_BODY = 16 << 20
HANDSHAKE_TIMEOUT = 5.0
# The connection whose handshake runs in this thread (the SNI callback records into it).
CURRENT = threading.local()


def verify(secret, body, headers):
    """Returns (verified, error, payload, tamper_rejected)."""
    if secret is None:
        return False, "no secret registered for this URL", None, None
    try:
        wh = Webhook(secret)
    except Exception as e:
        return False, "bad secret: %r" % (e,), None, None
    try:
        payload = wh.verify(body, headers)
        ok, err = True, None
    except Exception as e:
        payload, ok, err = None, False, "%s: %s" % (type(e).__name__, e)
    try:  # the negative control: one byte more and the signature must refuse it
        wh.verify(body + b" ", headers)
        tamper_rejected = False
    except Exception:
        tamper_rejected = True
    return ok, err, payload, tamper_rejected


class HookHandler(BaseHTTPRequestHandler):
    """The TLS side: every POST is a delivery."""

    protocol_version = "HTTP/1.1"
    server_version = "tls-webhook-receiver"
    sys_version = ""
    timeout = 10.0  # replaced from --idle-timeout

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        t = time.monotonic()
        length = self.headers.get("Content-Length")
        n = int(length) if length is not None else -1
        if not 0 <= n <= MAX_BODY:
            self.close_connection = True
            self.send_response(411 if n < 0 else 413)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            return
        body = self.rfile.read(n)
        host = self.headers.get("Host", "")
        url = "https://%s%s" % (host, self.path)
        with LOCK:
            secret = SECRETS.get(url)
        ok, err, payload, tamper_rejected = verify(secret, body, dict(self.headers.items()))
        conn = self.server.conn_of(self.connection)
        record = {
            "url": url,
            "host": host,
            "path": self.path,
            "webhook_id": self.headers.get("webhook-id"),
            "webhook_timestamp": self.headers.get("webhook-timestamp"),
            "webhook_signature": self.headers.get("webhook-signature"),
            "verified": ok,
            "error": err,
            "tamper_rejected": tamper_rejected,
            "payload": payload,
            "t": t,
            "conn": conn["id"] if conn else None,
            "sni": conn["sni"] if conn else None,
            "request_version": self.request_version,
            "content_type": self.headers.get("Content-Type"),
        }
        with LOCK:
            record["seq"] = len(RECORDS)
            RECORDS.append(record)
            if conn:
                conn["requests"] += 1
        self.send_response(204)
        self.end_headers()


class TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, handler, context):
        super().__init__(addr, handler)
        self.context = context
        self.by_socket = {}  # id(SSLSocket) -> connection record

    def get_request(self):
        sock, addr = self.socket.accept()  # plain TCP: counted before any TLS
        with LOCK:
            conn = {
                "id": len(CONNECTIONS),
                "peer": addr[1],
                "t": time.monotonic(),
                "handshake": None,  # "ok", or the error
                "sni": None,
                "alpn": None,
                "version": None,
                "requests": 0,
            }
            CONNECTIONS.append(conn)
        return sock, (addr, conn)

    def conn_of(self, tls_sock):
        return self.by_socket.get(id(tls_sock))

    def finish_request(self, request, client):
        addr, conn = client
        request.settimeout(HANDSHAKE_TIMEOUT)
        CURRENT.conn = conn
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with LOCK:
                conn["handshake"] = "%s: %s" % (type(e).__name__, e)
            request.close()
            return
        with LOCK:
            conn["handshake"] = "ok"
            conn["alpn"] = tls.selected_alpn_protocol()
            conn["version"] = tls.version()
            self.by_socket[id(tls)] = conn
        try:
            self.RequestHandlerClass(tls, addr, self)
        finally:
            self.by_socket.pop(id(tls), None)
            try:
                tls.close()
            except OSError:
                pass

    def shutdown_request(self, request):
        # finish_request closed the connection (the TLS socket took the descriptor over).
        try:
            request.close()
        except OSError:
            pass


class ControlHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tls-webhook-receiver-control"
    sys_version = ""
    timeout = 5.0

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body=b""):
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 204:
            self.wfile.write(body)

    def do_GET(self):
        if self.path == "/records":
            with LOCK:
                body = json.dumps({"records": RECORDS, "connections": CONNECTIONS}).encode()
            self.reply(200, body)
        else:
            self.reply(404, b"{}")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/_secrets":
            req = json.loads(body)
            with LOCK:
                SECRETS[req["url"]] = req["secret"]
            self.reply(204)
        else:
            self.reply(404, b"{}")


class ControlServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cert", required=True, help="PEM: the leaf, then any intermediates")
    ap.add_argument("--key", required=True)
    ap.add_argument("--idle-timeout", type=float, default=10.0)
    args = ap.parse_args()
    HookHandler.timeout = args.idle_timeout

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["http/1.1"])

    def sni(_sock, name, _ctx):
        # Before the certificate is sent, so also for handshakes the client then refuses.
        with LOCK:
            CURRENT.conn["sni"] = name  # None when the client sent no server_name

    ctx.sni_callback = sni

    tls = TlsServer(("127.0.0.1", 0), HookHandler, ctx)
    control = ControlServer(("127.0.0.1", 0), ControlHandler)
    print("tls receiver listening on https://127.0.0.1:%d" % tls.server_address[1])
    print("control on http://127.0.0.1:%d" % control.server_address[1])
    sys.stdout.flush()
    threading.Thread(target=tls.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    try:
        control.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
