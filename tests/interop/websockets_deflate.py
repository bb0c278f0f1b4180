"""permessage-deflate (RFC 7692) against the hub and the echo example.

Run by websockets_deflate.sh as `websockets_deflate.py HUB_ADDR ECHO_ADDR ECHO_PID` (both
servers with their defaults: the server accepts permessage-deflate without context
takeover; messages of 128 bytes or more go out compressed, smaller ones plain).

Two clients:
* the Python `websockets` package with `compression="deflate"` (and `compression=None`
  beside it), for what a real client library sees;
* `Raw`, a small client over `socket` written here, for what is on the wire: the RSV1 bit of
  each frame, the compressed payload (inflated here with `zlib`), and frames no library
  sends (a decompression bomb, corrupt DEFLATE data, RSV1 on a Ping).

Sections: the hub (one topic with deflate and plain subscribers at once, events published
over HTTP and over WebSocket, 10 B to 1 MiB), the echo server through `websockets` (sizes,
fragments, window sizes), the echo server through `Raw` (the wire, the negotiation and the
limits: 1009, 1007, 1002).
"""

import base64
import hashlib
import json
import os
import random
import socket
import sys
import time
import zlib
from contextlib import ExitStack

from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect

from interop_util import TIMEOUT, Checks, get_json, publish, short

if len(sys.argv) != 4:
    sys.exit(f"usage: {sys.argv[0]} HUB_HOST:PORT ECHO_HOST:PORT ECHO_PID")
HUB, ECHO, ECHO_PID = sys.argv[1], sys.argv[2], int(sys.argv[3])
HUB_BASE = "http://" + HUB
checks = Checks("websockets-deflate interop")
CONNECTIONS = ExitStack()  # every connection, closed however the run ends

# What the server answers to an offer without window parameters.
PLAIN_ANSWER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
MIN_COMPRESSED = 128  # the server's threshold: smaller messages go plain
ECHO_LIMIT = 16 << 20  # examples/echo.rs: ws_max_message
HUB_LIMIT = 1 << 20  # examples/hub.rs: WS_MAX_MESSAGE
TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.1: removed by the sender, added back here


# --- DEFLATE helpers ---------------------------------------------------------------------

def deflate(data, wbits=15, level=6):
    """data as one permessage-deflate payload: raw DEFLATE, sync-flushed, tail removed."""
    c = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if out.endswith(TAIL) else out


def zeros_payload(n):
    """The payload of n zero bytes, made fast: fresh-compressor segments of 1 MiB each
    (every segment refers only to its own output, so they chain into one valid stream)."""
    mib = deflate(bytes(1 << 20), level=9) + TAIL  # ends on a byte boundary, not final
    whole, rest = divmod(n, 1 << 20)
    return mib * whole + deflate(bytes(rest), level=9)


def inflate(payload, wbits=15, strict=False):
    """A received payload inflated (§7.2.2). strict: 64 bytes of output per call, so a
    back-reference further than 2^wbits (+64) fails ("invalid distance too far back"):
    the check that the sender kept to the window it agreed to."""
    d = zlib.decompressobj(-wbits)
    if not strict:
        return d.decompress(payload + TAIL) + d.flush()
    out, buf = [], payload + TAIL
    while True:
        o = d.decompress(buf, 64)
        out.append(o)
        buf = d.unconsumed_tail
        if not buf and not o:
            return b"".join(out)


def mask(data, key):
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


# --- the raw client ----------------------------------------------------------------------

class Closed(Exception):
    """The server sent a Close frame (code, reason) or hung up (code None, reason 'EOF')."""

    def __init__(self, code, reason):
        super().__init__(f"closed {code} {reason!r}")
        self.code, self.reason = code, reason


class Frame:
    def __init__(self, fin, rsv, opcode, payload):
        self.fin, self.rsv, self.opcode, self.payload = fin, rsv, opcode, payload

    @property
    def rsv1(self):
        return bool(self.rsv & 4)


