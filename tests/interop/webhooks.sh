#!/usr/bin/env bash
# Webhook interop: the hub (examples/hub.rs) delivers to a scripted local receiver
# (webhook_receiver.py) that checks EVERY delivery with the reference verifier of the
# Standard Webhooks project (PyPI `standardwebhooks`, installed into tests/interop/.venv).
#
# Endpoints on one topic: /ok (204), /flaky (500, 500, then 200 per webhook-id), /gone
# (410), /retry-after (429 + `Retry-After: 1`, then 200), /close (200 + `Connection:
# close`), /drop (200, then the connection is closed without notice), and the hub's own
# /hooks/receive (the library's verify). The receiver closes
# idle keep-alive connections after 0.6 s, and a pause between the two publish batches makes
# the hub meet pooled connections that the receiver has closed.
#
# Checks: every delivery verified (and a one-byte change of its body refused), payloads
# carry exactly what was published (event ids: the topic's first id, the hub's clock in
# microseconds, then +1 each), /ok, /close and /drop got the N ids once each in order,
# /flaky saw one webhook-id three times per event and the hub counts them delivered, /gone
# got one attempt and is disabled, the Retry-After spacing is honoured, /stats adds up, and
# the hub's /hooks/receive accepts a message signed by the reference library and refuses
# tampered ones.
# Ends with `webhooks interop: N passed, M failed`; exits non-zero on any failure.
#
#   KEEP_LOGS=1   keep the temporary directory (hub and receiver logs, records.json)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
INTEROP="$ROOT/tests/interop"
VENV="$INTEROP/.venv"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TOPIC=wh-interop
SWH_REQ="standardwebhooks==1.1.0"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pushwire-webhooks.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 10); do # bounded: SIGKILL what has not gone after ~2 s
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ -n "${KEEP_LOGS:-}" ]; then
    echo "logs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

