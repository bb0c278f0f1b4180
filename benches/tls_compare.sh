#!/usr/bin/env bash
# Echo throughput of pushwire over ws:// and wss://, one command, one machine.
#
#   bash benches/tls_compare.sh
#   BASE_ECHO=/tmp/pre-tls/target/release/examples/echo bash benches/tls_compare.sh
#
# Builds (release) the `echo` example and the ws_load loader, makes a CA and a leaf
# certificate (ws_load --make-certs, into a temporary directory), then for each message size
# and round runs the echo server freshly started twice (the order flips every round): plain (`--addr` only, loaded over
# ws://) and with a TLS listener too (`--tls-addr`, loaded over wss://, the loader verifying
# the chain against the CA), the server pinned to one core and the loader to another. It
# prints every loader line, then per size the medians over the rounds: msgs/s for both and
# the ratio wss/ws, the same per second of server CPU time (the steadier figure when other
# work shares the server's core), and the loader's CPU share for both (a figure is about
# the server only while loader_cpu stays well below 1).
#
# With BASE_ECHO (an echo binary built at another commit, e.g. before TLS) each round also
# runs that binary plain, and the summary adds head/base ratios of the plaintext figures.
#
# Settings (environment): SIZES ("64 16384"), CONNS (64), DEPTH (16), SECS (5), WARMUP (1),
# ROUNDS (3), SERVER_CORE (0), LOADER_CORE (1), PW_PORT (19111), TLS_PORT (19112),
# BASE_PORT (19113), PUSHWIRE_ECHO (use this server binary instead of building it),
# BASE_ECHO (see above). Servers listen on 127.0.0.1 only and are killed when the script
# exits, however it exits.
set -euo pipefail

cd "$(dirname "$0")/.."

SIZES=${SIZES:-"64 16384"}
CONNS=${CONNS:-64}
DEPTH=${DEPTH:-16}
SECS=${SECS:-5}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
SERVER_CORE=${SERVER_CORE:-0}
LOADER_CORE=${LOADER_CORE:-1}
PW_PORT=${PW_PORT:-19111}
TLS_PORT=${TLS_PORT:-19112}
BASE_PORT=${BASE_PORT:-19113}
BASE_ECHO=${BASE_ECHO:-}

die() { echo "tls_compare.sh: $*" >&2; exit 1; }

command -v taskset >/dev/null || die "taskset not found (it comes with util-linux)"
[ "$(nproc)" -ge 2 ] || die "need 2 cores to pin server and loader apart"
[ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 20 ] || die "ROUNDS must be 1..20"
[ -z "$BASE_ECHO" ] || [ -x "$BASE_ECHO" ] || die "BASE_ECHO=$BASE_ECHO is not an executable"

if [ -z "${PUSHWIRE_ECHO:-}" ]; then
    cargo build --release --example echo >&2 || die "cannot build the echo example"
    PUSHWIRE_ECHO=target/release/examples/echo
fi
LOADER=$(cargo bench -p pushwire-benches --bench ws_load --no-run 2>&1 \
    | sed -n 's/.*Executable .*ws_load.rs (\(.*\))$/\1/p' | tail -n 1)
[ -x "$LOADER" ] || die "cannot build or find the ws_load bench binary"

SERVER_PID=
CERTS=
RATE= CPU_RATE= LOADER_CPU=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
cleanup_all() {
    cleanup
    if [ -n "$CERTS" ]; then rm -rf "$CERTS"; fi
}
trap cleanup_all EXIT
trap 'exit 130' INT TERM

CERTS=$(mktemp -d /tmp/pushwire-tls-compare.XXXXXX)
"$LOADER" --make-certs "$CERTS" >/dev/null || die "cannot make certificates (is the tls feature on?)"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# run_one LABEL SIZE LOAD_PORT LOADER_ARGS -- SERVER COMMAND...: sets RATE, CPU_RATE and
# LOADER_CPU, prints the loader's line. Runs in this shell, not in a $(...) subshell, so a
# failure's exit still fires the trap.
run_one() {
    local label=$1 size=$2 port=$3 extra=$4 line
    shift 5
    port_open "$port" && die "something already listens on 127.0.0.1:$port"
    taskset -c "$SERVER_CORE" "$@" >/dev/null 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        port_open "$port" && break
        kill -0 "$SERVER_PID" 2>/dev/null || die "$label exited at start"
        sleep 0.1
    done
    port_open "$port" || die "$label does not listen on 127.0.0.1:$port after 10 s"
    # shellcheck disable=SC2086 # $extra is a list of loader flags
    line=$(taskset -c "$LOADER_CORE" "$LOADER" --addr "127.0.0.1:$port" --label "$label" \
        --conns "$CONNS" --depth "$DEPTH" --size "$size" --secs "$SECS" --warmup "$WARMUP" \
        --server-pid "$SERVER_PID" $extra) || die "load run against $label failed"
    kill -0 "$SERVER_PID" 2>/dev/null || die "$label died during the run"
    cleanup
    echo "$line"
    RATE=$(field msgs_per_sec "$line")
    CPU_RATE=$(field msgs_per_server_cpu_sec "$line")
    LOADER_CPU=$(field loader_cpu "$line")
}

