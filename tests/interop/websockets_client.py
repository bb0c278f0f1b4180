"""The Python `websockets` package as a real client of the hub's /topics/{t}/ws.

Run by websockets_client.sh with the hub's HOST:PORT (hub started with --history-events 50).
Every event a subscriber gets is one text frame {"id":N,"event":...,"data":"..."}; a text
message from a client is published to the topic, so every subscriber sees its own and the
others' messages, and HTTP publishes, in one order with consecutive ids. The topic's first
id is the hub's clock in microseconds (learned from the first event); every other id is
checked relative to it, and the `{"gap":true,"oldest":M}` message by the hub's gap rule:
after ?since=N > 0 exactly when the first event replayed is not N + 1, from 0 only when the
history was trimmed.
"""

import json
import os
import sys
import time
from contextlib import ExitStack

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from interop_util import TIMEOUT, Checks, base_from_argv, get_json, publish, wait_for

BASE = base_from_argv()
WS_BASE = "ws://" + BASE.removeprefix("http://")
HISTORY = 50  # the hub's --history-events
checks = Checks("websockets interop")
# Every connection is entered here, so all are closed however the run ends.
CONNECTIONS = ExitStack()


def ws_connect(topic, query=""):
    return CONNECTIONS.enter_context(connect(
        f"{WS_BASE}/topics/{topic}/ws{query}",
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        max_size=4 << 20,
        compression=None,
    ))


def recv_json(ws):
    """The next message: must be a text frame holding one JSON object; returns its pairs."""
    raw = ws.recv(timeout=TIMEOUT)
    if not isinstance(raw, str):
        raise AssertionError(f"expected a text message, got {type(raw).__name__}")
    return json.loads(raw, object_pairs_hook=list)


def recv_event(ws):
    """The next event as (id, event, data); the keys must come as id, event, data."""
    pairs = recv_json(ws)
    keys = [k for k, _ in pairs]
    if keys != ["id", "event", "data"]:
        raise AssertionError(f"event keys {keys}, expected ['id', 'event', 'data']")
    d = dict(pairs)
    return (d["id"], d["event"], d["data"])


def recv_events(ws, n):
    return [recv_event(ws) for _ in range(n)]


def close_code_after(ws, send):
    """Sends `send` and returns the close code the server then closes with (or None)."""
    ws.send(send)
    try:
        while True:
            ws.recv(timeout=TIMEOUT)
    except ConnectionClosed as e:
        return e.rcvd.code if e.rcvd else None


