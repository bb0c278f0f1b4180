#!/usr/bin/env bash
# permessage-deflate (RFC 7692) with the Python `websockets` package (compression="deflate",
# the venv in tests/interop/.venv) and a raw-socket client, against the hub and the echo
# example: the negotiation, compressed broadcasts next to plain subscribers, compressed
# echoes of every size, fragments, window sizes, and the limits (a decompression bomb 1009,
# corrupt data 1007, RSV1 on a Ping 1002). The checks are in websockets_deflate.py.
set -euo pipefail
SCRIPT_NAME=websockets-deflate
source "$(dirname "$0")/common.bash"
install_traps

ensure_venv "${PY_REQUIREMENTS[@]}"
build_example hub
build_example echo
start_example hub
HUB_ADDR=$ADDR HUB_LOG=$SERVER_LOG
start_example echo
ECHO_ADDR=$ADDR ECHO_LOG=$SERVER_LOG ECHO_PID=${PIDS[-1]}
OUT=$(mktemp "${TMPDIR:-/tmp}/pushwire-deflate.XXXXXX")
TMPDIRS+=("$OUT")
rc=0
timeout --kill-after=5 120 "$VENV/bin/python" "$INTEROP/websockets_deflate.py" \
  "$HUB_ADDR" "$ECHO_ADDR" "$ECHO_PID" 2>&1 | tee "$OUT" || rc=$? # pipefail: the client's status
if [ "$rc" -ne 0 ]; then
  echo "hub stderr (tail):"
  tail -n 20 "$HUB_LOG"
  echo "echo stderr (tail):"
  tail -n 20 "$ECHO_LOG"
  # the client died before its own summary (timeout, import error): still close with one
  if ! grep -q '^websockets-deflate interop: ' "$OUT"; then
    echo "websockets-deflate interop: 0 passed, 1 failed"
  fi
fi
exit "$rc"
