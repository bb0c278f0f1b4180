#!/usr/bin/env bash
# The Python `websockets` package (a venv in tests/interop/.venv) as a real client of the
# hub: subscribe to /topics/T/ws, publish over WebSocket and HTTP, ?since= replay and gap,
# close codes. The checks are in websockets_client.py.
set -euo pipefail
SCRIPT_NAME=websockets
source "$(dirname "$0")/common.bash"
install_traps

ensure_venv "${PY_REQUIREMENTS[@]}"
build_example hub
start_example hub --history-events 50
OUT=$(mktemp "${TMPDIR:-/tmp}/pushwire-ws.XXXXXX")
TMPDIRS+=("$OUT")
rc=0
timeout --kill-after=5 120 "$VENV/bin/python" "$INTEROP/websockets_client.py" "$ADDR" 2>&1 |
  tee "$OUT" || rc=$? # pipefail: the client's status
if [ "$rc" -ne 0 ]; then
  echo "hub stderr (tail):"
  tail -n 20 "$SERVER_LOG"
  # the client died before its own summary (timeout, import error): still close with one
  if ! grep -q '^websockets interop: ' "$OUT"; then
    echo "websockets interop: 0 passed, 1 failed"
  fi
fi
exit "$rc"
