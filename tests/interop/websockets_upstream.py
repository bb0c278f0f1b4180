"""The hub's WebSocket client (`--upstream TOPIC=ws://...`) against Python `websockets` servers.

Run by websockets_upstream.sh as `websockets_upstream.py READY_FILE HUB_FILE`. Two
`websockets.asyncio.server.serve` servers listen on 127.0.0.1: one with
`compression="deflate"`, one with `compression=None`. Their ports go to READY_FILE
("DEFLATE_PORT PLAIN_PORT"); the script then starts the hub with
`--upstream up-deflate=ws://127.0.0.1:DEFLATE_PORT/feed?via=deflate` and the same for
`up-plain`, and writes the hub's HOST:PORT to HUB_FILE.

On its first connection each server checks the hub's handshake (the offer
`permessage-deflate; client_max_window_bits`, the extension the server agreed to or none),
sends text messages of 10 B, 1 KiB JSON, 200 KiB and 2 MiB, a fragmented message, a binary
message (the hub skips it), then a ping; the hub's `/topics/T/events?since=0` must then hold
exactly the text messages, intact and in order. The server closes with 1001: the hub answers
1001 and dials again within a second. On the second connection one more message is
published, then a message over the hub's 16 MiB limit (`ws_max_message`; compressed, a few
KiB on the wire with deflate): the hub closes it with 1009, publishes nothing of it, and
dials a third time.
"""

import asyncio
import json
import os
import random
import sys
import time

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from interop_util import TIMEOUT, Checks, get_json, short

if len(sys.argv) != 3:
    sys.exit(f"usage: {sys.argv[0]} READY_FILE HUB_FILE")
READY_FILE, HUB_FILE = sys.argv[1], sys.argv[2]
checks = Checks("websockets upstream interop")
HUB_LIMIT = 16 << 20  # the hub's ws_max_message: what its upstream client accepts
RECONNECT_WITHIN = 1.0  # seconds: the first backoff is 50-100 ms


def payloads(tag):
    """The text messages of a first connection (the fragmented one as its fragments)."""
    rnd = random.Random(tag)
    quote = {"symbol": "ACME", "tag": tag, "bid": 101.25, "ask": 101.5, "note": "ünïcödé ✓ \"q\" \\"}
    json_1k = json.dumps(quote | {"pad": "p" * (1024 - len(json.dumps(quote)) - 10)})
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \n\t\"\\/é✓"
    noisy_200k = "".join(rnd.choice(alphabet) for _ in range(200 * 1024))
    rows = [json.dumps({"seq": i, "tag": tag, "price": 100 + i % 13}) for i in range(60_000)]
    big_2m = ("[" + ",".join(rows) + "]").ljust(2 << 20)[: 2 << 20]
    fragments = [f"{tag}: frag", "mented ", "mess✓ge"]
    return [f"{tag}-tenB"[:10].ljust(10, "."), json_1k, noisy_200k, big_2m], fragments


class Upstream:
    """One `websockets` server and what it saw of the hub's connections."""

    def __init__(self, tag, compression):
        self.tag = tag
        self.compression = compression
        self.conns = []  # one dict per connection, in order of arrival
        self.arrived = asyncio.Condition()
        self.ready_for_close = asyncio.Event()  # the checks of the first connection are done
        self.ready_for_big = asyncio.Event()
        self.port = None

    async def wait_conns(self, n, timeout=10.0):
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.conns) >= n), timeout)
        return self.conns[n - 1]

    async def handler(self, ws):
        c = {
            "at": time.monotonic(),
            "path": ws.request.path,
            "request": dict((k.lower(), v) for k, v in ws.request.headers.raw_items()),
            "response": dict((k.lower(), v) for k, v in ws.response.headers.raw_items()),
            "extensions": [e.name for e in ws.protocol.extensions],
            "ws": ws,
        }
        async with self.arrived:
            self.conns.append(c)
            n = len(self.conns)
            self.arrived.notify_all()
        try:
            if n == 1:
                await self.first(ws, c)
            elif n == 2:
                await self.second(ws, c)
            else:
                await ws.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            c["closed_at"] = time.monotonic()
            rcvd = ws.protocol.close_rcvd
            c["close_rcvd"] = rcvd.code if rcvd else None

    async def first(self, ws, c):
        texts, fragments = payloads(self.tag)
        for t in texts:
            await ws.send(t)
        await ws.send(fragments)  # an iterable: one message in continuation frames
        await ws.send(b"\x00\x01binary, not published\xff")
        t0 = time.monotonic()
        c["pong"] = await asyncio.wait_for(ws.ping(b"upstream ping"), TIMEOUT)
        c["pong_after"] = time.monotonic() - t0
        await asyncio.wait_for(self.ready_for_close.wait(), 20)
        c["close_sent_at"] = time.monotonic()
        await ws.close(1001, "going away")

    async def second(self, ws, c):
        await ws.send(f"{self.tag}: after the reconnect")
        await asyncio.wait_for(self.ready_for_big.wait(), 20)
        # Over the limit by one byte, in 1 MiB fragments (the limit is the reassembled
        # message's); compressible, so with deflate it is small on the wire and the hub must
        # count what it inflates.
        c["big_sent_at"] = time.monotonic()
        try:
            await ws.send(["z" * (1 << 20)] * (HUB_LIMIT >> 20) + ["z"])
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        except ConnectionClosed:
            pass


async def events(hub, topic):
    page = await asyncio.to_thread(get_json, f"http://{hub}", f"/topics/{topic}/events?since=0")
    return [e["data"] for e in page["events"]], page