class Raw:
    """A WebSocket client over a plain socket: the upgrade, frames as they are on the wire."""

    def __init__(self, addr, path="/", extensions=()):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        CONNECTIONS.callback(self.sock.close)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
        for e in extensions:
            req += f"Sec-WebSocket-Extensions: {e}\r\n"
        self.sock.sendall((req + "\r\n").encode())
        self.buf = bytearray()
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = [(n.strip().lower(), v.strip()) for n, v in (ln.split(":", 1) for ln in lines[1:])]
        want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        if self.status != 101 or self.header("sec-websocket-accept") != want.decode():
            raise AssertionError(f"upgrade answered {lines[0]!r}, headers {self.headers}")

    def header(self, name):
        vals = [v for n, v in self.headers if n == name]
        return ", ".join(vals) if vals else None

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise Closed(None, "EOF")
        self.buf += chunk

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_frame(self):
        b0, b1 = self._take(2)
        if b1 & 0x80:
            raise AssertionError("the server masked a frame (RFC 6455 §5.1)")
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(self._take(2), "big")
        elif n == 127:
            n = int.from_bytes(self._take(8), "big")
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, self._take(n))

    def send_frame(self, opcode, payload, fin=True, rsv=0):
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        key = os.urandom(4)
        self.sock.sendall(head + key + mask(payload, key))

    def send_compressed(self, opcode, data, wbits=15):
        self.send_frame(opcode, deflate(data, wbits), rsv=4)

    def read_message(self):
        """The next data message: (first frame, payload of all its frames, control frames
        seen in between). A Close raises Closed."""
        first, parts, controls = None, [], []
        while True:
            f = self.read_frame()
            if f.opcode == 8:
                self._answer_close(f)
            if f.opcode in (9, 10):
                controls.append(f)
                continue
            if first is None:
                first = f
            parts.append(f.payload)
            if f.fin:
                return first, b"".join(parts), controls

    def _answer_close(self, f):
        code = int.from_bytes(f.payload[:2], "big") if len(f.payload) >= 2 else None
        reason = f.payload[2:].decode("utf-8", "replace")
        try:
            self.send_frame(8, f.payload[:2])
        except OSError:
            pass
        raise Closed(code, reason)

    def close_code(self):
        """Reads until the server closes; returns its close code (None: it sent none)."""
        try:
            while True:
                f = self.read_frame()
                if f.opcode == 8:
                    self._answer_close(f)
        except Closed as c:
            return c.code
        except OSError as e:  # reset after a close it sent before we read: report it
            return f"socket error {e}"

    def text(self):
        """The next message as bytes, inflated when RSV1 says so; with the first frame."""
        first, payload, _ = self.read_message()
        return first, (inflate(payload) if first.rsv1 else payload)

    def close(self):
        try:
            self.send_frame(8, (1000).to_bytes(2, "big"))
            self.close_code()
        except (OSError, Closed):
            pass
        self.sock.close()


def ws(addr, path="/", **kw):
    kw.setdefault("max_size", 32 << 20)
    return CONNECTIONS.enter_context(connect(
        f"ws://{addr}{path}", open_timeout=TIMEOUT, close_timeout=TIMEOUT, **kw))


def ext_header(conn):
    vals = conn.response.headers.get_all("Sec-WebSocket-Extensions")
    return ", ".join(vals) if vals else None


def pmd_state(conn):
    """The negotiated permessage-deflate as websockets parsed it (ws.protocol.extensions)."""
    return [(type(e).__name__, e.remote_no_context_takeover, e.local_no_context_takeover,
             e.remote_max_window_bits, e.local_max_window_bits) for e in conn.protocol.extensions]


# --- payloads ----------------------------------------------------------------------------

WORDS = ("price quote trade order fill book level bid ask spread tick volume open close "
         "high low ünïcödé ✓ \"quoted\" back\\slash tab\t").split(" ")


