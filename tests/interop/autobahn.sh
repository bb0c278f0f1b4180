#!/usr/bin/env bash
# Autobahn|TestSuite fuzzing client against examples/echo.rs: every case, the
# permessage-deflate ones (12.*, 13.*) included, must end OK, NON-STRICT or INFORMATIONAL.
#
# Needs ../shared/autobahn beside the repo root (its setup.sh installs wstest under
# $AUTOBAHN_HOME, default ~/.cache/autobahn). The testee is a release build of
# examples/echo.rs (permessage-deflate on, as by default). 12.* and 13.* send thousands of
# compressed messages through wstest's Python 2 code and take minutes, so the cases run in
# AUTOBAHN_SHARDS (default 3) wstest processes at once against the one echo server, each
# with its own report dir under target/autobahn-report/ (override: AUTOBAHN_OUTDIR); one
# JSON per case explains any failure. The last line adds the shards up.
#   AUTOBAHN_CASES='1.*,9.1.1'   run a subset in one shard (default: all, sharded)
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
mkdir -p "$OUTDIR"
# The shards, by measured duration: 12.* is about 310 s of cases, 13.* about 250 s, the
# rest 20 s.
if [ -n "${AUTOBAHN_CASES:-}" ]; then
  SHARDS=("$AUTOBAHN_CASES")
else
  case ${AUTOBAHN_SHARDS:-3} in
    1) SHARDS=('*') ;;
    2) SHARDS=('1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*,12.1.*,12.2.*,12.3.*' '12.4.*,12.5.*,13.*') ;;
    *) SHARDS=('1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*,12.1.*,12.2.*' '12.3.*,12.4.*,12.5.*,13.1.*' '13.2.*,13.3.*,13.4.*,13.5.*,13.6.*,13.7.*') ;;
  esac
fi
RUNS=()
for n in "${!SHARDS[@]}"; do
  # Each run is bounded (AUTOBAHN_TIMEOUT, plus `timeout` inside run-server.sh) and in its
  # own process group so the EXIT trap can stop wstest too.
  AUTOBAHN_OUTDIR=$OUTDIR/shard$n AUTOBAHN_AGENT=pushwire AUTOBAHN_TIMEOUT=${AUTOBAHN_TIMEOUT:-1200} \
    setsid "$SHARED/autobahn/run-server.sh" "ws://$ADDR" "${SHARDS[$n]}" '' \
    >"$OUTDIR/shard$n.log" 2>&1 </dev/null &
  RUNS+=($!)
  PIDS+=("-$!")
done
rc=0
for pid in "${RUNS[@]}"; do
  wait "$pid" || rc=1
done
passed=0 failed=0
for n in "${!SHARDS[@]}"; do
  log "shard $n: ${SHARDS[$n]}"
  # summarize.py's output (counts by behavior, failing cases, and the closing line).
  sed -n '/^== wstest exit/,$p' "$OUTDIR/shard$n.log" | grep -v '^autobahn: ' || true
  line=$(tail -n1 "$OUTDIR/shard$n.log")
  if [[ $line =~ ^autobahn:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
    passed=$((passed + BASH_REMATCH[1]))
    failed=$((failed + BASH_REMATCH[2]))
  else
    tail -n 30 "$OUTDIR/shard$n.log"
    failed=$((failed + 1))
  fi
done
if ! kill -0 "${PIDS[0]}" 2>/dev/null; then
  echo "the echo server died during the run; its stderr:"
  tail -n 20 "$SERVER_LOG"
  rc=1
fi
[ "$failed" -eq 0 ] || rc=1
echo "autobahn: $passed passed, $failed failed"
exit "$rc"