field() { echo "$2" | sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "na" }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) print "na"; else if (NR % 2) print v[(NR + 1) / 2];
    else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "tls_compare: conns=$CONNS depth=$DEPTH secs=$SECS warmup=$WARMUP rounds=$ROUNDS" \
    "server on core $SERVER_CORE, loader on core $LOADER_CORE" \
    "echo=$PUSHWIRE_ECHO${BASE_ECHO:+ base=$BASE_ECHO}"
SUMMARY=()
for size in $SIZES; do
    ws=() wss=() ws_cpu=() wss_cpu=() ws_l=() wss_l=() base=() base_cpu=() base_l=()
    for round in $(seq "$ROUNDS"); do
        # Odd rounds run ws, wss, base; even rounds the other way round, so that a drift
        # in what else the machine does favours none of them.
        order="ws wss base"
        [ $((round % 2)) -eq 0 ] && order="base wss ws"
        for what in $order; do
            case $what in
            ws)
                run_one ws "$size" "$PW_PORT" "" -- \
                    "$PUSHWIRE_ECHO" --addr "127.0.0.1:$PW_PORT"
                ws+=("$RATE") ws_cpu+=("$CPU_RATE") ws_l+=("$LOADER_CPU")
                ;;
            wss)
                run_one wss "$size" "$TLS_PORT" "--tls-ca $CERTS/ca.pem" -- \
                    "$PUSHWIRE_ECHO" --addr "127.0.0.1:$PW_PORT" \
                    --tls-addr "127.0.0.1:$TLS_PORT" \
                    --tls-cert "$CERTS/chain.pem" --tls-key "$CERTS/key.pem"
                wss+=("$RATE") wss_cpu+=("$CPU_RATE") wss_l+=("$LOADER_CPU")
                ;;
            base)
                [ -n "$BASE_ECHO" ] || continue
                run_one base-ws "$size" "$BASE_PORT" "" -- \
                    "$BASE_ECHO" --addr "127.0.0.1:$BASE_PORT"
                base+=("$RATE") base_cpu+=("$CPU_RATE") base_l+=("$LOADER_CPU")
                ;;
            esac
        done
        echo "  (size=$size round $round of $ROUNDS done)"
    done
    m_ws=$(median "${ws[@]}") m_wss=$(median "${wss[@]}")
    m_ws_cpu=$(median "${ws_cpu[@]}") m_wss_cpu=$(median "${wss_cpu[@]}")
    line="size=$size ws_msgs_per_sec=$m_ws wss_msgs_per_sec=$m_wss ratio=$(ratio "$m_wss" "$m_ws")"
    line+=" per_server_cpu_sec: ws=$m_ws_cpu wss=$m_wss_cpu ratio=$(ratio "$m_wss_cpu" "$m_ws_cpu")"
    line+=" loader_cpu: ws=$(median "${ws_l[@]}") wss=$(median "${wss_l[@]}")"
    if [ -n "$BASE_ECHO" ]; then
        m_b=$(median "${base[@]}") m_b_cpu=$(median "${base_cpu[@]}")
        line+=" | base_ws_msgs_per_sec=$m_b head/base=$(ratio "$m_ws" "$m_b")"
        line+=" per_server_cpu_sec: base=$m_b_cpu head/base=$(ratio "$m_ws_cpu" "$m_b_cpu")"
        line+=" loader_cpu: base=$(median "${base_l[@]}")"
    fi
    SUMMARY+=("$line")
done
echo "tls_compare summary (medians of $ROUNDS rounds):"
printf '%s\n' "${SUMMARY[@]}"