def text_of(n, seed):
    """n bytes of UTF-8 text: words from a small vocabulary (compressible, not trivially)."""
    rnd = random.Random(seed)
    parts, size = [], 0
    while size < n:
        w = rnd.choice(WORDS) + rnd.choice((" ", " ", " ", "\n", ", "))
        parts.append(w)
        size += len(w.encode())
    b = "".join(parts).encode()[:n]
    while True:  # cut at a character boundary, pad with ASCII
        try:
            s = b.decode()
            break
        except UnicodeDecodeError:
            b = b[:-1]
    return s + "x" * (n - len(s.encode()))


def json_of(n):
    """A JSON document of exactly n bytes (so the event's data is escaped JSON)."""
    doc = {"sym": "EURUSD", "note": "ünïcödé ✓", "px": [], "pad": ""}
    i = 0
    while len(json.dumps(doc, ensure_ascii=False).encode()) < n - 16:
        doc["px"].append(round(1.08 + i * 0.0001, 4))
        i += 1
    doc["pad"] = "p" * (n - len(json.dumps(doc, ensure_ascii=False).encode()))
    s = json.dumps(doc, ensure_ascii=False)
    assert len(s.encode()) == n, len(s.encode())
    return s


# --- the hub -----------------------------------------------------------------------------

def hub():
    topic = f"deflate-{os.getpid()}"
    path = f"/topics/{topic}/ws"
    wz = ws(HUB, path, compression="deflate", max_size=4 << 20)  # also the WS publisher
    wp = ws(HUB, path, compression=None, max_size=4 << 20)
    raw = Raw(HUB, path, ["permessage-deflate; client_max_window_bits"])  # Chromium's offer
    raw2 = Raw(HUB, path, ["permessage-deflate"])
    raw9 = Raw(HUB, path, ["permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"])
    rawp = Raw(HUB, path)

    checks.eq("hub: websockets deflate: the 101's Sec-WebSocket-Extensions", PLAIN_ANSWER, ext_header(wz))
    checks.eq("hub: websockets deflate: ws.protocol.extensions, no context takeover both ways, 15 bits",
              [("PerMessageDeflate", True, True, 15, 15)], pmd_state(wz))
    checks.eq("hub: websockets compression=None: no extension in the 101 or the protocol",
              (None, []), (ext_header(wp), pmd_state(wp)))
    checks.eq("hub: raw, Chromium's offer (client_max_window_bits without a value)", PLAIN_ANSWER,
              raw.header("sec-websocket-extensions"))
    checks.eq("hub: raw, bare offer", PLAIN_ANSWER, raw2.header("sec-websocket-extensions"))
    checks.eq("hub: raw, 9-bit windows both ways",
              PLAIN_ANSWER + "; server_max_window_bits=9; client_max_window_bits=9",
              raw9.header("sec-websocket-extensions"))
    checks.eq("hub: raw without an offer: no Sec-WebSocket-Extensions", None, rawp.header("sec-websocket-extensions"))

    sizes = [("10 B", "ten bytes!"), ("1 KiB JSON", json_of(1024)),
             ("100 KiB", text_of(100 << 10, 1)), ("1 MiB", text_of(1 << 20, 2))]
    expect_id = None
    for label, data in sizes:
        for via in ("HTTP", "WS"):
            if via == "HTTP":
                hid = publish(HUB_BASE, topic, data, event="news")
                event = "news"
            else:
                wz.send(data)
                hid, event = None, None
            name = f"hub: {label} via {via}"
            tz, tp = wz.recv(timeout=TIMEOUT), wp.recv(timeout=TIMEOUT)
            pairs = json.loads(tp, object_pairs_hook=list)
            d = dict(pairs)
            if expect_id is None:
                expect_id = d.get("id")
            ok = ([k for k, _ in pairs] == ["id", "event", "data"] and d["event"] == event
                  and d["data"] == data and d["id"] == expect_id and (hid is None or hid == expect_id))
            checks.ok(f"{name}: the plain subscriber gets the event JSON (id, event, data)", ok,
                      f"got {short(tp)}")
            checks.ok(f"{name}: the deflate subscriber gets identical JSON", tz == tp,
                      f"deflate {short(tz)}\n     plain   {short(tp)}")
            plain = tp.encode()
            fp, pp, _ = rawp.read_message()
            checks.ok(f"{name}: raw plain subscriber: RSV1 clear, same bytes", not fp.rsv1 and pp == plain,
                      f"rsv={fp.rsv} {short(pp)}")
            f1, p1, _ = raw.read_message()
            f2, p2, _ = raw2.read_message()
            f9, p9, _ = raw9.read_message()
            big = len(plain) >= MIN_COMPRESSED
            if big:
                got1 = inflate(p1) if f1.rsv1 else None
                checks.ok(f"{name}: raw deflate subscriber: RSV1 set, {len(p1)} B on the wire for "
                          f"{len(plain)} B, inflates to the plain JSON",
                          f1.rsv1 and f1.opcode == 1 and f1.fin and len(p1) < len(plain) and got1 == plain,
                          f"rsv={f1.rsv} opcode={f1.opcode} {len(p1)} B; inflated {short(got1)}")
                checks.ok(f"{name}: a second deflate subscriber gets the same compressed bytes",
                          f2.rsv1 and p2 == p1, f"rsv={f2.rsv} {len(p2)} B vs {len(p1)} B")
                try:
                    got9 = inflate(p9, wbits=9, strict=True) if f9.rsv1 else None
                except zlib.error as e:
                    got9 = f"zlib: {e}"
                checks.ok(f"{name}: 9-bit subscriber: RSV1 set, inflates within a 512-byte window",
                          f9.rsv1 and got9 == plain, f"rsv={f9.rsv} inflated {short(got9)}")
            else:
                checks.ok(f"{name}: the {len(plain)}-byte event goes plain to every deflate subscriber",
                          all(not f.rsv1 and p == plain for f, p in ((f1, p1), (f2, p2), (f9, p9))),
                          f"rsv {f1.rsv}/{f2.rsv}/{f9.rsv}; {short(p1)}")
            expect_id += 1

    # The hub's 1 MiB message limit is on the inflated size.
    over = ws(HUB, path, compression="deflate")
    over.send("z" * (HUB_LIMIT + 1))
    try:
        while True:
            over.recv(timeout=TIMEOUT)
    except ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd else None
    checks.eq("hub: a compressed message inflating to 1 MiB + 1 closes with 1009", 1009, code)
    rb = Raw(HUB, path, ["permessage-deflate"])
    rb.send_frame(1, zeros_payload(64 << 20), rsv=4)
    checks.eq("hub: a raw 64 MiB bomb (~64 KiB compressed) closes with 1009", 1009, rb.close_code())
    # The messages refused published nothing: the subscribers' next event is this one.
    hid = publish(HUB_BASE, topic, "after the refused ones " * 4)
    checks.eq("hub: nothing was published by the refused messages", [expect_id, expect_id],
              [json.loads(wz.recv(timeout=TIMEOUT))["id"], hid])
    for c in (raw, raw2, raw9, rawp):
        c.close()

    # A replay (?since=) to a deflate subscriber: the same JSON as to a plain one.
    rtopic = topic + "-replay"
    ids = [publish(HUB_BASE, rtopic, text_of(300, 10 + i)) for i in range(3)]
    rz = Raw(HUB, f"/topics/{rtopic}/ws?since=0", ["permessage-deflate"])
    rp = Raw(HUB, f"/topics/{rtopic}/ws?since=0")
    got_z = [rz.text() for _ in ids]
    got_p = [rp.text() for _ in ids]
    checks.eq("hub: ?since=0 replay to a deflate subscriber: the plain subscriber's JSON",
              [p for _, p in got_p], [p for _, p in got_z])
    print(f"     (replayed events to the deflate subscriber: RSV1 {[f.rsv1 for f, _ in got_z]})")
    live = publish(HUB_BASE, rtopic, text_of(300, 20))
    (fz, pz), (fp, pp) = rz.text(), rp.text()
    checks.ok("hub: after the replay, live events go compressed, same JSON",
              fz.rsv1 and pz == pp and json.loads(pp)["id"] == live, f"rsv={fz.rsv} {short(pz)}")
    rz.close()
    rp.close()


