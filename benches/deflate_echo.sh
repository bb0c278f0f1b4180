#!/usr/bin/env bash
# Echo throughput with and without permessage-deflate, in the same run.
#
#   bash benches/deflate_echo.sh
#
# Builds (release) the `echo` example and the ws_load loader, then ROUNDS times, for each
# message size, runs the loader against a freshly started echo server twice: plain, then
# with `--deflate` (the order alternates from round to round), with quote JSON messages
# (`--payload json`), the server pinned to one core and the loader to another. With
# `--deflate` the loader offers permessage-deflate, sends each message compressed (made
# once, see benches/ws_load.rs) and checks every echo byte for byte against the server's
# compressed answer, which it inflated once; so the server inflates and compresses every
# message, the loader does neither. Per run it prints the loader's line; at the end, per
# size, the medians of msgs/s, round trips per server CPU second (the steadier figure on a
# shared machine), payload MB/s and wire MB/s for both, and the ratios deflate / plain.
#
# Settings (environment): SIZES ("1024 65536"), ROUNDS (3), SECS (5), WARMUP (1),
# CONNS_1024 / DEPTH_1024 (64 / 16: the sizes' own connection counts and depths, named
# CONNS_<size> / DEPTH_<size>; sizes without them use CONNS (16) and DEPTH (4)),
# SERVER_CORE (0), LOADER_CORE (1), PORT (19111), PUSHWIRE_ECHO / WS_LOAD (use these server
# and loader binaries instead of building them).
# The server listens on 127.0.0.1 only and is killed when the script exits, however it exits.
set -euo pipefail

cd "$(dirname "$0")/.."

SIZES=${SIZES:-"1024 65536"}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-16}
DEPTH=${DEPTH:-4}
CONNS_1024=${CONNS_1024:-64}
DEPTH_1024=${DEPTH_1024:-16}
SERVER_CORE=${SERVER_CORE:-0}
LOADER_CORE=${LOADER_CORE:-1}
PORT=${PORT:-19111}

die() { echo "deflate_echo.sh: $*" >&2; exit 1; }

[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || die "ROUNDS must be 1..99"
command -v taskset >/dev/null || die "taskset not found (it comes with util-linux)"
[ "$(nproc)" -ge 2 ] || die "need 2 cores to pin server and loader apart"

if [ -z "${PUSHWIRE_ECHO:-}" ]; then
    cargo build --release --example echo >&2 || die "cannot build the echo example"
    PUSHWIRE_ECHO=target/release/examples/echo
fi
LOADER=${WS_LOAD:-}
if [ -z "$LOADER" ]; then
    LOADER=$(cargo bench -p pushwire-benches --bench ws_load --no-run 2>&1 \
        | sed -n 's/.*Executable .*ws_load.rs (\(.*\))$/\1/p' | tail -n 1)
fi
[ -x "$LOADER" ] || die "cannot build or find the ws_load bench binary"

SERVER_PID=
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
field() { echo "$2" | sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }

RESULTS=$(mktemp)
trap 'cleanup; rm -f "$RESULTS"' EXIT

# run_one SIZE MODE: one fresh server, one loader run; appends "SIZE MODE figures" to RESULTS.
run_one() {
    local size=$1 mode=$2 conns depth flag= line
    conns=$(eval echo "\${CONNS_$size:-$CONNS}")
    depth=$(eval echo "\${DEPTH_$size:-$DEPTH}")
    [ "$mode" = deflate ] && flag=--deflate
    port_open "$PORT" && die "something already listens on 127.0.0.1:$PORT"
    taskset -c "$SERVER_CORE" "$PUSHWIRE_ECHO" --addr "127.0.0.1:$PORT" >/dev/null 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        port_open "$PORT" && break
        kill -0 "$SERVER_PID" 2>/dev/null || die "the echo server exited at start"
        sleep 0.1
    done
    port_open "$PORT" || die "the echo server does not listen on 127.0.0.1:$PORT after 10 s"
    # shellcheck disable=SC2086 # $flag is one word or none
    line=$(taskset -c "$LOADER_CORE" "$LOADER" --addr "127.0.0.1:$PORT" --label "$mode" \
        --conns "$conns" --depth "$depth" --size "$size" --secs "$SECS" --warmup "$WARMUP" \
        --payload json $flag --server-pid "$SERVER_PID") || die "load run ($mode, $size) failed"
    kill -0 "$SERVER_PID" 2>/dev/null || die "the echo server died during the run"
    cleanup
    echo "$line"
    echo "$size $mode $(field msgs_per_sec "$line") $(field msgs_per_server_cpu_sec "$line")" \
        "$(field payload_mb_per_sec "$line") $(field wire_mb_per_sec "$line")" \
        "$(field server_cpu "$line") $(field loader_cpu "$line")" >>"$RESULTS"
}

echo "deflate_echo: rounds=$ROUNDS secs=$SECS warmup=$WARMUP sizes=\"$SIZES\"" \
    "server on core $SERVER_CORE, loader on core $LOADER_CORE"
for r in $(seq "$ROUNDS"); do
    for size in $SIZES; do
        if [ $((r % 2)) -eq 1 ]; then order="plain deflate"; else order="deflate plain"; fi
        for mode in $order; do
            run_one "$size" "$mode"
        done
    done
done

# Medians per size and mode, then the ratios.
for size in $SIZES; do
    awk -v size="$size" '
        function median(a, n,   i, j, t) {
            for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) {
                t = a[j]; a[j] = a[j-1]; a[j-1] = t
            }
            return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
        }
        $1 == size {
            m = $2; n[m]++
            rate[m, n[m]] = $3; cpu[m, n[m]] = $4; mb[m, n[m]] = $5; wire[m, n[m]] = $6
            scpu[m, n[m]] = $7
        }
        END {
            for (mi = 1; mi <= 2; mi++) {
                m = mi == 1 ? "plain" : "deflate"
                for (i = 1; i <= n[m]; i++) {
                    a[i] = rate[m, i]; b[i] = cpu[m, i]; c[i] = mb[m, i]; d[i] = wire[m, i]
                    e[i] = scpu[m, i]
                }
                R[m] = median(a, n[m]); C[m] = median(b, n[m]); M[m] = median(c, n[m])
                W[m] = median(d, n[m]); S[m] = median(e, n[m])
            }
            printf "deflate_echo size=%s runs=%d medians: msgs_per_sec plain=%.0f deflate=%.0f" \
                " ratio=%.3f | msgs_per_server_cpu_sec plain=%.0f deflate=%.0f ratio=%.3f" \
                " | payload_mb_per_sec plain=%.1f deflate=%.1f | wire_mb_per_sec plain=%.1f" \
                " deflate=%.1f wire_bytes_per_msg_ratio=%.3f | server_cpu plain=%.2f deflate=%.2f\n",
                size, n["plain"], R["plain"], R["deflate"], R["deflate"] / R["plain"],
                C["plain"], C["deflate"], C["deflate"] / C["plain"], M["plain"], M["deflate"],
                W["plain"], W["deflate"], (W["deflate"] / R["deflate"]) / (W["plain"] / R["plain"]),
                S["plain"], S["deflate"]
        }' "$RESULTS"
done
