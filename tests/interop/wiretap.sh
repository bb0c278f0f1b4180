#!/usr/bin/env bash
# The wire tap (examples/wiretap.rs) in front of the hub, with real third-party clients
# going through it: curl publishes and reads an SSE stream (`curl -N`), and the Python
# `websockets` client runs a session with permessage-deflate (it offers the extension by
# default). The tap's lines are checked for each, and every client must get exactly what
# it gets without the tap (the tap alters nothing).
set -euo pipefail
SCRIPT_NAME=wiretap
source "$(dirname "$0")/common.bash"
install_traps

ensure_venv "${PY_REQUIREMENTS[@]}"
build_example hub
build_example wiretap
start_example hub
HUB=$ADDR
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target="$ROOT/$target" ;; esac
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pushwire-wiretap.XXXXXX")
TMPDIRS+=("$WORK")
"$target/release/examples/wiretap" --listen 127.0.0.1:0 --upstream "$HUB" \
  >"$WORK/lines" 2>"$WORK/stderr" &
PIDS+=($!)
TAP=""
for _ in $(seq 100); do
  TAP=$(sed -n 's/^wiretap: listening on \([^,]*\),.*/\1/p' "$WORK/stderr")
  [ -n "$TAP" ] && break
  sleep 0.1
done
if [ -z "$TAP" ]; then
  log "the wiretap printed no address: $(cat "$WORK/stderr")"
  echo "wiretap interop: 0 passed, 1 failed"
  exit 1
fi
log "wiretap on $TAP in front of the hub on $HUB"

# has NAME PATTERN: some line of the tap's output matches the extended regex PATTERN
# (waits up to 5 s for it).
has() {
  for _ in $(seq 50); do
    if grep -Eq -- "$2" "$WORK/lines"; then
      pass "$1"
      return 0
    fi
    sleep 0.1
  done
  fail "$1" "a line matching $2" "$(tail -n 5 "$WORK/lines")"
}

# --- a publish with curl
got=$(curl -s -d hello "http://$TAP/topics/demo")
case $got in
  '{"topic":"demo","id":'*'}') pass "curl gets the hub's answer through the tap" ;;
  *) fail "curl gets the hub's answer through the tap" '{"topic":"demo","id":...}' "$got" ;;
esac
has "the publish's request line" '^#[0-9]+ > HTTP POST /topics/demo 5 bytes$'
has "the publish's body" '^#[0-9]+ > HTTP body 5 bytes "hello"$'
has "the publish's answer" '^#[0-9]+ < HTTP 201 Created application/json [0-9]+ bytes$'

# --- an SSE stream read by curl -N, and a publish it hears
curl -s -N -m 4 "http://$TAP/topics/demo/sse?since=0" >"$WORK/sse" 2>/dev/null &
SSE_PID=$!
has "the SSE stream's head" '^#[0-9]+ < HTTP 200 OK text/event-stream chunked$'
id=$(curl -s -d 'to sse' "http://127.0.0.1:${HUB##*:}/topics/demo" | sed 's/.*"id":\([0-9]*\).*/\1/')
has "an event as the tap reads it" "^#[0-9]+ < SSE id=$id event=- data=\"to sse\"\$"
wait "$SSE_PID" || true
if grep -q "^data: to sse$" "$WORK/sse" && grep -q "^id: $id$" "$WORK/sse"; then
  pass "curl -N got the event unchanged"
else
  fail "curl -N got the event unchanged" "id: $id / data: to sse" "$(cat "$WORK/sse")"
fi

# --- a WebSocket session by the Python websockets client, permessage-deflate agreed
timeout --kill-after=5 60 "$VENV/bin/python" - "$TAP" "$HUB" >"$WORK/ws" 2>&1 <<'PY' || true
import asyncio, json, sys, urllib.request
import websockets

tap, hub = sys.argv[1], sys.argv[2]
big = "pushwire " * 40

async def main():
    async with websockets.connect(f"ws://{tap}/topics/wt/ws") as ws:
        print("extensions", [e.name for e in ws.protocol.extensions])
        urllib.request.urlopen(urllib.request.Request(
            f"http://{hub}/topics/wt", data=big.encode(), method="POST")).read()
        msg = json.loads(await ws.recv())
        print("event ok" if msg["data"] == big else f"event wrong {msg!r}")
        pong = await ws.ping(b"tap")
        await asyncio.wait_for(pong, 5)
        print("pong ok")
        await ws.send("x" * 300)
    print("closed", ws.close_code)

asyncio.run(main())
PY
check "websockets negotiated permessage-deflate through the tap" \
  "extensions ['permessage-deflate']" "$(grep '^extensions' "$WORK/ws" || cat "$WORK/ws")"
check "websockets got the compressed event unchanged" "event ok" "$(grep '^event' "$WORK/ws" || true)"
check "websockets got its pong" "pong ok" "$(grep '^pong' "$WORK/ws" || true)"
check "websockets closed with 1000" "closed 1000" "$(grep '^closed' "$WORK/ws" || true)"
has "the upgrade request" '^#[0-9]+ > HTTP GET /topics/wt/ws upgrade=websocket$'
has "the 101 names the extension" '^#[0-9]+ < HTTP 101 Switching Protocols permessage-deflate'
has "the server's compressed text, inflated for display" \
  '^#[0-9]+ < WS text fin rsv1 len=[0-9]+ compressed inflated=[0-9]+ "\{\\"id\\":'
has "the client's masked ping" '^#[0-9]+ > WS ping "tap" masked$'
has "the server's pong, unmasked" '^#[0-9]+ < WS pong "tap"$'
has "the client's compressed masked text" \
  '^#[0-9]+ > WS text fin rsv1 masked len=[0-9]+ compressed inflated=300 "xxxx'
has "the client's close" '^#[0-9]+ > WS close 1000 "" masked$'
has "the server's close" '^#[0-9]+ < WS close 1000 ""$'
if grep -Eq '^#[0-9]+ < WS .*masked' "$WORK/lines"; then
  fail "no server frame is masked" "none" "$(grep -E '^#[0-9]+ < WS .*masked' "$WORK/lines")"
else
  pass "no server frame is masked"
fi
if grep -q ' RAW ' "$WORK/lines"; then
  fail "every byte was decoded" "no RAW line" "$(grep ' RAW ' "$WORK/lines")"
else
  pass "every byte was decoded"
fi
summary "wiretap interop"
