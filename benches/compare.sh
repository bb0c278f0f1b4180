#!/usr/bin/env bash
# Echo throughput of pushwire against tokio-tungstenite, one command, one machine.
#
#   bash benches/compare.sh
#
# Builds (release) the `echo` example, benches/tt-echo and the ws_load loader, then for each
# message size runs pushwire's echo and then tt-echo, one after the other, each freshly
# started, the server pinned to one core and the loader to another, and prints msgs/s for
# both and the ratio pushwire / tokio-tungstenite; then the same per second of CPU time the
# server got, the steadier figure when other work shares the server's core (the loader's
# lines show each server's CPU share; near 1 means it had its core to itself).
#
# Settings (environment): SIZES ("64 16384"), CONNS (64), DEPTH (16), SECS (5), WARMUP (1),
# SERVER_CORE (0), LOADER_CORE (1), PW_PORT (19101), TT_PORT (19102),
# PUSHWIRE_ECHO / TT_ECHO (use these server binaries instead of building them).
# Servers listen on 127.0.0.1 only and are killed when the script exits, however it exits.
set -euo pipefail

cd "$(dirname "$0")/.."

SIZES=${SIZES:-"64 16384"}
CONNS=${CONNS:-64}
DEPTH=${DEPTH:-16}
SECS=${SECS:-5}
WARMUP=${WARMUP:-1}
SERVER_CORE=${SERVER_CORE:-0}
LOADER_CORE=${LOADER_CORE:-1}
PW_PORT=${PW_PORT:-19101}
TT_PORT=${TT_PORT:-19102}

die() { echo "compare.sh: $*" >&2; exit 1; }

command -v taskset >/dev/null || die "taskset not found (it comes with util-linux)"
[ "$(nproc)" -ge 2 ] || die "need 2 cores to pin server and loader apart"

if [ -z "${PUSHWIRE_ECHO:-}" ]; then
    cargo build --release --example echo >&2 || die "cannot build the echo example"
    PUSHWIRE_ECHO=target/release/examples/echo
fi
if [ -z "${TT_ECHO:-}" ]; then
    (cd benches/tt-echo && cargo build --release >&2) || die "cannot build benches/tt-echo"
    TT_ECHO=benches/tt-echo/target/release/tt-echo
fi
LOADER=$(cargo bench -p pushwire-benches --bench ws_load --no-run 2>&1 \
    | sed -n 's/.*Executable .*ws_load.rs (\(.*\))$/\1/p' | tail -n 1)
[ -x "$LOADER" ] || die "cannot build or find the ws_load bench binary"

SERVER_PID=
RATE=
CPU_RATE=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# run_one BINARY PORT SIZE LABEL: sets RATE and CPU_RATE, prints the loader's line.
# Runs in this shell, not in a $(...) subshell, so a failure's exit still fires the trap.
run_one() {
    local bin=$1 port=$2 size=$3 label=$4 line
    port_open "$port" && die "something already listens on 127.0.0.1:$port"
    taskset -c "$SERVER_CORE" "$bin" --addr "127.0.0.1:$port" >/dev/null 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        port_open "$port" && break
        kill -0 "$SERVER_PID" 2>/dev/null || die "$label exited at start"
        sleep 0.1
    done
    port_open "$port" || die "$label does not listen on 127.0.0.1:$port after 10 s"
    line=$(taskset -c "$LOADER_CORE" "$LOADER" --addr "127.0.0.1:$port" --label "$label" \
        --conns "$CONNS" --depth "$DEPTH" --size "$size" --secs "$SECS" --warmup "$WARMUP" \
        --server-pid "$SERVER_PID") || die "load run against $label failed"
    kill -0 "$SERVER_PID" 2>/dev/null || die "$label died during the run"
    cleanup
    echo "$line"
    RATE=$(field msgs_per_sec "$line")
    CPU_RATE=$(field msgs_per_server_cpu_sec "$line")
}

field() { echo "$2" | sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "na" }'; }

echo "compare: conns=$CONNS depth=$DEPTH secs=$SECS warmup=$WARMUP" \
    "server on core $SERVER_CORE, loader on core $LOADER_CORE"
for size in $SIZES; do
    run_one "$PUSHWIRE_ECHO" "$PW_PORT" "$size" pushwire
    pw=$RATE pw_cpu=$CPU_RATE
    run_one "$TT_ECHO" "$TT_PORT" "$size" tokio-tungstenite
    tt=$RATE tt_cpu=$CPU_RATE
    echo "size=$size pushwire_msgs_per_sec=$pw tokio_tungstenite_msgs_per_sec=$tt" \
        "ratio=$(ratio "$pw" "$tt")" \
        "per_server_cpu_sec: pushwire=$pw_cpu tokio_tungstenite=$tt_cpu" \
        "ratio=$(ratio "$pw_cpu" "$tt_cpu")"
done
