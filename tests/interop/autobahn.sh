#!/usr/bin/env bash
# Autobahn|TestSuite fuzzing client against examples/echo.rs: every case except 12.* and
# 13.* (permessage-deflate, not implemented) must end OK, NON-STRICT or INFORMATIONAL.
#
# Needs ../shared/autobahn beside the repo root (its setup.sh installs wstest under
# $AUTOBAHN_HOME, default ~/.cache/autobahn). The report lands in target/autobahn-report/
# (override: AUTOBAHN_OUTDIR), the run's log beside it; one JSON per case explains any
# failure. The testee is a release build of examples/echo.rs.
#   AUTOBAHN_CASES='1.*,9.1.1'   run a subset (default: all)
set -euo pipefail
SCRIPT_NAME=autobahn
source "$(dirname "$0")/common.bash"
install_traps

SHARED=$(shared_dir)
"$SHARED/autobahn/setup.sh" >/dev/null

build_example echo
start_example echo

OUTDIR=${AUTOBAHN_OUTDIR:-$ROOT/target/autobahn-report}
rm -rf "$OUTDIR"
# The run is bounded (AUTOBAHN_TIMEOUT, plus `timeout` inside run-server.sh); it takes
# about 20 s. It runs in its own process group so the EXIT trap can stop wstest too.
AUTOBAHN_OUTDIR=$OUTDIR AUTOBAHN_AGENT=pushwire AUTOBAHN_TIMEOUT=${AUTOBAHN_TIMEOUT:-600} \
  setsid "$SHARED/autobahn/run-server.sh" "ws://$ADDR" "${AUTOBAHN_CASES:-*}" '12.*,13.*' \
  >"$OUTDIR.log" 2>&1 </dev/null &
RUN_PID=$!
PIDS+=("-$RUN_PID")
rc=0
wait "$RUN_PID" || rc=$?
# summarize.py's output (counts by behavior, failing cases, and the closing line).
sed -n '/^== wstest exit/,$p' "$OUTDIR.log"
if ! kill -0 "${PIDS[0]}" 2>/dev/null; then
  echo "the echo server died during the run; its stderr:"
  tail -n 20 "$SERVER_LOG"
  rc=1
fi
if [ "$rc" -ne 0 ] && ! tail -n1 "$OUTDIR.log" | grep -q '^autobahn: '; then
  tail -n 30 "$OUTDIR.log"
  echo "autobahn: 0 passed, 1 failed"
fi
exit "$rc"
