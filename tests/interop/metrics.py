"""Scrapes the hub's GET /metrics and parses it with the Prometheus project's own Python
parser (prometheus_client.parser.text_string_to_metric_families), then checks the values
after known activity on a fresh hub: 3 publishes, an SSE stream open while they happen,
a parked poll, and the gauges falling back when the clients leave.
"""

import socket
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from interop_util import TIMEOUT, Checks, base_from_argv, get_json, publish, wait_for


def scrape(base):
    with urllib.request.urlopen(base + "/metrics", timeout=TIMEOUT) as resp:
        return resp.status, resp.headers.get("Content-Type"), resp.read().decode("utf-8")


def families(text):
    """{family name: (type, help, {(sample name, labels as a sorted tuple): value})}."""
    out = {}
    for fam in text_string_to_metric_families(text):
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples}
        out[fam.name] = (fam.type, fam.documentation, samples)
    return out


def value(fams, family, sample, **labels):
    return fams[family][2].get((sample, tuple(sorted(labels.items()))))


def open_stream(addr, path):
    """A raw GET kept open (an SSE stream or a parked poll); returns the socket once the
    hub answered the head (SSE) or at once (a poll parks silently)."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n".encode())
    return s


def main():
    base = base_from_argv()
    addr = base[len("http://"):]
    c = Checks("metrics interop")
    topic = f"metrics-{int(time.time() * 1000)}"

    status, ctype, text = scrape(base)
    c.eq("GET /metrics: 200", 200, status)
    c.eq("Content-Type of the 0.0.4 text format", "text/plain; version=0.0.4; charset=utf-8", ctype)
    try:
        fams = families(text)
    except Exception as e:  # the parser refusing our text is the failure this test is for
        c.crash("prometheus_client parses the exposition", e)
        return c.finish()
    c.ok("prometheus_client parses the exposition", len(fams) >= 20, f"{len(fams)} families")
    c.ok("every family has a HELP text", all(f[1] for f in fams.values()))
    c.eq("published: a counter, 0 on a fresh hub", ("counter", 0.0),
         (fams["pushwire_published"][0], value(fams, "pushwire_published", "pushwire_published_total")))
    c.eq("connections: a gauge by kind", "gauge", fams["pushwire_connections"][0])
    c.eq("the kinds", {"http", "websocket", "sse", "parked"},
         {dict(k[1])["kind"] for k in fams["pushwire_connections"][2]})
    c.eq("deliveries: a counter by transport", ("counter", {"websocket", "sse", "longpoll", "webhook"}),
         (fams["pushwire_delivered"][0], {dict(k[1])["transport"] for k in fams["pushwire_delivered"][2]}))
    for fam, typ in [("pushwire_webhook_messages_delivered", "counter"),
                     ("pushwire_webhook_messages_failed", "counter"),
                     ("pushwire_webhook_attempts", "counter"),
                     ("pushwire_webhook_messages_retrying", "gauge"),
                     ("pushwire_webhooks_received", "counter"),
                     ("pushwire_output_queued_bytes", "gauge"),
                     ("pushwire_webhook_queued_bytes", "gauge"),
                     ("pushwire_history_bytes", "gauge"),
                     ("pushwire_history_max_bytes", "gauge"),
                     ("pushwire_topics_max", "gauge"),
                     ("pushwire_connections_max", "gauge"),
                     ("pushwire_redis_ready", "gauge")]:
        c.eq(f"{fam}: a {typ}", typ, fams.get(fam, (None,))[0])

    sse = open_stream(addr, f"/topics/{topic}/sse")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sse.recv(4096)
        if not chunk:
            break
        head += chunk
    c.ok("SSE stream answered 200", head.startswith(b"HTTP/1.1 200"), repr(head[:80]))
    ids = [publish(base, topic, f"event {i}") for i in range(3)]
    info = get_json(base, f"/topics/{topic}")
    c.eq("GET /topics/T after 3 publishes, one SSE stream", {
        "topic": topic, "last_id": ids[2], "oldest_id": ids[0],
        "subscribers": {"websocket": 0, "sse": 1, "parked": 0}, "webhooks": 0}, info)
    poll = open_stream(addr, f"/topics/{topic}/poll?since={ids[2]}&timeout=60")
    wait_for(lambda: get_json(base, f"/topics/{topic}")["subscribers"]["parked"] == 1, "the poll to park")

    fams = families(scrape(base)[2])
    c.eq("published_total is 3", 3.0, value(fams, "pushwire_published", "pushwire_published_total"))
    c.eq("connections{kind=sse} is 1", 1.0, value(fams, "pushwire_connections", "pushwire_connections", kind="sse"))
    c.eq("connections{kind=parked} is 1", 1.0,
         value(fams, "pushwire_connections", "pushwire_connections", kind="parked"))
    c.eq("delivered_total{transport=sse} is 3", 3.0,
         value(fams, "pushwire_delivered", "pushwire_delivered_total", transport="sse"))
    c.eq("topics is 1", 1.0, value(fams, "pushwire_topics", "pushwire_topics"))
    c.eq("history_bytes counts the 3 events' data", float(3 * len("event 0")),
         value(fams, "pushwire_history_bytes", "pushwire_history_bytes"))

    sse.close()
    poll.close()

    def gone():
        f = families(scrape(base)[2])
        return all(value(f, "pushwire_connections", "pushwire_connections", kind=k) == 0.0
                   for k in ("sse", "parked"))

    try:
        wait_for(gone, "the SSE and parked gauges to fall to 0")
        c.ok("gauges fall back to 0 when the clients leave", True)
    except TimeoutError as e:
        c.crash("gauges fall back to 0 when the clients leave", e)
    fams = families(scrape(base)[2])
    c.eq("the counter stays at 3", 3.0, value(fams, "pushwire_published", "pushwire_published_total"))
    return c.finish()


if __name__ == "__main__":
    raise SystemExit(main())
