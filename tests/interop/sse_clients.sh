#!/usr/bin/env bash
# Third-party SSE clients against the hub's /topics/T/sse (hub with --history-events 3):
#  - `curl -N`: the exact bytes of the stream (live, Last-Event-ID resume, the gap event,
#    ?last_event_id=, HTTP/1.0);
# Ids: a topic's first id is the hub's clock in microseconds (F, learned from the first
# publish's answer), then F + 1, ...; the gap rule: after Last-Event-ID N > 0 the gap event
# comes exactly when the first event sent is not N + 1; from 0 only when the history was
# trimmed.
#  - the Python `sseclient-py` package (sse_clients.py): multi-line, CR/CRLF, unicode and
#    empty data come back exactly (CR and CRLF as LF), ids in order, resume and gap.
set -euo pipefail
SCRIPT_NAME=sse
source "$(dirname "$0")/common.bash"
install_traps

ensure_venv "${PY_REQUIREMENTS[@]}"
build_example hub
start_example hub --history-events 3
BASE="http://$ADDR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pushwire-sse.XXXXXX")
TMPDIRS+=("$WORK")

post() { # post TOPIC DATA [EVENT]: publish, print the hub's answer
  local url="$BASE/topics/$1"
  [ $# -ge 3 ] && url+="?event=$3"
  curl -sS --max-time 5 --data-binary "$2" "$url"
}

# sse_open NAME URL [CURL ARGS...]: `curl -N` the stream into $WORK/NAME.{head,body};
# returns once the response head arrived (the hub subscribes the stream before it sends
# the head, so anything published afterwards reaches it). At most 5 s.
declare -A CURL_PID
sse_open() {
  local name=$1 url=$2
  shift 2
  curl -sN --max-time 20 -D "$WORK/$name.head" -o "$WORK/$name.body" "$@" "$url" &
  PIDS+=($!)
  CURL_PID[$name]=$!
  local i
  for i in $(seq 100); do
    grep -q $'^\r$' "$WORK/$name.head" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "no response head for $name within 5 s" >&2
  return 1
}

# Number of complete events (blocks with a data line, ended by a blank line) in a body.
count_events() {
  awk '/^data:/ { d = 1 } /^$/ { if (d) n++; d = 0 } END { print n + 0 }' "$1" 2>/dev/null || echo 0
}

# sse_take NAME N: waits (at most 5 s) for N events, stops that curl and prints the body
# without comment lines and retry: lines (heartbeats and the reconnect hint may come at any
# time), keeping every byte of the events themselves.
sse_take() {
  local name=$1 n=$2 i
  for i in $(seq 100); do
    [ "$(count_events "$WORK/$name.body")" -ge "$n" ] && break
    sleep 0.05
  done
  sleep 0.1 # anything extra (a duplicate) would show up too
  kill "${CURL_PID[$name]}" 2>/dev/null || true
  wait "${CURL_PID[$name]}" 2>/dev/null || true
  awk 'BEGIN { RS = ""; ORS = "\n\n" }
       { out = ""; n = split($0, l, "\n")
         for (i = 1; i <= n; i++) if (l[i] !~ /^(:|retry:)/) out = out l[i] "\n"
         if (out != "") printf "%s\n", out }' "$WORK/$name.body"
  echo . # keeps trailing newlines through $( )
}

# ev ID EVENT DATA-LINE...: one event as the hub writes it (EVENT "" = no event line).
ev() {
  printf 'id: %s\n' "$1"
  [ -n "$2" ] && printf 'event: %s\n' "$2"
  shift 2
  local line
  for line in "$@"; do printf 'data: %s\n' "$line"; done
  printf '\n'
}
expect() { "$@"; echo .; }

T="curl-$$"
echo "== curl -N"
sse_open live "$BASE/topics/$T/sse"
head=$(tr -d '\r' <"$WORK/live.head")
check "curl: status 200" "HTTP/1.1 200 OK" "$(head -n1 <<<"$head")"
check "curl: Content-Type" "content-type: text/event-stream" "$(grep -i '^content-type:' <<<"$head" | tr 'A-Z' 'a-z')"
check "curl: Cache-Control" "cache-control: no-cache" "$(grep -i '^cache-control:' <<<"$head" | tr 'A-Z' 'a-z')"
check "curl: chunked on HTTP/1.1" "transfer-encoding: chunked" "$(grep -i '^transfer-encoding:' <<<"$head" | tr 'A-Z' 'a-z')"
answer=$(post "$T" 'one')
F=$(sed -n 's/^{"topic":"'"$T"'","id":\([0-9]\{1,16\}\)}$/\1/p' <<<"$answer")
now_us=$(($(date +%s%N) / 1000))
if [ -n "$F" ] && [ "$F" -le "$now_us" ] && [ "$F" -gt $((now_us - 60000000)) ]; then
  pass "publish 1: the first id ($F) is the Unix time in microseconds"
else
  fail "publish 1: the first id is the Unix time in microseconds" "an id near $now_us" "$answer"
  F=1 # go on: the checks below compare ids relative to the first one
fi
nth() { echo $((F + $1 - 1)); } # nth K: the K-th event's id
check "publish 2 gets the next id" '{"topic":"'"$T"'","id":'"$(nth 2)"'}' "$(post "$T" $'two\nlines' multi)"
post "$T" '' >/dev/null
check "curl: live events, exact bytes (multi-line, empty data)" \
  "$(expect eval 'ev $(nth 1) "" one; ev $(nth 2) multi two lines; ev $(nth 3) "" ""')" "$(sse_take live 3)"
sse_open start "$BASE/topics/$T/sse" -H 'Last-Event-ID: 0'
check "curl: Last-Event-ID: 0 with nothing trimmed: every event, no gap event" \
  "$(expect eval 'ev $(nth 1) "" one; ev $(nth 2) multi two lines; ev $(nth 3) "" ""')" "$(sse_take start 3)"

post "$T" $'four\r\nCRLF\rCR' >/dev/null
post "$T" 'fünf ✓ 🎉' unicode >/dev/null
# History 3: events 3, 4, 5 are kept.
sse_open resume "$BASE/topics/$T/sse" -H "Last-Event-ID: $(nth 3)"
check "curl: Last-Event-ID: <3rd> resumes with 4, 5 (CRLF and CR split into data lines)" \
  "$(expect eval 'ev $(nth 4) "" four CRLF CR; ev $(nth 5) unicode "fünf ✓ 🎉"')" "$(sse_take resume 2)"
sse_open nogap "$BASE/topics/$T/sse" -H "Last-Event-ID: $(nth 2)"
check "curl: Last-Event-ID just before the oldest kept: 3, 4, 5 and no gap event" \
  "$(expect eval 'ev $(nth 3) "" ""; ev $(nth 4) "" four CRLF CR; ev $(nth 5) unicode "fünf ✓ 🎉"')" \
  "$(sse_take nogap 3)"
gap_then_kept='printf "event: gap\ndata: %s\n\n" $(nth 3); ev $(nth 3) "" ""; ev $(nth 4) "" four CRLF CR; ev $(nth 5) unicode "fünf ✓ 🎉"'
sse_open gap "$BASE/topics/$T/sse" -H "Last-Event-ID: $(nth 1)"
check "curl: a too-old Last-Event-ID (1st, 2nd trimmed) gets the gap event (no id), then 3, 4, 5" \
  "$(expect eval "$gap_then_kept")" "$(sse_take gap 4)"
sse_open restart "$BASE/topics/$T/sse" -H 'Last-Event-ID: 41'
check "curl: a Last-Event-ID from another id range (41, before a restart): gap event, then 3, 4, 5" \
  "$(expect eval "$gap_then_kept")" "$(sse_take restart 4)"
sse_open trimmed "$BASE/topics/$T/sse?last_event_id=0"
check "curl: ?last_event_id=0 with the history trimmed: gap event, then 3, 4, 5" \
  "$(expect eval "$gap_then_kept")" "$(sse_take trimmed 4)"
sse_open query "$BASE/topics/$T/sse?last_event_id=$(nth 4)"
check "curl: ?last_event_id=<4th> resumes with 5" "$(expect ev "$(nth 5)" unicode 'fünf ✓ 🎉')" "$(sse_take query 1)"
sse_open http10 "$BASE/topics/$T/sse" --http1.0 -H "Last-Event-ID: $(nth 4)"
check "curl: HTTP/1.0 stream is not chunked" "" "$(grep -i '^transfer-encoding:' "$WORK/http10.head" || true)"
check "curl: HTTP/1.0 stream (close-delimited) resumes with 5" "$(expect ev "$(nth 5)" unicode 'fünf ✓ 🎉')" "$(sse_take http10 1)"
sse_open golive "$BASE/topics/$T/sse" -H "Last-Event-ID: $(nth 5)"
post "$T" 'six' >/dev/null
check "curl: resumed at the last id, then live" "$(expect ev "$(nth 6)" "" six)" "$(sse_take golive 1)"

echo "== sseclient-py"
py_out="$WORK/py.out"
py_rc=0
INTEROP_NO_SUMMARY=1 timeout --kill-after=5 120 \
  "$VENV/bin/python" "$INTEROP/sse_clients.py" "$ADDR" >"$py_out" 2>&1 || py_rc=$?
cat "$py_out"
PASSED=$((PASSED + $(grep -c '^ok ' "$py_out" || true)))
FAILED=$((FAILED + $(grep -c '^FAIL ' "$py_out" || true)))
if [ "$py_rc" -ne 0 ] && ! grep -q '^FAIL ' "$py_out"; then
  fail "sse_clients.py exited with $py_rc"
fi
if [ "$FAILED" -ne 0 ]; then
  echo "hub stderr (tail):"
  tail -n 20 "$SERVER_LOG"
fi
summary "sse interop"