log() { printf '[webhooks] %s\n' "$*" >&2; }
PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); printf 'ok   %s\n' "$1"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL %s\n' "$1"; }
check() { if [ "$2" == "$3" ]; then pass "$1"; else fail "$1 (expected $2, got $3)"; fi; }
finish() {
  printf 'webhooks interop: %d passed, %d failed\n' "$PASSED" "$FAILED"
  [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
  exit $?
}
# Setup that cannot go on: one failed check, then the summary line.
die() {
  fail "$1"
  for f in "$WORK"/*.stderr; do
    [ -s "$f" ] && { echo "--- tail of $(basename "$f")"; tail -n 20 "$f"; }
  done
  finish
}

# ---- the venv (shared with the other interop scripts; idempotent) ------------------------
venv_ok() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; }
if ! venv_ok; then
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's python3 has no ensurepip until python3-venv (python3.X-venv) is installed.
    log "python3 -m venv failed; installing python3-venv"
    rm -rf "$VENV"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    pyver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    $sudo apt-get update -qq >/dev/null
    $sudo apt-get install -y -qq python3-venv >/dev/null 2>&1 ||
      $sudo apt-get install -y -qq "python${pyver}-venv" >/dev/null
    python3 -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
if ! "$PY" -c 'import standardwebhooks, sys; sys.exit(standardwebhooks.__version__ != "1.1.0")' \
  2>/dev/null; then
  log "pip install $SWH_REQ"
  "$PY" -m pip install -q --disable-pip-version-check "$SWH_REQ" >&2
fi

# ---- build and start --------------------------------------------------------------------
log "cargo build --release --example hub"
(cd "$ROOT" && cargo build --release --quiet --example hub) || die "cargo build --example hub"

# start NAME CMD...: runs CMD with stdout/stderr in $WORK, waits (at most 20 s) for a first
# stdout line holding a URL and prints its HOST:PORT.
start() {
  local name=$1
  shift
  "$@" >"$WORK/$name.stdout" 2>"$WORK/$name.stderr" &
  local pid=$!
  PIDS+=("$pid")
  local line=""
  for _ in $(seq 200); do
    line=$(head -n1 "$WORK/$name.stdout" 2>/dev/null || true)
    case $line in *"://"*) break ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  case $line in *"://"*) ;; *) return 1 ;; esac
  line=${line##*://}
  echo "${line%%/*}"
}

# Hub and receiver are started in this shell (not in $(...)) so that their pids land in PIDS.
start_bg() {
  local name=$1 var=$2
  shift 2
  start "$name" "$@" >"$WORK/$name.addr" || return 1
  printf -v "$var" '%s' "$(cat "$WORK/$name.addr")"
}
start_bg hub HUB "$TARGET/release/examples/hub" --addr 127.0.0.1:0 \
  --webhook-allow-private --webhook-schedule 0.2,0.2,0.2,0.2 || die "hub starts"
start_bg receiver RCV "$PY" "$INTEROP/webhook_receiver.py" --idle-timeout 0.6 ||
  die "receiver starts"
log "hub on $HUB, receiver on $RCV"

# ---- registration -----------------------------------------------------------------------
# http_req OUTFILE CURL-ARGS...: prints the status code (000 when the request failed).
http_req() {
  local out=$1
  shift
  curl -sS --max-time 5 -o "$out" -w '%{http_code}' "$@" 2>>"$WORK/curl.stderr" || true
}
json_field() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }

GIVEN_SECRET=$("$PY" -c 'import base64,os; print("whsec_" + base64.b64encode(os.urandom(32)).decode())')
declare -A HOOK_ID SECRET
ENDPOINTS=(ok flaky gone retry-after close drop self)
for ep in "${ENDPOINTS[@]}"; do
  url="http://$RCV/$ep"
  [ "$ep" = self ] && url="http://$HUB/hooks/receive"
  args=(--data-urlencode "url=$url")
  [ "$ep" = ok ] && args+=(--data-urlencode "secret=$GIVEN_SECRET")
  code=$(http_req "$WORK/reg-$ep.json" "${args[@]}" "http://$HUB/topics/$TOPIC/webhooks")
  check "register $url: 201" 201 "$code"
  [ "$code" = 201 ] || die "cannot go on without the $ep endpoint: $(cat "$WORK/reg-$ep.json")"
  HOOK_ID[$ep]=$(json_field "$WORK/reg-$ep.json" id)
  SECRET[$ep]=$(json_field "$WORK/reg-$ep.json" secret)
  [ "$ep" = self ] && continue
  printf '{"path":"/%s","secret":"%s"}' "$ep" "${SECRET[$ep]}" >"$WORK/sec.json"
  code=$(http_req /dev/null --data-binary @"$WORK/sec.json" "http://$RCV/_secrets")
  [ "$code" = 204 ] || die "receiver took the /$ep secret ($code)"
done
check "the given secret is the one answered" "$GIVEN_SECRET" "${SECRET[ok]}"
printf '{"path":"/control","secret":"%s"}' "${SECRET[ok]}" >"$WORK/sec.json"
http_req /dev/null --data-binary @"$WORK/sec.json" "http://$RCV/_secrets" >/dev/null
# Generated secrets: whsec_ + base64 of 24-64 bytes, all different.
bad=$("$PY" - "${SECRET[@]}" <<'EOF'
import base64, sys
bad = []
for s in sys.argv[1:]:
    try:
        n = len(base64.b64decode(s[len("whsec_"):], validate=True))
        if not s.startswith("whsec_") or not 24 <= n <= 64:
            bad.append(s)
    except Exception:
        bad.append(s)
if len(set(sys.argv[1:])) != len(sys.argv[1:]):
    bad.append("duplicates")
print(" ".join(bad))
EOF
)
check "secrets are whsec_ + base64 of 24-64 bytes, all distinct" "" "$bad"
code=$(http_req "$WORK/bad.txt" --data-urlencode "url=http://$RCV/ok" \
  --data-urlencode "secret=whsec_c2hvcnQ=" "http://$HUB/topics/$TOPIC/webhooks")
check "a secret of 5 bytes is refused with 400" 400 "$code"

# ---- publishing -------------------------------------------------------------------------
# The events: plain, unicode, quotes and backslashes, CR/LF/tab, control characters, JSON
# look-alikes, U+2028/U+2029, 20 KB, and event names (one with every URL-special character).
"$PY" - "$WORK/events" <<'EOF'
import json, os, sys, urllib.parse
d = sys.argv[1]
os.makedirs(d)
events = [
    ("hello", None),
    ("h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e \U0001F680 \u00fcn\u00efc\u00f6d\u00e9", None),
    ('she said "hi" and \\back\\slash\\ and \'single\' and \\"both\\"', "quote.test"),
    ("line one\nline two\r\nline three\ttabbed\n\n", None),
    ('{"looks":"like json","n":[1,2,3],"esc":"\\u0041"}', "order.created"),
    ("ctl \x01\x02\x08\x0c\x1b\x1f\x7f end", None),
    ("</script><!-- & < > \u2028 \u2029 \ufeff", "x"),
    ("x" * 20000 + "\u00e9", "big"),
    ("punctuation in the name", "a~!@#$%^&*()_+={}[]|:;'<>,.?/\"`"),
    ("last one", None),
]
for i, (data, name) in enumerate(events, 1):
    with open(os.path.join(d, "%02d.data" % i), "wb") as f:
        f.write(data.encode())
    q = "" if name is None else "?event=" + urllib.parse.quote(name, safe="")
    with open(os.path.join(d, "%02d.query" % i), "w") as f:
        f.write(q)
with open(os.path.join(d, "events.json"), "w") as f:
    json.dump([{"data": a, "event": b} for a, b in events], f)
EOF
NEVENTS=$(ls "$WORK/events"/*.data | wc -l)
publish() {
  local i=$1 code
  local n
  n=$(printf '%02d' "$i")
  code=$(http_req "$WORK/pub.json" --data-binary @"$WORK/events/$n.data" \
    "http://$HUB/topics/$TOPIC$(cat "$WORK/events/$n.query")")
  if [ "$code" != 201 ]; then
    fail "publish event $i: $code $(cat "$WORK/pub.json")"
    return
  fi
  json_field "$WORK/pub.json" id >>"$WORK/ids.txt" # the id the hub gave it, one a line
  PUBLISHED=$((PUBLISHED + 1))
}
PUBLISHED=0
: >"$WORK/ids.txt"

# records_count PATH: how many deliveries the receiver recorded for PATH.
records_count() {
  http_req "$WORK/records.json" "http://$RCV/records" >/dev/null
  "$PY" -c 'import json,sys; print(sum(r["path"]==sys.argv[2] for r in json.load(open(sys.argv[1]))["records"]))' \
    "$WORK/records.json" "$1" 2>/dev/null || echo 0
}

# Event 1 alone: /gone answers 410 and must be disabled before anything else goes to it.
publish 1
gone_seen=0
for _ in $(seq 100); do # bounded: 10 s
  if [ "$(records_count /gone)" -ge 1 ] &&
    http_req "$WORK/list.json" "http://$HUB/topics/$TOPIC/webhooks" >/dev/null &&
    grep -q "\"id\":\"${HOOK_ID[gone]}\",\"url\":\"[^\"]*\",\"disabled\":true" "$WORK/list.json"; then
    gone_seen=1
    break
  fi
  sleep 0.1
done
check "/gone got its 410 and is disabled within 10 s" 1 "$gone_seen"

half=$(((NEVENTS + 1) / 2))
for i in $(seq 2 "$half"); do publish "$i"; done
# Longer than the receiver's 0.6 s idle timeout: the hub's pooled connections get closed.
sleep 1.5
for i in $(seq $((half + 1)) "$NEVENTS"); do publish "$i"; done
check "events published" "$NEVENTS" "$PUBLISHED"
# The ids: the first is the hub's clock in microseconds, the others follow it one by one.
FIRST_ID=$(head -n1 "$WORK/ids.txt" 2>/dev/null || true)
now_us=$(($(date +%s%N) / 1000))
if [ -n "$FIRST_ID" ] && [ "$FIRST_ID" -le "$now_us" ] && [ "$FIRST_ID" -gt $((now_us - 120000000)) ]; then
  pass "the first id ($FIRST_ID) is the Unix time in microseconds"
else
  fail "the first id (${FIRST_ID:-none}) is the Unix time in microseconds (now $now_us)"
  FIRST_ID=${FIRST_ID:-1}
fi
check "publish answers: consecutive ids from the first" \
  "$(seq "$FIRST_ID" $((FIRST_ID + NEVENTS - 1)) | tr '\n' ' ')" "$(tr '\n' ' ' <"$WORK/ids.txt")"

# ---- wait for every message to end (bounded) --------------------------------------------
# 7 endpoints: 6 deliver every event, /gone fails every event.
want_done=$((7 * NEVENTS))
settled=0
for _ in $(seq 300); do # bounded: 30 s
  http_req "$WORK/stats.json" "http://$HUB/stats" >/dev/null
  done_now=$("$PY" -c 'import json, sys
w = json.load(open(sys.argv[1]))["webhooks"]
print(w["delivered"] + w["failed"] if w["retrying"] == 0 else -1)' \
    "$WORK/stats.json" 2>/dev/null || echo -1)
  if [ "$done_now" -ge "$want_done" ]; then
    settled=1
    break
  fi
  sleep 0.1
done
check "all $want_done messages reached an outcome within 30 s" 1 "$settled"
sleep 0.5 # anything late (a duplicate) would land now
http_req "$WORK/stats.json" "http://$HUB/stats" >/dev/null
http_req "$WORK/records.json" "http://$RCV/records" >/dev/null
http_req "$WORK/list.json" "http://$HUB/topics/$TOPIC/webhooks" >/dev/null

# ---- the checks -------------------------------------------------------------------------
HOOK_IDS=$(for ep in "${ENDPOINTS[@]}"; do printf '%s=%s\n' "$ep" "${HOOK_ID[$ep]}"; done)
rc=0
"$PY" - "$WORK" "$HUB" "$RCV" "$TOPIC" "${SECRET[self]}" "$HOOK_IDS" "$FIRST_ID" \
  >"$WORK/checks.txt" 2>"$WORK/checks.stderr" <<'EOF' || rc=$?
import base64, http.client, json, re, sys, time
from datetime import datetime, timezone
from standardwebhooks.webhooks import Webhook

work, hub, rcv, topic, self_secret, hook_ids, first = sys.argv[1:8]
hook_ids = dict(l.split("=", 1) for l in hook_ids.splitlines())
FIRST = int(first)  # the id of event 1; event k has id FIRST + k - 1
events = json.load(open(work + "/events/events.json"))
records = json.load(open(work + "/records.json"))["records"]
stats = json.load(open(work + "/stats.json"))
listing = json.load(open(work + "/list.json"))
N = len(events)


def check(name, ok, detail=""):
    print(("ok   %s" if ok else "FAIL %s") % name)
    if not ok and detail:
        print("     " + str(detail)[:600])


def pid(r):
    """The event id in a delivery's verified payload, or None."""
    p = r["payload"]
    if isinstance(p, dict) and isinstance(p.get("data"), dict):
        return p["data"].get("id")
    return None


def by_path(p):
    return [r for r in records if r["path"] == p]


def post(addr, path, body, headers):
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=5)
    c.request("POST", path, body=body, headers=headers)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def get_json(addr, path):
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=5)
    c.request("GET", path)
    r = c.getresponse()
    d = json.loads(r.read())
    c.close()
    return d


deliveries = [r for r in records if r["path"] != "/control"]
# -- signatures ----------------------------------------------------------------------------
bad = [(r["path"], r["webhook_id"], r["error"]) for r in deliveries if not r["verified"]]
check("every delivery (%d) verified by standardwebhooks" % len(deliveries),
      deliveries and not bad, bad[:5])
bad = [(r["path"], r["webhook_id"]) for r in deliveries if r["tamper_rejected"] is not True]
check("each delivery with one byte added to its body is refused by standardwebhooks",
      deliveries and not bad, bad[:5])
bad = [(r["path"], r["webhook_signature"]) for r in deliveries
       if not re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", r["webhook_signature"] or "")]
check("webhook-signature is v1,<base64 of 32 bytes>", not bad, bad[:3])
now = time.time()
bad = [(r["path"], r["webhook_timestamp"]) for r in deliveries
       if not re.fullmatch(r"[0-9]+", r["webhook_timestamp"] or "")
       or abs(int(r["webhook_timestamp"]) - now) > 120]
check("webhook-timestamp is unix seconds, now", not bad, bad[:3])
bad = [(r["path"], r["request_version"], r["framing"], r["content_type"]) for r in deliveries
       if r["request_version"] != "HTTP/1.1" or r["framing"] != "content-length"
       or not (r["content_type"] or "").startswith("application/json")]
check("HTTP/1.1 POST with Content-Length and Content-Type: application/json", not bad, bad[:3])

# Negative controls through the receiver itself: a genuine /ok delivery replayed to /control
# (verified with the /ok secret) passes; the same with a changed body, a changed id or a
# signature made with another secret fails.
ok_recs = by_path("/ok")
if ok_recs:
    g = ok_recs[0]
    h = {"webhook-id": g["webhook_id"], "webhook-timestamp": g["webhook_timestamp"],
         "webhook-signature": g["webhook_signature"], "Content-Type": "application/json"}
    body = g["body"].encode()
    forged = Webhook(base64.b64encode(b"k" * 32).decode()).sign(
        g["webhook_id"], datetime.fromtimestamp(int(g["webhook_timestamp"]), tz=timezone.utc),
        g["body"])
    cases = [
        ("replayed as sent", body, h, True),
        ("body changed", body.replace(b'"id":%d' % (pid(g) or 0), b'"id":%d' % ((pid(g) or 0) + 1), 1), h, False),
        ("webhook-id changed", body, dict(h, **{"webhook-id": g["webhook_id"] + "x"}), False),
        ("signed with another secret", body, dict(h, **{"webhook-signature": forged}), False),
    ]
    for _, b, hh, _ in cases:
        post(rcv, "/control", b, hh)
    ctl = [r["verified"] for r in get_json(rcv, "/records")["records"] if r["path"] == "/control"]
    check("negative controls: verifier passes the genuine copy and refuses 3 forgeries",
          ctl == [c[3] for c in cases], ctl)
else:
    check("negative controls (no /ok delivery to replay)", False)

# -- payloads ------------------------------------------------------------------------------
good = [r for r in deliveries if isinstance(r["payload"], dict)]
bad = []
wid_of = {}  # event id -> webhook-id
for r in good:
    p = r["payload"]
    d = p.get("data") or {}
    i = d.get("id")
    if not isinstance(i, int) or not FIRST <= i < FIRST + N:
        bad.append(("bad id", r["path"], i))
        continue
    ev = events[i - FIRST]
    want = {"topic": topic, "id": i, "event": ev["event"], "data": ev["data"]}
    if set(p) != {"type", "timestamp", "data"} or d != want:
        bad.append(("fields", r["path"], i, sorted(p), {k: d.get(k) for k in ("topic", "event")}))
    if p.get("type") != (ev["event"] or "message"):
        bad.append(("type", r["path"], i, p.get("type")))
    try:
        ts = datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00"))
        if ts.tzinfo is None or abs(ts.timestamp() - now) > 120:
            raise ValueError("not now")
        if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
                            p["timestamp"]):
            raise ValueError("not RFC 3339")
    except Exception as e:
        bad.append(("timestamp", r["path"], i, p.get("timestamp"), str(e)))
    if wid_of.setdefault(i, r["webhook_id"]) != r["webhook_id"]:
        bad.append(("webhook-id differs", r["path"], i, wid_of[i], r["webhook_id"]))
check("payloads: type, RFC 3339 timestamp, data.{topic,id,event,data} exactly as published"
      " (unicode, quotes, CR/LF, control characters, 20 KB, event names)",
      good and not bad, bad[:4])
check("one webhook-id per event, on every endpoint and attempt; distinct across events",
      len(set(wid_of.values())) == len(wid_of) and not [b for b in bad if b[0] == "webhook-id differs"],
      wid_of)
body_ok = [r for r in good if pid(r) == FIRST + 1]
check("the unicode event went out as UTF-8 (raw, not mangled)",
      body_ok and all(r["body_utf8"] for r in good), "")

ids = lambda p: [pid(r) for r in by_path(p)]
# -- /ok and /close ------------------------------------------------------------------------
for p in ("/ok", "/close", "/drop"):
    check("%s got the %d ids (first + 0..%d) exactly once each, in order" % (p, N, N - 1),
          ids(p) == list(range(FIRST, FIRST + N)) and len(by_path(p)) == N,
          [pid(r) or r["error"] for r in by_path(p)])
for p in ("/close", "/drop"):
    conns = [r["client"] for r in by_path(p)]
    check("%s: every delivery on a new connection" % p, len(set(conns)) == len(conns), conns)
keep = [r for r in deliveries if r["path"] not in ("/close", "/drop")]
conns = {r["client"] for r in keep}
check("keep-alive: the hub reused connections (%d requests on %d connections)"
      % (len(keep), len(conns)), keep and len(conns) < len(keep))

# -- /flaky --------------------------------------------------------------------------------
fl = by_path("/flaky")
per = {}
for r in fl:
    per.setdefault(r["webhook_id"], []).append(r)
bad = {w: [(x["status"], pid(x)) for x in rs]
       for w, rs in per.items()
       if [x["status"] for x in rs] != [500, 500, 200]
       or len({pid(x) for x in rs}) != 1}
check("/flaky: each of the %d events came 3 times with one webhook-id (500, 500, 200)" % N,
      len(per) == N and len(fl) == 3 * N and not bad, (len(per), len(fl), bad))
gaps = [b["t"] - a["t"] for rs in per.values() for a, b in zip(rs, rs[1:])]
check("/flaky: retries follow the 0.2 s schedule (+-20%% jitter): gaps %s"
      % ["%.2f" % g for g in sorted(gaps)[:1] + sorted(gaps)[-1:]],
      gaps and all(0.15 <= g <= 1.5 for g in gaps), ["%.3f" % g for g in gaps])

# -- /gone ---------------------------------------------------------------------------------
gone = by_path("/gone")
check("/gone got exactly one attempt in all", len(gone) == 1, [(r["webhook_id"], r["status"]) for r in gone])
dis = {w["id"]: w["disabled"] for w in listing.get("webhooks", [])}
want_dis = {hook_ids[e]: e == "gone" for e in hook_ids}
check("GET /topics/%s/webhooks: /gone disabled, the others not" % topic, dis == want_dis,
      listing)

# -- /retry-after --------------------------------------------------------------------------
ra = by_path("/retry-after")
per = {}
for r in ra:
    per.setdefault(r["webhook_id"], []).append(r)
bad = [w for w, rs in per.items() if [x["status"] for x in rs] != [429, 200]]
check("/retry-after: each event came twice (429, then 200)", len(per) == N and not bad,
      {w: [x["status"] for x in rs] for w, rs in per.items()})
gaps = [rs[1]["t"] - rs[0]["t"] for rs in per.values() if len(rs) >= 2]
check("/retry-after: the retry waited >= 1 s (Retry-After: 1, not the 0.2 s schedule): "
      "min %.3f s, max %.3f s" % (min(gaps, default=0), max(gaps, default=0)),
      gaps and all(1.0 <= g <= 3.0 for g in gaps), ["%.3f" % g for g in gaps])
bad = [(rs[0]["webhook_timestamp"], rs[1]["webhook_timestamp"]) for rs in per.values()
       if len(rs) >= 2 and int(rs[1]["webhook_timestamp"]) < int(rs[0]["webhook_timestamp"]) + 1]
check("/retry-after: webhook-timestamp is the time of each attempt (moved by >= 1 s)", not bad, bad)

# -- /stats --------------------------------------------------------------------------------
w = stats["webhooks"]
rv = stats["received"]
n_recv = {p: len(by_path(p))
          for p in ("/ok", "/flaky", "/gone", "/retry-after", "/close", "/drop")}
want_attempts = sum(n_recv.values()) + N  # + the hub's own /hooks/receive
check("/stats webhooks: delivered %d == %d (6 endpoints x %d)" % (w["delivered"], 6 * N, N),
      w["delivered"] == 6 * N)
check("/stats webhooks: failed %d == %d (/gone)" % (w["failed"], N), w["failed"] == N)
check("/stats webhooks: retrying %d == 0" % w["retrying"], w["retrying"] == 0)
check("/stats webhooks: attempts %d == %d (requests the receivers saw)"
      % (w["attempts"], want_attempts), w["attempts"] == want_attempts, (w, n_recv))
check("/stats webhooks: endpoints_disabled %d >= 1" % w["endpoints_disabled"],
      w["endpoints_disabled"] >= 1)
check("/stats received: the hub's /hooks/receive verified all %d (library verify), none bad"
      % N, rv == {"webhooks": N, "bad_signature": 0}, rv)

# -- the hub's own verify against the reference signer -------------------------------------
wh = Webhook(self_secret)
body = json.dumps({"type": "ping", "data": {"from": "standardwebhooks"}}).encode()
t = datetime.now(tz=timezone.utc)
h = {"webhook-id": "msg_ref_1", "webhook-timestamp": str(int(t.timestamp())),
     "webhook-signature": wh.sign("msg_ref_1", t, body.decode()),
     "Content-Type": "application/json"}
old = datetime.fromtimestamp(int(t.timestamp()) - 600, tz=timezone.utc)
h_old = dict(h, **{"webhook-timestamp": str(int(old.timestamp())),
                   "webhook-signature": wh.sign("msg_ref_1", old, body.decode())})
h_two = dict(h, **{"webhook-signature": "v1,AAAA " + h["webhook-signature"]})
codes = [post(hub, "/hooks/receive", body, h),
         post(hub, "/hooks/receive", body, h_two),
         post(hub, "/hooks/receive", body + b" ", h),
         post(hub, "/hooks/receive", body, h_old)]
rv2 = get_json(hub, "/stats")["received"]
check("hub /hooks/receive: accepts a reference-signed message (also among 2 signatures), "
      "refuses a changed body and a 10-min-old timestamp: %s" % codes,
      codes[:2] == [204, 204] and codes[2:] == [401, 401]
      and rv2 == {"webhooks": N + 2, "bad_signature": 2}, (codes, rv2))
EOF
cat "$WORK/checks.txt"
PASSED=$((PASSED + $(grep -c '^ok ' "$WORK/checks.txt" || true)))
FAILED=$((FAILED + $(grep -c '^FAIL ' "$WORK/checks.txt" || true)))
if [ "$rc" -ne 0 ]; then
  fail "the checks stopped early (exit $rc):"
  tail -n 15 "$WORK/checks.stderr"
fi
for pid in "${PIDS[@]}"; do
  kill -0 "$pid" 2>/dev/null || fail "a process died during the run (pid $pid)"
done
finish
