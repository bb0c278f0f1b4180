"""The Python `websockets` package over TLS (wss://) as a client of the hub's /topics/{t}/ws,
with HTTPS (urllib) for publishing and reading back, every connection verified against the
test CA (an ssl.SSLContext trusting that CA only).

Run by tls.sh as `tls_clients.py TLS_PORT CA_FILE`: the hub's TLS listener on 127.0.0.1,
its certificate for DNS:localhost and IP:127.0.0.1, signed by CA_FILE. Every event a
subscriber gets is one text frame {"id":N,"event":...,"data":"..."}; a text message from a
client is published to the topic (no publish token set), so it comes back to its sender and
every other subscriber, and shows in /events. Ids are relative to the topic's first id (the
hub's clock in microseconds, learned from the first publish).
"""

import json
import os
import socket
import ssl
import sys
import time
import urllib.request
from contextlib import ExitStack

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from interop_util import TIMEOUT, Checks, get_json, publish, wait_for

if len(sys.argv) != 3:
    sys.exit(f"usage: {sys.argv[0]} TLS_PORT CA_FILE")
PORT = int(sys.argv[1])
CA = sys.argv[2]
BASE = f"https://localhost:{PORT}"
checks = Checks("tls clients")
CONNECTIONS = ExitStack()


def context(alpn=("http/1.1",), cafile=CA):
    """A client context: verifies the chain and the host name (the default), against
    `cafile` only (None: Python's default store, which does not hold the test CA)."""
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


CTX = context()
# urllib (interop_util.publish/get_json) goes through this opener: https with the test CA.
urllib.request.install_opener(urllib.request.build_opener(urllib.request.HTTPSHandler(context=CTX)))


def wss(topic, query="", host="localhost", ctx=CTX):
    return CONNECTIONS.enter_context(connect(
        f"wss://{host}:{PORT}/topics/{topic}/ws{query}",
        ssl=ctx,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        max_size=4 << 20,
        compression=None,
    ))


def recv_event(ws):
    raw = ws.recv(timeout=TIMEOUT)
    if not isinstance(raw, str):
        raise AssertionError(f"expected a text message, got {type(raw).__name__}")
    d = json.loads(raw)
    if set(d) != {"id", "event", "data"}:
        raise AssertionError(f"not an event: {raw[:200]!r}")
    return (d["id"], d["event"], d["data"])


def recv_events(ws, n):
    return [recv_event(ws) for _ in range(n)]


def handshake_error(ctx, server_hostname="localhost"):
    """The error of a bare TLS handshake with the hub under `ctx` (None: it succeeded)."""
    with socket.create_connection(("127.0.0.1", PORT), timeout=TIMEOUT) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=server_hostname):
                return None
        except (ssl.SSLError, OSError) as e:
            return e