async def wait_events(hub, topic, n, timeout=10.0):
    """The topic's event data once it holds at least n events (or what it has at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        datas, page = await events(hub, topic)
        if len(datas) >= n or time.monotonic() > deadline:
            return datas, page
        await asyncio.sleep(0.02)


async def wait_hub_addr(timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(HUB_FILE) as f:
                addr = f.read().strip()
            if addr:
                return addr
        except FileNotFoundError:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no hub address in {HUB_FILE} within {timeout} s")


def check_handshake(up, c):
    tag = up.tag
    req, resp = c["request"], c["response"]
    checks.eq(f"{tag}: the hub dialed the URL's path and query", "/feed?via=" + tag, c["path"])
    checks.eq(f"{tag}: Host is the URL's authority", f"127.0.0.1:{up.port}", req.get("host"))
    checks.eq(f"{tag}: Upgrade: websocket", "websocket", req.get("upgrade", "").lower())
    checks.ok(f"{tag}: Connection holds upgrade", "upgrade" in req.get("connection", "").lower(), repr(req))
    checks.eq(f"{tag}: Sec-WebSocket-Version: 13", "13", req.get("sec-websocket-version"))
    checks.eq(
        f"{tag}: the hub offers permessage-deflate; client_max_window_bits",
        "permessage-deflate; client_max_window_bits",
        req.get("sec-websocket-extensions"),
    )
    if up.compression:
        answer = resp.get("sec-websocket-extensions", "")
        checks.ok(
            f"{tag}: the server agreed to permessage-deflate ({answer!r})",
            answer.startswith("permessage-deflate"),
            repr(resp),
        )
        checks.eq(f"{tag}: the server's connection uses permessage-deflate", ["permessage-deflate"], c["extensions"])
    else:
        checks.eq(f"{tag}: no extension agreed", None, resp.get("sec-websocket-extensions"))
        checks.eq(f"{tag}: the server's connection is plain", [], c["extensions"])


async def run_one(up, hub):
    tag, topic = up.tag, f"up-{up.tag}"
    c1 = await up.wait_conns(1)
    check_handshake(up, c1)
    texts, fragments = payloads(tag)
    want = texts + ["".join(fragments)]
    got, page = await wait_events(hub, topic, len(want))
    checks.eq(f"{tag}: the hub published the {len(want)} text messages, intact and in order", want, got)
    checks.ok(
        f"{tag}: consecutive ids, no gap",
        [e["id"] for e in page["events"]] == list(range(page["events"][0]["id"], page["events"][0]["id"] + len(got)))
        and page["gap"] is False,
        short(page["events"][:1]),
    )
    checks.ok(f"{tag}: no event name on upstream events", all(e["event"] is None for e in page["events"]))
    checks.ok(f"{tag}: the ping was answered ({c1.get('pong_after', 0) * 1000:.1f} ms)", "pong" in c1)
    # The binary message behind them: not published (nothing more arrives).
    await asyncio.sleep(0.2)
    got, _ = await events(hub, topic)
    checks.eq(f"{tag}: the binary message was not published", len(want), len(got))

    # The server goes away (1001): the hub answers and comes back.
    up.ready_for_close.set()
    c2 = await up.wait_conns(2)
    checks.eq(f"{tag}: the hub answered the close with 1001", 1001, c1.get("close_rcvd"))
    delay = c2["at"] - c1["close_sent_at"]
    handshake = c1["closed_at"] - c1["close_sent_at"]
    checks.ok(
        f"{tag}: the hub dialed again {delay * 1000:.0f} ms after the close "
        f"(closing took {handshake * 1000:.0f} ms; < {RECONNECT_WITHIN:.0f} s)",
        0 < delay < RECONNECT_WITHIN,
    )
    check_handshake(up, c2)
    want.append(f"{tag}: after the reconnect")
    got, _ = await wait_events(hub, topic, len(want))
    checks.eq(f"{tag}: the second connection's message is published after the first ones", want, got)

    # A message over the hub's limit: 1009, nothing published, a third connection.
    up.ready_for_big.set()
    c3 = await up.wait_conns(3)
    checks.eq(f"{tag}: a message of 16 MiB + 1 (17 fragments) is closed with 1009", 1009, c2.get("close_rcvd"))
    delay = c3["at"] - c2["big_sent_at"]
    checks.ok(f"{tag}: the hub dialed a third time ({delay * 1000:.0f} ms after the big message)", delay < 5)
    await asyncio.sleep(0.1)
    got, _ = await events(hub, topic)
    checks.eq(f"{tag}: nothing of the oversized message was published", want, got)


async def main():
    deflate = Upstream("deflate", "deflate")
    plain = Upstream("plain", None)
    servers = []
    for up in (deflate, plain):
        s = await serve(
            up.handler,
            "127.0.0.1",
            0,
            compression=up.compression,
            max_size=None,
            ping_interval=None,
            close_timeout=TIMEOUT,
        )
        up.port = s.sockets[0].getsockname()[1]
        servers.append(s)
    tmp = READY_FILE + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{deflate.port} {plain.port}\n")
    os.rename(tmp, READY_FILE)
    try:
        hub = await wait_hub_addr()
        # One server after the other (the other's first connection waits for its close):
        # the 16 MiB messages keep this event loop busy, which would skew the timings.
        for up in (deflate, plain):
            try:
                await run_one(up, hub)
            except Exception as exc:
                checks.crash(f"{up.tag}: the run stopped early", exc)
    finally:
        for up in (deflate, plain):
            for c in up.conns:
                try:
                    await asyncio.wait_for(c["ws"].close(1001, "done"), TIMEOUT)
                except Exception:
                    pass
        for s in servers:
            s.close()
        for s in servers:
            try:
                await asyncio.wait_for(s.wait_closed(), TIMEOUT)
            except Exception:
                pass


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as exc:  # any crash (timeout, refused connection) is a failed check
        checks.crash("the run stopped early", exc)
    sys.exit(checks.finish())
