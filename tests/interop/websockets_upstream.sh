#!/usr/bin/env bash
# The hub's WebSocket client (`--upstream TOPIC=ws://...`) against two Python `websockets`
# servers (the venv in tests/interop/.venv), one with compression="deflate" and one with
# compression=None: the handshake each sees, the text messages of 10 B to 2 MiB and a
# fragmented one published in order, a binary one skipped, a ping answered, a close 1001
# answered and redialed within a second, a message over 16 MiB closed 1009. The servers
# start first (their ports in READY), then the hub dials them; the checks are in
# websockets_upstream.py.
set -euo pipefail
SCRIPT_NAME=websockets-upstream
source "$(dirname "$0")/common.bash"
install_traps

ensure_venv "${PY_REQUIREMENTS[@]}"
build_example hub
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pushwire-upstream.XXXXXX")
TMPDIRS+=("$WORK")
READY="$WORK/ports" HUB_FILE="$WORK/hub" OUT="$WORK/out"
# The Python side first: it serves the upstreams and runs the checks, bounded by timeout.
timeout --kill-after=5 60 "$VENV/bin/python" "$INTEROP/websockets_upstream.py" \
  "$READY" "$HUB_FILE" >"$OUT" 2>&1 &
PY_PID=$!
PIDS+=("$PY_PID")
for _ in $(seq 200); do
  [ -s "$READY" ] && break
  kill -0 "$PY_PID" 2>/dev/null || break
  sleep 0.1
done
rc=0
if [ -s "$READY" ]; then
  read -r DEFLATE_PORT PLAIN_PORT <"$READY"
  log "websockets servers on ports $DEFLATE_PORT (deflate) and $PLAIN_PORT (plain)"
  # Events up to 2 MiB: the per-topic history must keep them all.
  if PUSHWIRE_LOG=info start_example hub --history-bytes $((8 << 20)) \
    --upstream "up-deflate=ws://127.0.0.1:$DEFLATE_PORT/feed?via=deflate" \
    --upstream "up-plain=ws://127.0.0.1:$PLAIN_PORT/feed?via=plain"; then
    echo "$ADDR" >"$HUB_FILE.tmp" && mv "$HUB_FILE.tmp" "$HUB_FILE"
  fi
  tail -n +1 -f --pid="$PY_PID" "$OUT"
else
  log "the websockets servers did not start within 20 s"
  cat "$OUT"
fi
wait "$PY_PID" || rc=$?
if [ "$rc" -ne 0 ]; then
  if [ -n "${SERVER_LOG:-}" ]; then
    echo "hub stderr (tail):"
    tail -n 20 "$SERVER_LOG"
  fi
  # the script died before its own summary (timeout, import error): still close with one
  if ! grep -q '^websockets upstream interop: ' "$OUT"; then
    echo "websockets upstream interop: 0 passed, 1 failed"
  fi
fi
exit "$rc"