# --- the echo server through websockets --------------------------------------------------

def echo_ws():
    e = ws(ECHO, compression="deflate")
    checks.eq("echo: websockets deflate: the 101's Sec-WebSocket-Extensions", PLAIN_ANSWER, ext_header(e))
    checks.eq("echo: websockets deflate: ws.protocol.extensions",
              [("PerMessageDeflate", True, True, 15, 15)], pmd_state(e))
    for n in (0, 1, 127, 128, 129, 64 << 10, 4 << 20):
        t = text_of(n, n)
        b = random.Random(n).randbytes(n)  # incompressible: the server may answer it plain
        e.send(t)
        got_t = e.recv(timeout=TIMEOUT)
        e.send(b)
        got_b = e.recv(timeout=TIMEOUT)
        checks.ok(f"echo: {n} B text echoed", got_t == t, f"got {short(got_t)}")
        checks.ok(f"echo: {n} B binary echoed", got_b == b, f"got {type(got_b).__name__} {len(got_b)} B")
    # Fragmented: websockets sends an iterable as one message in several frames, the first
    # with RSV1, each fragment sync-flushed.
    frags = ["frag", "mented ", "", "compressed ✓ " * 50, "message"]
    e.send(frags)
    checks.eq("echo: a fragmented compressed text message comes back as one", "".join(frags),
              e.recv(timeout=TIMEOUT))
    bfrags = [bytes(1000), b"\x01\x02", random.Random(5).randbytes(3000), bytes(50000)]
    e.send(iter(bfrags))
    checks.eq("echo: a fragmented compressed binary message (from an iterator)", b"".join(bfrags),
              e.recv(timeout=TIMEOUT))
    big = [text_of(1 << 20, 30 + i) for i in range(3)]
    e.send(big)
    checks.ok("echo: 3 MiB in three compressed fragments comes back as one", e.recv(timeout=TIMEOUT) == "".join(big))
    checks.ok("echo: a ping is answered on the deflate connection", e.ping(b"deflate?").wait(TIMEOUT))
    e.close()
    checks.eq("echo: the close is answered with 1000", 1000,
              e.protocol.close_rcvd.code if e.protocol.close_rcvd else None)

    # Window sizes and context-takeover parameters offered by the client.
    variants = [
        (dict(server_max_window_bits=9, client_max_window_bits=9),
         "; server_max_window_bits=9; client_max_window_bits=9", (9, 9)),
        (dict(server_max_window_bits=10, client_max_window_bits=11),
         "; server_max_window_bits=10; client_max_window_bits=11", (10, 11)),
        (dict(server_max_window_bits=12), "; server_max_window_bits=12", (12, 15)),
        (dict(client_max_window_bits=9), "; client_max_window_bits=9", (15, 9)),
        (dict(server_max_window_bits=15, client_max_window_bits=15),
         "; server_max_window_bits=15; client_max_window_bits=15", (15, 15)),
        (dict(client_max_window_bits=None), "", (15, 15)),
        (dict(server_no_context_takeover=True, client_no_context_takeover=True), "", (15, 15)),
    ]
    msgs = ["w" * 70, text_of(20000, 7), random.Random(8).randbytes(5000), bytes(200000),
            (random.Random(9).randbytes(2000) + b"-") * 20]
    for params, answer, (sbits, cbits) in variants:
        v = ws(ECHO, extensions=[ClientPerMessageDeflateFactory(**params)], compression=None)
        desc = ", ".join(f"{k}={val}" for k, val in params.items())
        checks.eq(f"echo: offer {desc}: answered", PLAIN_ANSWER + answer, ext_header(v))
        checks.eq(f"echo: offer {desc}: websockets agreed windows", [("PerMessageDeflate", True, True, sbits, cbits)],
                  pmd_state(v))
        got = []
        for m in msgs:
            v.send(m)
            got.append(v.recv(timeout=TIMEOUT))
        checks.ok(f"echo: offer {desc}: {len(msgs)} messages echoed", got == msgs)
        v.close()
    # server_max_window_bits=8: zlib cannot compress with 8 bits, so the offer is declined.
    v = ws(ECHO, extensions=[ClientPerMessageDeflateFactory(server_max_window_bits=8)], compression=None)
    checks.eq("echo: offer server_max_window_bits=8: declined (no extension)", (None, []), (ext_header(v), pmd_state(v)))
    v.send(msgs[1])
    checks.ok("echo: ... and the connection echoes uncompressed", v.recv(timeout=TIMEOUT) == msgs[1])
    v.close()


