#!/usr/bin/env bash
# Instructions the echo server executes per round trip, counted by valgrind (callgrind):
# a figure the noise of a shared machine barely moves, for comparing builds whose msgs/s
# differ by less than that noise (e.g. before and after a change that should not matter).
#
#   bash benches/ir_compare.sh
#   ECHOS="head=target/release/examples/echo base=/tmp/pre-tls/target/release/examples/echo" \
#       bash benches/ir_compare.sh
#
# For each message size and each LABEL=BINARY of ECHOS (default: this build's echo, built
# here) it runs that echo server under `valgrind --tool=callgrind` (pinned to SERVER_CORE),
# loads it over ws:// with ws_load for SECS seconds without warm-up (pinned to
# LOADER_CORE), ends it with SIGTERM, and divides the instructions callgrind collected by
# the round trips ws_load counted (msgs_per_sec x SECS):
#
#   ir_compare target=head size=64 round_trips=.. server_instructions=.. ir_per_round_trip=..
#
# The total also holds start-up, the CONNS handshakes and the last poll (well under 1%).
# Under valgrind the server runs ~10x slower and finds more messages per read than it does
# natively, and `rep movsb` copies count one instruction per byte, so the absolute figure
# is not native cost; ratios between builds measured the same way are the point. Plaintext
# only: valgrind emulates AES-NI slowly and hides AVX-512/VAES, so a wss:// figure would
# not say what TLS costs natively (tls_compare.sh measures that).
#
# Settings (environment): SIZES ("64 16384"), CONNS (16), DEPTH (16), SECS (8),
# SERVER_CORE (0), LOADER_CORE (1), PORT (19121), ECHOS (see above).
set -euo pipefail

cd "$(dirname "$0")/.."

SIZES=${SIZES:-"64 16384"}
CONNS=${CONNS:-16}
DEPTH=${DEPTH:-16}
SECS=${SECS:-8}
SERVER_CORE=${SERVER_CORE:-0}
LOADER_CORE=${LOADER_CORE:-1}
PORT=${PORT:-19121}

die() { echo "ir_compare.sh: $*" >&2; exit 1; }

command -v valgrind >/dev/null || die "valgrind not found (apt-get install valgrind)"
command -v taskset >/dev/null || die "taskset not found (it comes with util-linux)"
if [ -z "${ECHOS:-}" ]; then
    cargo build --release --example echo >&2 || die "cannot build the echo example"
    ECHOS="head=target/release/examples/echo"
fi
for e in $ECHOS; do
    [ -x "${e#*=}" ] || die "${e#*=} (from ECHOS) is not an executable"
done
LOADER=$(cargo bench -p pushwire-benches --bench ws_load --no-run 2>&1 \
    | sed -n 's/.*Executable .*ws_load.rs (\(.*\))$/\1/p' | tail -n 1)
[ -x "$LOADER" ] || die "cannot build or find the ws_load bench binary"

WORK=$(mktemp -d /tmp/pushwire-ir-compare.XXXXXX)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap 'cleanup; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
field() { echo "$2" | sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }

# measure LABEL SIZE BINARY
measure() {
    local label=$1 size=$2 bin=$3 out line trips ir
    out="$WORK/callgrind.$label.$size"
    port_open "$PORT" && die "something already listens on 127.0.0.1:$PORT"
    taskset -c "$SERVER_CORE" valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$bin" --addr "127.0.0.1:$PORT" >/dev/null 2>"$out.log" &
    SERVER_PID=$!
    for _ in $(seq 300); do
        port_open "$PORT" && break
        kill -0 "$SERVER_PID" 2>/dev/null || die "$label exited at start"
        sleep 0.1
    done
    port_open "$PORT" || die "$label does not listen on 127.0.0.1:$PORT after 30 s"
    line=$(taskset -c "$LOADER_CORE" "$LOADER" --addr "127.0.0.1:$PORT" --label "$label" \
        --conns "$CONNS" --depth "$DEPTH" --size "$size" --secs "$SECS" --warmup 0) \
        || die "load run against $label failed"
    # SIGTERM ends the server; valgrind writes its counts on the way out.
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$out" | head -n 1)
    [ -n "$ir" ] || die "$label: no callgrind summary in $out"
    trips=$(awk -v r="$(field msgs_per_sec "$line")" -v s="$SECS" 'BEGIN { printf "%.0f", r * s }')
    echo "ir_compare target=$label size=$size round_trips=$trips server_instructions=$ir" \
        "ir_per_round_trip=$(awk -v i="$ir" -v t="$trips" 'BEGIN { printf "%.1f", i / t }')" \
        "loader_cpu=$(field loader_cpu "$line")"
}

echo "ir_compare: conns=$CONNS depth=$DEPTH secs=$SECS echos: $ECHOS"
for size in $SIZES; do
    for e in $ECHOS; do
        measure "${e%%=*}" "$size" "${e#*=}"
    done
done
