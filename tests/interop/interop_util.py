"""Helpers shared by the Python interop clients: a pass/fail tally and small HTTP calls.

Only the standard library here (urllib), so the third-party client under test is the one
thing that differs from script to script.
"""

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT = 5.0  # seconds: the bound on every single network wait


class Checks:
    """Counts checks and prints one line per check plus the closing summary line."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0

    def ok(self, what, cond, detail=""):
        if cond:
            self.passed += 1
            print(f"ok   {what}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {what}" + (f"\n     {detail}" if detail else ""), flush=True)
        return cond

    def eq(self, what, expected, got):
        return self.ok(what, expected == got, f"expected {short(expected)}\n     got      {short(got)}")

    def crash(self, what, exc):
        self.ok(what, False, f"{type(exc).__name__}: {exc}")

    def finish(self):
        print(f"{self.name}: {self.passed} passed, {self.failed} failed", flush=True)
        return 0 if self.failed == 0 and self.passed > 0 else 1


def short(value, limit=400):
    """repr(value), cut in the middle when long (a failure report must stay readable)."""
    r = repr(value)
    if len(r) <= limit:
        return r
    return f"{r[:limit // 2]} ...({len(r) - limit} chars)... {r[-limit // 2:]}"


def publish(base, topic, data, event=None):
    """POST data to /topics/{topic}[?event=...]; returns the id the hub gave the event."""
    url = f"{base}/topics/{topic}"
    if event is not None:
        url += "?" + urllib.parse.urlencode({"event": event})
    req = urllib.request.Request(url, data=data.encode("utf-8"), method="POST")
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        if resp.status != 201:
            raise RuntimeError(f"publish answered {resp.status}")
        body = json.loads(resp.read())
    if body.get("topic") != topic or not isinstance(body.get("id"), int):
        raise RuntimeError(f"publish answered {body!r}")
    return body["id"]


def get_json(base, path):
    with urllib.request.urlopen(base + path, timeout=TIMEOUT) as resp:
        return json.loads(resp.read())


def wait_for(pred, what, timeout=TIMEOUT):
    """Polls pred() every 20 ms until it is true; raises TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.02)


def base_from_argv():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} HOST:PORT")
    return "http://" + sys.argv[1]