# --- the echo server through the raw client ----------------------------------------------

def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def echo_raw_limits():
    """First of the echo checks, so the server's peak RSS says what the bomb cost."""
    before = peak_rss_mib(ECHO_PID)
    r = Raw(ECHO, "/", ["permessage-deflate"])
    bomb = zeros_payload(256 << 20)
    t0 = time.monotonic()
    r.send_frame(2, bomb, rsv=4)
    code = r.close_code()
    took = time.monotonic() - t0
    checks.eq(f"echo: a 256 MiB bomb ({len(bomb) >> 10} KiB compressed, one masked RSV1 frame) closes with 1009",
              1009, code)
    after = peak_rss_mib(ECHO_PID)
    checks.ok(f"echo: ... in {took:.2f} s, the server's peak RSS {before:.0f} -> {after:.0f} MiB (under 128: "
              "it stopped inflating at the limit)", after is not None and after < 128)

    r = Raw(ECHO, "/", ["permessage-deflate"])
    r.send_frame(2, zeros_payload(ECHO_LIMIT), rsv=4)
    f, payload, _ = r.read_message()
    got = inflate(payload) if f.rsv1 else payload
    checks.ok(f"echo: a compressed message of exactly 16 MiB is echoed (compressed: {len(payload) >> 10} KiB, RSV1)",
              f.rsv1 and f.opcode == 2 and got == bytes(ECHO_LIMIT), f"rsv={f.rsv} {len(got)} B")
    r.send_frame(2, zeros_payload(ECHO_LIMIT + 1), rsv=4)
    checks.eq("echo: 16 MiB + 1 compressed closes with 1009", 1009, r.close_code())

    r = Raw(ECHO, "/", ["permessage-deflate"])
    r.send_frame(1, b"\x06" + os.urandom(40), rsv=4)  # BTYPE 11: a reserved block type
    checks.eq("echo: corrupt DEFLATE (a reserved block type) closes with 1007", 1007, r.close_code())
    r = Raw(ECHO, "/", ["permessage-deflate"])
    r.send_frame(2, b"\x00\x05\x00\x00\x00hello", rsv=4)  # stored block, LEN/NLEN mismatch
    checks.eq("echo: corrupt DEFLATE (stored block lengths) closes with 1007", 1007, r.close_code())
    r = Raw(ECHO, "/", ["permessage-deflate"])
    r.send_compressed(1, b"valid deflate, not UTF-8: \xff\xfe" * 10)
    checks.eq("echo: a compressed text message that inflates to bad UTF-8 closes with 1007", 1007, r.close_code())
    r = Raw(ECHO, "/", ["permessage-deflate"])
    r.send_frame(9, b"ping", rsv=4)
    checks.eq("echo: RSV1 on a Ping closes with 1002", 1002, r.close_code())
    r = Raw(ECHO, "/", ["permessage-deflate"])
    part = deflate(b"first half, second half " * 10)
    r.send_frame(1, part[:10], fin=False, rsv=4)
    r.send_frame(0, part[10:], fin=True, rsv=4)
    checks.eq("echo: RSV1 on a continuation frame closes with 1002", 1002, r.close_code())
    r = Raw(ECHO, "/", ["permessage-deflate"])
    r.send_frame(1, b"hello", rsv=2)
    checks.eq("echo: RSV2 closes with 1002", 1002, r.close_code())
    r = Raw(ECHO, "/")
    r.send_frame(1, deflate(b"x" * 100), rsv=4)
    checks.eq("echo: RSV1 without permessage-deflate negotiated closes with 1002", 1002, r.close_code())


