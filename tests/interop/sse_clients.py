"""The `sseclient-py` package (over a urllib3 response stream) as a real client of the
hub's /topics/{t}/sse.

Run by sse_clients.sh with the hub's HOST:PORT; the hub keeps 3 events per topic
(--history-events 3). The client must get back exactly the data that was published, with
CR and CRLF turned into LF (the only change the SSE format allows), ids in order, and on
resume the `gap` event first (no id, data = the oldest id kept) exactly when the hub's gap
rule says so: after Last-Event-ID N > 0 when the first event sent is not N + 1, from 0 only
when the history was trimmed. Ids are relative to the topic's first id, which is the hub's
clock in microseconds.
"""

import itertools
import os
import sys
import time

import urllib3
from sseclient import SSEClient

from interop_util import TIMEOUT, Checks, base_from_argv, publish

BASE = base_from_argv()
HISTORY = 3
checks = Checks("sse interop")
http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=TIMEOUT, read=TIMEOUT), retries=False)
streams = []


def open_stream(topic, last_event_id=None, query=""):
    """Opens the SSE stream; when this returns the hub has sent the head, so the stream is
    subscribed and every later publish reaches it."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    resp = http.request(
        "GET", f"{BASE}/topics/{topic}/sse{query}", headers=headers, preload_content=False
    )
    streams.append(resp)
    return resp, SSEClient(resp).events()


def take(events, n):
    """The next n events as (id, event, data); a stall raises urllib3's ReadTimeoutError."""
    return [(e.id, e.event, e.data) for e in itertools.islice(events, n)]


# (data published, event name or None, what the client must get back as data)
CASES = [
    ("plain", None, "plain"),
    ("line 1\nline 2\nline 3", "multi", "line 1\nline 2\nline 3"),
    ("crlf 1\r\ncrlf 2", None, "crlf 1\ncrlf 2"),
    ("cr 1\rcr 2", None, "cr 1\ncr 2"),
    ("mixed\r\n\r\rend\n", "mixed", "mixed\n\n\nend\n"),
    ("", None, ""),
    ("\n", None, "\n"),
    ("\r\n\r\n", None, "\n\n"),
    ("héllo wörld ✓ 日本語 🎉 \u2028 \x0b \x0c \x85 é", "unicode", "héllo wörld ✓ 日本語 🎉 \u2028 \x0b \x0c \x85 é"),
    ("  two leading spaces", None, "  two leading spaces"),
    (": not a comment", None, ": not a comment"),
    ("id: 99\nevent: fake\nretry: 1", None, "id: 99\nevent: fake\nretry: 1"),
    ("trailing space ", "name:with-colon", "trailing space "),
    ("z" * 100_000 + "\nend", None, "z" * 100_000 + "\nend"),
]


def describe(data):
    return repr(data if len(data) < 40 else data[:37] + "...")


def main():
    topic = f"sse-{os.getpid()}"
    resp, live = open_stream(topic)
    checks.eq("status 200", 200, resp.status)
    checks.eq("Content-Type", "text/event-stream", resp.headers.get("Content-Type", "").split(";")[0])
    checks.eq("Cache-Control", "no-cache", resp.headers.get("Cache-Control"))

    # Ids: the first is the hub's clock in microseconds (`first`), then one more per publish.
    # `n` below is an event's position (1..N), `first + n - 1` its id.
    ids = [publish(BASE, topic, data, event) for data, event, _ in CASES]
    first = ids[0]
    now_us = time.time_ns() // 1000
    checks.ok(
        f"the first id ({first}) is the Unix time in microseconds, below 2^53",
        now_us - 60_000_000 < first <= now_us and first + len(CASES) < 1 << 53,
        f"now {now_us}",
    )
    count = len(CASES)
    last = first + count - 1
    checks.eq("publish ids consecutive from the first", list(range(first, last + 1)), ids)
    got = take(live, count)
    checks.eq("ids in order, as strings", [str(i) for i in range(first, last + 1)], [g[0] for g in got])
    for (data, event, want), (_, gev, gdata) in zip(CASES, got):
        checks.eq(f"data {describe(data)} event {event}", (event or "message", want), (gev, gdata))
    expected = [(str(first + k), (ev or "message"), want) for k, (_, ev, want) in enumerate(CASES)]

    def after(cursor):
        """The expected kept events with ids greater than `cursor`."""
        return [e for e in expected[count - HISTORY:] if int(e[0]) > cursor]

    oldest = last - HISTORY + 1
    gap = [(None, "gap", str(oldest))]

    # Resume: Last-Event-ID within the kept history: exactly the events after it.
    _, r1 = open_stream(topic, last_event_id=last - 2)
    checks.eq("Last-Event-ID: last-2 resumes with last-1, last", after(last - 2), take(r1, 2))
    _, r2 = open_stream(topic, last_event_id=oldest - 1)
    checks.eq("Last-Event-ID just before the oldest kept: no gap", after(oldest - 1), take(r2, HISTORY))
    _, r3 = open_stream(topic, last_event_id=oldest - 2)
    checks.eq(
        "a too-old Last-Event-ID: the gap event first (no id, data = oldest kept id)",
        gap + after(0),
        take(r3, 1 + HISTORY),
    )
    _, r4 = open_stream(topic, query=f"?last_event_id={last - 1}")
    checks.eq("?last_event_id=last-1 resumes with last", after(last - 1), take(r4, 1))
    _, r5 = open_stream(topic, last_event_id=last - 1, query=f"?last_event_id={first}")
    checks.eq("the Last-Event-ID header wins over ?last_event_id=", after(last - 1), take(r5, 1))
    _, r6 = open_stream(topic, last_event_id=last + 50)
    checks.eq(
        "a Last-Event-ID ahead of the last id: gap, then the kept events",
        gap + after(0),
        take(r6, 1 + HISTORY),
    )
    _, r9 = open_stream(topic, last_event_id=41)
    checks.eq(
        "a Last-Event-ID from another id range (41: before a restart): gap, then the kept events",
        gap + after(0),
        take(r9, 1 + HISTORY),
    )
    _, r10 = open_stream(topic, last_event_id=0)
    checks.eq(
        "Last-Event-ID: 0 with the history trimmed: gap, then the kept events",
        gap + after(0),
        take(r10, 1 + HISTORY),
    )
    _, r7 = open_stream(topic, last_event_id="not-a-number")
    _, r8 = open_stream(topic, last_event_id=last)

    # Every stream goes on live after its replay: nothing duplicated, nothing skipped.
    checks.eq("the next publish gets the next id", last + 1, publish(BASE, topic, "after resume\r\nok", "live"))
    want = [(str(last + 1), "live", "after resume\nok")]
    for name, events in [
        ("the first stream", live),
        ("last-2 resume", r1),
        ("no-gap resume", r2),
        ("gap resume", r3),
        ("?last_event_id resume", r4),
        ("header-wins resume", r5),
        ("ahead resume", r6),
        ("another-range resume", r9),
        ("from-0 resume", r10),
        ("a non-numeric Last-Event-ID (starts live)", r7),
        ("Last-Event-ID: last (nothing to replay)", r8),
    ]:
        checks.eq(f"live after replay: {name}", want, take(events, 1))


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # a timeout or refused connection is a failed check
        checks.crash("the run stopped early", exc)
    finally:
        for s in streams:
            s.close()
    if os.environ.get("INTEROP_NO_SUMMARY") == "1":
        sys.exit(1 if checks.failed else 0)
    sys.exit(checks.finish())
