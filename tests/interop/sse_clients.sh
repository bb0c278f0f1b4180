#!/usr/bin/env bash
# Third-party SSE clients against the hub's /topics/T/sse (hub with --history-events 3):
#  - `curl -N`: the exact bytes of the stream (live, Last-Event-ID resume, the gap event,
#    ?last_event_id=, HTTP/1.0);
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
check "publish 1" '{"topic":"'"$T"'","id":1}' "$(post "$T" 'one')"
post "$T" $'two\nlines' multi >/dev/null
post "$T" '' >/dev/null
check "curl: live events, exact bytes (multi-line, empty data)" \
  "$(expect eval 'ev 1 "" one; ev 2 multi two lines; ev 3 "" ""')" "$(sse_take live 3)"

post "$T" $'four\r\nCRLF\rCR' >/dev/null
post "$T" 'fünf ✓ 🎉' unicode >/dev/null
sse_open resume "$BASE/topics/$T/sse" -H 'Last-Event-ID: 3'
check "curl: Last-Event-ID: 3 resumes with 4, 5 (CRLF and CR split into data lines)" \
  "$(expect eval 'ev 4 "" four CRLF CR; ev 5 unicode "fünf ✓ 🎉"')" "$(sse_take resume 2)"
sse_open gap "$BASE/topics/$T/sse" -H 'Last-Event-ID: 1'
check "curl: a too-old Last-Event-ID gets the gap event (no id), then 3, 4, 5" \
  "$(expect eval 'printf "event: gap\ndata: 3\n\n"; ev 3 "" ""; ev 4 "" four CRLF CR; ev 5 unicode "fünf ✓ 🎉"')" \
  "$(sse_take gap 4)"
sse_open query "$BASE/topics/$T/sse?last_event_id=4"
check "curl: ?last_event_id=4 resumes with 5" "$(expect ev 5 unicode 'fünf ✓ 🎉')" "$(sse_take query 1)"
sse_open http10 "$BASE/topics/$T/sse" --http1.0 -H 'Last-Event-ID: 4'
check "curl: HTTP/1.0 stream is not chunked" "" "$(grep -i '^transfer-encoding:' "$WORK/http10.head" || true)"
check "curl: HTTP/1.0 stream (close-delimited) resumes with 5" "$(expect ev 5 unicode 'fünf ✓ 🎉')" "$(sse_take http10 1)"
sse_open golive "$BASE/topics/$T/sse" -H 'Last-Event-ID: 5'
post "$T" 'six' >/dev/null
check "curl: resumed at the last id, then live" "$(expect ev 6 "" six)" "$(sse_take golive 1)"

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
