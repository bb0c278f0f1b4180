#!/usr/bin/env bash
# Autobahn|TestSuite fuzzing *server* against pushwire's WebSocket client
# (examples/autobahn_client.rs): every case 1-13, permessage-deflate included, must end OK,
# NON-STRICT or INFORMATIONAL.
#
# The 12.* and 13.* cases take minutes in wstest's Python 2 code, so the cases are split
# over AUTOBAHN_SHARDS (default 3) fuzzing servers on their own ports, each driven by its
# own client process; reports land in target/autobahn-client-report/shardN (override:
# AUTOBAHN_OUTDIR). The last line adds the shards up.
#   AUTOBAHN_CASES='1.*,9.1.1'   run a subset in one shard (default: all, sharded)
set -euo pipefail
SCRIPT_NAME=autobahn_client
source "$(dirname "$0")/common.bash"
install_traps

SHARED=$(shared_dir)
"$SHARED/autobahn/setup.sh" >/dev/null
build_example autobahn_client
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target="$ROOT/$target" ;; esac
CLIENT="$target/release/examples/autobahn_client"

OUTDIR=${AUTOBAHN_OUTDIR:-$ROOT/target/autobahn-client-report}
rm -rf "$OUTDIR"
mkdir -p "$OUTDIR"
if [ -n "${AUTOBAHN_CASES:-}" ]; then
  SHARDS=("$AUTOBAHN_CASES")
else
  case ${AUTOBAHN_SHARDS:-3} in
    1) SHARDS=('*') ;;
    2) SHARDS=('1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*,12.1.*,12.2.*,12.3.*' '12.4.*,12.5.*,13.*') ;;
    *) SHARDS=('1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*,12.1.*,12.2.*' '12.3.*,12.4.*,12.5.*,13.1.*' '13.2.*,13.3.*,13.4.*,13.5.*,13.6.*,13.7.*') ;;
  esac
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

CLIENTS=()
for n in "${!SHARDS[@]}"; do
  port=$(free_port)
  AUTOBAHN_OUTDIR=$OUTDIR/shard$n setsid "$SHARED/autobahn/run-client-server.sh" "$port" \
    "${SHARDS[$n]}" '' >"$OUTDIR/server$n.log" 2>&1 </dev/null &
  PIDS+=("-$!")
  up=0
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
    sleep 0.1
  done
  if [ "$up" -ne 1 ]; then
    tail -n 20 "$OUTDIR/server$n.log"
    echo "autobahn client: 0 passed, 1 failed"
    exit 1
  fi
  # Bounded: every case has its own timeout in wstest; the whole run at most 20 min.
  timeout --kill-after=5 "${AUTOBAHN_TIMEOUT:-1200}" "$CLIENT" "ws://127.0.0.1:$port" \
    >"$OUTDIR/client$n.log" 2>&1 &
  CLIENTS+=($!)
  PIDS+=($!)
done
rc=0
for n in "${!CLIENTS[@]}"; do
  wait "${CLIENTS[$n]}" || { rc=1; log "client $n failed: $(tail -n 3 "$OUTDIR/client$n.log")"; }
done
passed=0 failed=0
for n in "${!SHARDS[@]}"; do
  log "shard $n: ${SHARDS[$n]}"
  out=$(python3 "$SHARED/autobahn/summarize.py" "$OUTDIR/shard$n" 2>&1) || rc=1
  echo "$out" | grep -v '^autobahn: ' || true
  line=$(echo "$out" | tail -n1)
  if [[ $line =~ ^autobahn:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
    passed=$((passed + BASH_REMATCH[1]))
    failed=$((failed + BASH_REMATCH[2]))
  else
    failed=$((failed + 1))
  fi
done
[ "$failed" -eq 0 ] || rc=1
echo "autobahn client: $passed passed, $failed failed"
exit "$rc"