def main():
    topic = f"chat-{os.getpid()}"
    a = ws_connect(topic)
    b = ws_connect(topic)
    checks.eq("handshake: 101 for both clients", (101, 101), (a.response.status_code, b.response.status_code))

    # 1. Each client sees its own and the other's messages, and an HTTP publish.
    a.send("hello from A")
    got = recv_events(a, 1)
    first = got[0][0]  # the topic's first id: the hub's clock in microseconds
    now_us = time.time_ns() // 1000
    checks.ok(
        f"the first id ({first}) is the Unix time in microseconds",
        isinstance(first, int) and now_us - 60_000_000 < first <= now_us,
        f"now {now_us}",
    )
    want = [(first, None, "hello from A")]
    checks.eq("A sees its own message", want, got)
    checks.eq("B sees A's message", want, recv_events(b, 1))
    b.send("hi from B: ünïcödé ✓ 🎉")
    want = [(first + 1, None, "hi from B: ünïcödé ✓ 🎉")]
    checks.eq("B sees its own message (unicode)", want, recv_events(b, 1))
    checks.eq("A sees B's message (unicode)", want, recv_events(a, 1))
    hid = publish(BASE, topic, 'over HTTP\nline 2 "quoted" \\ tab\t', event="news")
    want = [(first + 2, "news", 'over HTTP\nline 2 "quoted" \\ tab\t')]
    checks.eq("HTTP POST got the next id", first + 2, hid)
    checks.eq("A and B see the HTTP-published event", (want, want), (recv_events(a, 1), recv_events(b, 1)))
    three = [(first, None, "hello from A"), (first + 1, None, "hi from B: ünïcödé ✓ 🎉")] + want

    # 1b. Replays while nothing was trimmed: from 0 and from inside the log, no gap.
    z = ws_connect(topic, "?since=0")
    checks.eq("?since=0 with nothing trimmed: every event, no gap message", three, recv_events(z, 3))
    z.close()
    z = ws_connect(topic, f"?since={first}")
    checks.eq("?since=<first id> replays the two after it, no gap message", three[1:], recv_events(z, 2))
    z.close()

    # 2. A burst from both clients and HTTP, interleaved: one order for everyone.
    sent_a, sent_b, sent_http = [], [], []
    for i in range(25):
        sent_a.append(f"a{i}")
        a.send(f"a{i}")
        sent_b.append(f"b{i}")
        b.send(f"b{i}")
        if i % 5 == 0:
            sent_http.append(f"h{i}")
            publish(BASE, topic, f"h{i}")
    n = len(sent_a) + len(sent_b) + len(sent_http)
    got_a, got_b = recv_events(a, n), recv_events(b, n)
    checks.eq("burst: consecutive ids on A", list(range(first + 3, first + 3 + n)), [e[0] for e in got_a])
    checks.eq("burst: B sees exactly what A sees, in the same order", got_a, got_b)
    datas = [e[2] for e in got_a]
    checks.eq("burst: A's messages in the order sent", sent_a, [d for d in datas if d[0] == "a"])
    checks.eq("burst: B's messages in the order sent", sent_b, [d for d in datas if d[0] == "b"])
    checks.eq("burst: HTTP events in the order sent", sent_http, [d for d in datas if d[0] == "h"])

    # 3. A fragmented message (continuation frames) and a large one.
    a.send(["frag", "mented ", "message"])
    big = "x" * 200_000 + "✓"
    b.send(big)
    last = first + 2 + n
    want = [(last + 1, None, "fragmented message"), (last + 2, None, big)]
    checks.ok("fragmented and 200 KB messages reach A intact", recv_events(a, 2) == want)
    checks.ok("fragmented and 200 KB messages reach B intact", recv_events(b, 2) == want)
    last += 2
    everything = three + got_a + want

    def after(cursor):
        """Every event published so far with an id greater than `cursor`, in order."""
        return [e for e in everything if e[0] > cursor]

    # 4. Ping: answered with a pong.
    checks.ok("ping answered by a pong", a.ping(b"are you there").wait(TIMEOUT))

    # 5. ?since= replays kept events after N, then goes live.
    page = get_json(BASE, f"/topics/{topic}/events?since={last - 40}")
    checks.eq(
        "/events agrees with what the WebSocket clients saw",
        after(last - 40),
        [(e["id"], e["event"], e["data"]) for e in page["events"]],
    )
    c = ws_connect(topic, f"?since={last - 40}")
    checks.eq("?since=N replays the kept events after N in order", after(last - 40), recv_events(c, 40))
    d = ws_connect(topic, f"?since={last}")
    e0 = ws_connect(topic, "?since=0")
    oldest = last - HISTORY + 1
    first = recv_json(e0)
    checks.eq(
        "?since=0 with history trimmed: a gap message first",
        [("gap", True), ("oldest", oldest)],
        first,
    )
    checks.eq("  then every kept event", after(oldest - 1), recv_events(e0, HISTORY))
    nogap = ws_connect(topic, f"?since={oldest - 1}")
    checks.eq(
        "?since=<just before the oldest kept>: no gap message, every kept event",
        after(oldest - 1),
        recv_events(nogap, HISTORY),
    )
    nogap.close()
    old = ws_connect(topic, f"?since={oldest - 2}")
    checks.eq("?since=<a trimmed id>: a gap message first", [("gap", True), ("oldest", oldest)], recv_json(old))
    checks.eq("  then every kept event", after(oldest - 1), recv_events(old, HISTORY))
    old.close()
    other = ws_connect(topic, "?since=41")
    checks.eq(
        "?since=41 (another id range: before a restart): a gap message first",
        [("gap", True), ("oldest", oldest)],
        recv_json(other),
    )
    checks.eq("  then every kept event", after(oldest - 1), recv_events(other, HISTORY))
    other.close()
    hid = publish(BASE, topic, "live after replay")
    want = [(last + 1, None, "live after replay")]
    checks.eq("a replaying client goes on live without a gap or duplicate", want, recv_events(c, 1))
    checks.eq("?since=<last id> replays nothing, then live", want, recv_events(d, 1))
    checks.eq("  the gap client too", want, recv_events(e0, 1))
    checks.eq("  and the first subscribers", (want, want), (recv_events(a, 1), recv_events(b, 1)))
    last += 1
    ahead = ws_connect(topic, f"?since={last + 100}")
    checks.eq(
        "?since= ahead of the last id: gap from the oldest kept event",
        [("gap", True), ("oldest", last - HISTORY + 1)],
        recv_json(ahead),
    )
    everything += want
    checks.eq("  then the kept events", after(last - HISTORY), recv_events(ahead, HISTORY))

    # 6. Closing: a binary message closes with 1003, an oversized one with 1009, a client
    # close is echoed with 1000.
    bad = ws_connect(topic)
    checks.eq("a binary message closes with 1003", 1003, close_code_after(bad, b"\x00\x01"))
    huge = ws_connect(topic, f"?since={last}")
    checks.eq("a text message over 1 MiB closes with 1009", 1009, close_code_after(huge, "y" * ((1 << 20) + 1)))
    for ws in (a, b, c, d, e0, ahead):
        ws.close()
    checks.eq(
        "clients' close is answered with 1000",
        [1000] * 6,
        [ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else None for ws in (a, b, c, d, e0, ahead)],
    )
    wait_for(lambda: get_json(BASE, "/stats")["connections"]["websocket"] == 0, "websocket count 0")
    checks.ok("/stats counts no WebSocket connection after they closed", True)
    page = get_json(BASE, f"/topics/{topic}/events?since={last}")
    checks.eq("nothing was published by the refused messages", [], page["events"])


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # any crash (timeout, refused connection) is a failed check
        checks.crash("the run stopped early", exc)
    finally:
        CONNECTIONS.close()
    sys.exit(checks.finish())