def echo_raw_wire():
    r = Raw(ECHO, "/", ["permessage-deflate; client_max_window_bits"])
    checks.eq("echo: raw: Chromium's offer answered", PLAIN_ANSWER, r.header("sec-websocket-extensions"))
    for n in (127, 128, 129, 1000):
        data = text_of(n, 100 + n).encode()
        r.send_compressed(1, data)
        f, payload, _ = r.read_message()
        got = inflate(payload) if f.rsv1 else payload
        want_rsv1 = n >= MIN_COMPRESSED
        checks.ok(f"echo: raw: {n} B echoed {'compressed (RSV1)' if want_rsv1 else 'plain (RSV1 clear)'}",
                  f.rsv1 == want_rsv1 and f.opcode == 1 and got == data, f"rsv={f.rsv} got {short(got)}")
    r.send_frame(1, b"an uncompressed message on a deflate connection " * 3)
    f, payload, _ = r.read_message()
    checks.ok("echo: raw: an uncompressed message (RSV1 clear) on a deflate connection is echoed",
              (inflate(payload) if f.rsv1 else payload) == b"an uncompressed message on a deflate connection " * 3)
    for label, payload in (("an empty payload", b""), ("one empty stored block byte (0x00)", b"\x00"),
                           ("an empty sync-flushed block", deflate(b""))):
        r.send_frame(2, payload, rsv=4)
        f, got, _ = r.read_message()
        checks.ok(f"echo: raw: an empty compressed message ({label}) is echoed empty",
                  f.opcode == 2 and (inflate(got) if f.rsv1 else got) == b"", f"rsv={f.rsv} {got!r}")
    # One compressed message in three frames, a Ping between them.
    data = text_of(30000, 55).encode()
    z = deflate(data)
    a, b = len(z) // 3, 2 * len(z) // 3
    r.send_frame(1, z[:a], fin=False, rsv=4)
    r.send_frame(9, b"between")
    r.send_frame(0, z[a:b], fin=False)
    r.send_frame(0, z[b:], fin=True)
    f, payload, controls = r.read_message()
    checks.ok("echo: raw: a Ping between fragments is answered with its Pong",
              [(c.opcode, c.payload, c.rsv) for c in controls] == [(10, b"between", 0)],
              f"controls {[(c.opcode, c.payload) for c in controls]}")
    checks.ok("echo: raw: ... and the three compressed fragments come back as one message",
              f.rsv1 and inflate(payload) == data)
    # Fragments of one message, each flushed separately (as websockets sends them).
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    pieces = [b"piece one; ", b"piece two; ", b"piece three" * 20]
    zs = [c.compress(p) + c.flush(zlib.Z_SYNC_FLUSH) for p in pieces]
    zs[-1] = zs[-1][:-4]
    for i, zp in enumerate(zs):
        r.send_frame(1 if i == 0 else 0, zp, fin=i == len(zs) - 1, rsv=4 if i == 0 else 0)
    f, payload, _ = r.read_message()
    checks.eq("echo: raw: fragments flushed one by one inflate as one message", b"".join(pieces),
              inflate(payload) if f.rsv1 else payload)
    r.close()

    # The server keeps to the window it agreed to: its output inflates within 512 bytes.
    r9 = Raw(ECHO, "/", ["permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"])
    checks.eq("echo: raw: 9-bit windows answered", PLAIN_ANSWER + "; server_max_window_bits=9; client_max_window_bits=9",
              r9.header("sec-websocket-extensions"))
    # Text (compressible within 512 bytes) repeated 3,000 bytes apart: a 15-bit compressor
    # refers back 3,000 bytes, which a 512-byte window cannot follow.
    data = text_of(3000, 9).encode() * 4
    r9.send_compressed(2, data, wbits=9)
    f, payload, _ = r9.read_message()
    try:
        got = inflate(payload, wbits=9, strict=True) if f.rsv1 else None
    except zlib.error as e:
        got = f"zlib: {e}"
    checks.ok(f"echo: raw: with server_max_window_bits=9 the echo is compressed ({len(payload)} B of "
              f"{len(data)}) and inflates within a 512-byte window", f.rsv1 and got == data,
              f"rsv={f.rsv} {short(got)}")
    r15 = Raw(ECHO, "/", ["permessage-deflate"])
    r15.send_compressed(2, data)
    f, payload15, _ = r15.read_message()
    checks.ok(f"echo: raw: with 15 bits the same message comes back smaller ({len(payload15)} B: it refers "
              "further back) and intact",
              f.rsv1 and len(payload15) < len(payload) and inflate(payload15) == data,
              f"rsv={f.rsv} {len(payload15)} B")
    r9.close()
    r15.close()

    # The negotiation: offers in order, declined ones skipped.
    cases = [
        ("two offers, the first needs 8 bits",
         ["permessage-deflate; server_max_window_bits=8, permessage-deflate; client_max_window_bits=10"],
         PLAIN_ANSWER + "; client_max_window_bits=10"),
        ("an offer with an unknown parameter, then a bare one",
         ["permessage-deflate; foo=1", "permessage-deflate"], PLAIN_ANSWER),
        ("an unknown extension only", ["x-webkit-deflate-frame"], None),
        ("a parameter twice", ["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], None),
        ("a quoted window value", ['permessage-deflate; server_max_window_bits="10"'],
         PLAIN_ANSWER + "; server_max_window_bits=10"),
        ("a window of 16", ["permessage-deflate; server_max_window_bits=16"], None),
    ]
    for label, offers, want in cases:
        rn = Raw(ECHO, "/", offers)
        got = rn.header("sec-websocket-extensions")
        checks.eq(f"echo: raw negotiation, {label}", want, got)
        msg = b"negotiated " * 20
        if got:
            rn.send_compressed(1, msg)
        else:
            rn.send_frame(1, msg)
        f, payload, _ = rn.read_message()
        checks.ok(f"echo: raw negotiation, {label}: echo works ({'RSV1' if f.rsv1 else 'plain'})",
                  (inflate(payload) if f.rsv1 else payload) == msg and (f.rsv1 == bool(got)))
        rn.close()
    # A client that can only take an 8-bit window: the server may accept (telling no value
    # or 8) or decline; what it must not do is tell the client a larger window.
    rn = Raw(ECHO, "/", ["permessage-deflate; client_max_window_bits=8"])
    got = rn.header("sec-websocket-extensions")
    checks.ok(f"echo: raw negotiation, client_max_window_bits=8: {got!r} (declined or at most 8)",
              got is None or "client_max_window_bits=9" not in got and "client_max_window_bits=1" not in got)
    rn.close()


def main():
    t0 = time.monotonic()
    hub()
    print(f"     (hub section: {time.monotonic() - t0:.1f} s)")
    t1 = time.monotonic()
    echo_raw_limits()
    echo_ws()
    echo_raw_wire()
    print(f"     (echo sections: {time.monotonic() - t1:.1f} s)")
    stats = get_json(HUB_BASE, "/stats")
    print(f"     (hub /stats: websocket connections {stats['connections']['websocket']}, "
          f"published {stats['published']})")


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # any crash (timeout, refused connection) is a failed check
        checks.crash("the run stopped early", exc)
        import traceback
        traceback.print_exc()
    finally:
        CONNECTIONS.close()
    sys.exit(checks.finish())