def main():
    topic = f"wss-{os.getpid()}"
    a = wss(topic)
    checks.eq("wss://localhost: handshake 101", 101, a.response.status_code)
    sock = a.socket
    checks.eq("wss://localhost: TLS 1.3, ALPN http/1.1", ("TLSv1.3", "http/1.1"),
              (sock.version(), sock.selected_alpn_protocol()))
    peer = sock.getpeercert()
    checks.eq("wss://localhost: the hub's certificate names localhost and 127.0.0.1",
              (("DNS", "localhost"), ("IP Address", "127.0.0.1")), peer.get("subjectAltName"))

    # A publish over HTTPS reaches the wss subscriber.
    first = publish(BASE, topic, 'over https\nline 2 "quoted" \\ tab\t', event="news")
    now_us = time.time_ns() // 1000
    checks.ok(f"https publish: the first id ({first}) is the Unix time in microseconds",
              now_us - 60_000_000 < first <= now_us, f"now {now_us}")
    e1 = (first, "news", 'over https\nline 2 "quoted" \\ tab\t')
    checks.eq("wss subscriber gets the https publish", [e1], recv_events(a, 1))

    # A text message over wss is published: back to its sender, and in https /events.
    a.send("over wss: ünïcödé ✓ 🎉")
    e2 = (first + 1, None, "over wss: ünïcödé ✓ 🎉")
    checks.eq("a text message sent over wss comes back as the next event", [e2], recv_events(a, 1))
    page = get_json(BASE, f"/topics/{topic}/events?since=0")
    checks.eq("https /events?since=0 shows both, exactly",
              {"events": [{"id": first, "event": "news", "data": e1[2]},
                          {"id": first + 1, "event": None, "data": e2[2]}],
               "next": first + 1, "gap": False},
              page)

    # Large messages both ways: many TLS records (16 KiB each) per WebSocket frame.
    big = "x" * 300_000 + "✓"
    a.send(big)
    e3 = (first + 2, None, big)
    checks.ok("a 300 KB message over wss comes back intact", recv_events(a, 1) == [e3])
    page = get_json(BASE, f"/topics/{topic}/events?since={first + 1}")
    checks.ok("  and https /events has it intact",
              [(e["id"], e["event"], e["data"]) for e in page["events"]] == [e3])

    # Replays over wss (one by the IP address: the certificate's IP SAN).
    b = wss(topic, "?since=0", host="127.0.0.1")
    checks.eq("wss://127.0.0.1 ?since=0 replays every event in order", [e1, e2, e3], recv_events(b, 3))
    c = wss(topic, f"?since={first}")
    checks.eq("wss ?since=<first id> replays the two after it", [e2, e3], recv_events(c, 2))
    b.send("from b")
    e4 = (first + 3, None, "from b")
    checks.eq("a message from the replaying client reaches all three, live",
              [[e4]] * 3, [recv_events(ws, 1) for ws in (a, b, c)])
    hid = publish(BASE, topic, "live over https")
    e5 = (first + 4, None, "live over https")
    checks.eq("https publish after the replay: next id, to all three", ([e5],) * 3 + (first + 4,),
              tuple(recv_events(ws, 1) for ws in (a, b, c)) + (hid,))

    checks.ok("ping over wss answered by a pong", a.ping(b"tls?").wait(TIMEOUT))

    # Refusals, client side: no trust in the test CA; a name the certificate lacks; a
    # client that only offers h2 (the hub offers http/1.1 only).
    try:
        wss(topic, ctx=context(cafile=None))
        checks.ok("wss without the test CA is refused by the client", False, "it connected")
    except ssl.SSLCertVerificationError as e:
        checks.ok(f"wss without the test CA is refused: {e.verify_message}",
                  "unable to get local issuer certificate" in e.verify_message, e)
    err = handshake_error(CTX, server_hostname="other.example")
    checks.ok(f"TLS for other.example is refused by the client: "
              f"{getattr(err, 'verify_message', err)}",
              isinstance(err, ssl.SSLCertVerificationError)
              and "Hostname mismatch" in err.verify_message, repr(err))
    err = handshake_error(context(alpn=("h2",)))
    checks.ok("a client offering only h2 gets the no_application_protocol alert",
              isinstance(err, ssl.SSLError) and "no application protocol" in str(err).lower(), repr(err))
    err = handshake_error(context(alpn=()))
    checks.eq("a client offering no ALPN at all is served", None, err)

    # Closing.
    for ws in (a, b, c):
        ws.close()
    checks.eq("clients' close over wss is answered with 1000", [1000] * 3,
              [ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else None for ws in (a, b, c)])
    wait_for(lambda: get_json(BASE, "/stats")["connections"]["websocket"] == 0, "websocket count 0")
    checks.ok("/stats over https counts no WebSocket connection after they closed", True)


if __name__ == "__main__":
    try:
        main()
    except ConnectionClosed as exc:
        checks.crash("the run stopped early (a wss connection closed)", exc)
    except Exception as exc:  # a timeout, a refused connection: a failed check
        checks.crash("the run stopped early", exc)
    finally:
        CONNECTIONS.close()
    if os.environ.get("INTEROP_NO_SUMMARY") == "1":
        sys.exit(1 if checks.failed else 0)
    sys.exit(checks.finish())
