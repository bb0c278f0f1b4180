#!/usr/bin/env bash
# Fan-out of pushwire's hub against uWebSockets and nginx + nchan, one command, one run:
#
#   bash benches/peers/run.sh                 # medians of 3 rounds
#   ROUNDS=1 SUBS_SMALL=100 SUBS_BIG=500 RSS_CONNS=500 bash benches/peers/run.sh  # quick check
#
# Workloads (every subscriber of one topic, "fanout", 64-byte events):
# - WebSocket fan-out to SUBS_SMALL (1,000) and SUBS_BIG (10,000) subscribers, "serial" (the
#   next publish once the previous one reached every subscriber) and, for SUBS_SMALL, RATE
#   (1,000) publishes/s asked; pushwire, uWebSockets, nchan;
# - SSE fan-out to SUBS_SMALL and SUBS_BIG, serial, and RATE for SUBS_SMALL; pushwire, nchan;
# - system calls per delivered event on the server side (WebSocket, SUBS_SMALL, serial and
#   rate): `perf stat` on the server's syscall tracepoints while the measured publishes run
#   (strace -c -f when perf cannot count them), writes (write, writev, send*, sendmsg) and
#   all system calls, per delivery;
# - RSS per idle WebSocket with RSS_CONNS (10,000) open: (RSS with N open - RSS before) / N,
#   for pushwire's hub (subscribed), pushwire's echo example, uWS's EchoServer, uWS pub/sub
#   (subscribed) and nchan (subscribed; the worker's RSS, not its shared memory).
#
# The rate of a run is the events delivered to all subscribers over the time from the first
# publish to the last delivery (benches/peers/loader/, our own mio client; every subscriber
# must get every event once and in order, `missing` is counted and shown, never hidden).
# Each run starts its server afresh, pinned to SERVER_CORE (0), the loader on LOADER_CORE (1).
# ROUNDS (3) rounds, interleaved (every server once per round), medians in the table. The
# loader's own lines go to stderr and to target/peers/results/lines.txt.
#
# Peers, built or installed here, never in the tree:
# - uWebSockets from git: UWS_GIT and USOCKETS_GIT (default: the mirrors
#   /work/.mirror/uNetworking+uWebSockets/repo and /work/.mirror/uNetworking+uSockets/repo),
#   cloned under target/peers/src at UWS_REF (default: the newest vX.Y.Z tag without a
#   pre-release suffix) and the uSockets commit that tag pins; built without SSL
#   (uSockets WITH_OPENSSL=0, so LIBUS_NO_SSL) with uWS's own flags (-O3 -march=native
#   -flto); its examples/EchoServer.cpp (made to listen on 127.0.0.1:UWS_ECHO_PORT) and our
#   benches/peers/uws_pubsub.cpp;
# - nginx + nchan from Debian (apt-get install nginx libnginx-mod-nchan when missing),
#   benches/peers/nchan.conf under target/peers/nginx;
# - pushwire: its hub and echo examples (cargo build --release) at PW_REV (HEAD), exported
#   with git archive to target/peers/pushwire-src and built there, so uncommitted work in
#   the tree does not leak in; PW_REV=worktree builds target/release/examples/{hub,echo}.
#
# Settings (environment): ROUNDS (3), SUBS_SMALL (1000), SUBS_BIG (10000), RATE (1000),
# SERIAL_EVENTS_SMALL (200), SERIAL_EVENTS_BIG (30), RATE_EVENTS (2000), RSS_CONNS (10000),
# DATA_BYTES (64), PHASES ("ws sse syscalls rss"), TARGETS ("pushwire uws nchan"),
# SERVER_CORE (0), LOADER_CORE (1), PW_PORT (19401), UWS_PORT (19402), NCHAN_PORT (19403),
# PW_ECHO_PORT (19404), UWS_ECHO_PORT (19405), PEERS_DIR (target/peers), UWS_GIT,
# USOCKETS_GIT, UWS_REF, PW_REV, SYSCALL_TOOL (perf or strace; default perf when it can count).
# Everything listens on 127.0.0.1 only; every server is killed when the script exits.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD

ROUNDS=${ROUNDS:-3}
SUBS_SMALL=${SUBS_SMALL:-1000}
SUBS_BIG=${SUBS_BIG:-10000}
RATE=${RATE:-1000}
SERIAL_EVENTS_SMALL=${SERIAL_EVENTS_SMALL:-200}
SERIAL_EVENTS_BIG=${SERIAL_EVENTS_BIG:-30}
RATE_EVENTS=${RATE_EVENTS:-2000}
RSS_CONNS=${RSS_CONNS:-10000}
DATA_BYTES=${DATA_BYTES:-64}
PHASES=${PHASES:-"ws sse syscalls rss"}
TARGETS=${TARGETS:-"pushwire uws nchan"}
SERVER_CORE=${SERVER_CORE:-0}
LOADER_CORE=${LOADER_CORE:-1}
PW_PORT=${PW_PORT:-19401}
UWS_PORT=${UWS_PORT:-19402}
NCHAN_PORT=${NCHAN_PORT:-19403}
PW_ECHO_PORT=${PW_ECHO_PORT:-19404}
UWS_ECHO_PORT=${UWS_ECHO_PORT:-19405}
PEERS_DIR=${PEERS_DIR:-target/peers}
UWS_GIT=${UWS_GIT:-/work/.mirror/uNetworking+uWebSockets/repo}
USOCKETS_GIT=${USOCKETS_GIT:-/work/.mirror/uNetworking+uSockets/repo}
UWS_REF=${UWS_REF:-}
PW_REV=${PW_REV:-HEAD}

die() { echo "peers/run.sh: $*" >&2; exit 1; }
say() { echo "peers: $*" >&2; }
has() { case " $TARGETS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
phase() { case " $PHASES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

[ "$ROUNDS" -ge 1 ] 2>/dev/null || die "ROUNDS must be a number >= 1"
command -v taskset >/dev/null || die "taskset not found (util-linux)"
[ "$(nproc)" -ge 2 ] || die "need 2 cores to pin server and loader apart"
mkdir -p "$PEERS_DIR"
PEERS_DIR=$(cd "$PEERS_DIR" && pwd)
RES=$PEERS_DIR/results
rm -rf "$RES"
mkdir -p "$RES"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)

# ---------------------------------------------------------------- installs and builds

apt_install() {
    # apt_install PKG...: only when one is missing; needs root
    local missing=()
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]} (apt-get install them as root)"
    say "apt-get install ${missing[*]}"
    apt-get update >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
}

build_pushwire() {
    if [ "$PW_REV" = worktree ]; then
        say "building pushwire's hub and echo examples from the work tree"
        cargo build --release --example hub --example echo >&2 || die "cannot build pushwire's examples"
        PW_HUB=$ROOT/target/release/examples/hub
        PW_ECHO=$ROOT/target/release/examples/echo
        PW_COMMIT="$(git rev-parse --short HEAD) work tree"
        git diff --quiet HEAD -- src examples Cargo.toml Cargo.lock 2>/dev/null || PW_COMMIT="$PW_COMMIT (modified)"
        return 0
    fi
    # a committed revision, exported (other work in the tree does not leak in)
    local commit src=$PEERS_DIR/pushwire-src
    commit=$(git rev-parse "$PW_REV^{commit}") || die "PW_REV=$PW_REV is not a commit"
    PW_COMMIT=$(git rev-parse --short "$commit")
    if [ "$(cat "$src/.peers-commit" 2>/dev/null)" != "$commit" ]; then
        rm -rf "$src"
        mkdir -p "$src"
        git archive "$commit" | tar -x -C "$src" || die "git archive $PW_REV failed"
        echo "$commit" >"$src/.peers-commit"
    fi
    # under target/ of this tree: a workspace of its own, not a member of the tree's
    grep -q '^\[workspace\]' "$src/Cargo.toml" || printf '\n[workspace]\n' >>"$src/Cargo.toml"
    say "building pushwire's hub and echo examples at $PW_COMMIT"
    (cd "$src" && CARGO_TARGET_DIR=$PEERS_DIR/pushwire-target \
        cargo build --release --example hub --example echo >&2) || die "cannot build pushwire's examples"
    PW_HUB=$PEERS_DIR/pushwire-target/release/examples/hub
    PW_ECHO=$PEERS_DIR/pushwire-target/release/examples/echo
}

build_loader() {
    say "building the loader"
    CARGO_TARGET_DIR=$PEERS_DIR/loader-target \
        cargo build --release --manifest-path benches/peers/loader/Cargo.toml >&2 \
        || die "cannot build benches/peers/loader"
    LOADER=$PEERS_DIR/loader-target/release/peers-loader
}

build_uws() {
    apt_install g++ make zlib1g-dev
    git --git-dir="$UWS_GIT" rev-parse --git-dir >/dev/null 2>&1 \
        || die "UWS_GIT=$UWS_GIT is not a git repository of uWebSockets (fetch github:uNetworking/uWebSockets and point UWS_GIT at it)"
    git --git-dir="$USOCKETS_GIT" rev-parse --git-dir >/dev/null 2>&1 \
        || die "USOCKETS_GIT=$USOCKETS_GIT is not a git repository of uSockets (fetch github:uNetworking/uSockets and point USOCKETS_GIT at it)"
    local ref=$UWS_REF
    if [ -z "$ref" ]; then
        ref=$(git --git-dir="$UWS_GIT" tag --list 'v*' --sort=-v:refname \
            | grep -E '^v[0-9]+\.[0-9]+\.[0-9]+$' | head -n 1 || true)
        [ -n "$ref" ] || ref=HEAD
    fi
    UWS_COMMIT=$(git --git-dir="$UWS_GIT" rev-parse "$ref^{commit}") || die "no $ref in $UWS_GIT"
    UWS_TAG=$ref
    USOCKETS_COMMIT=$(git --git-dir="$UWS_GIT" ls-tree "$UWS_COMMIT" uSockets | awk '{print $3}')
    [ -n "$USOCKETS_COMMIT" ] || die "uWS $ref pins no uSockets commit"
    git --git-dir="$USOCKETS_GIT" cat-file -e "$USOCKETS_COMMIT^{commit}" 2>/dev/null \
        || die "$USOCKETS_GIT has no commit $USOCKETS_COMMIT (the uSockets that uWS $ref pins)"

    local src=$PEERS_DIR/src/uWebSockets out=$PEERS_DIR/uws
    UWS_PUBSUB=$out/uws_pubsub
    UWS_ECHO=$out/EchoServer
    local stamp="$UWS_COMMIT $USOCKETS_COMMIT $(sha1sum benches/peers/uws_pubsub.cpp | cut -c1-40) $UWS_ECHO_PORT"
    if [ -x "$UWS_PUBSUB" ] && [ -x "$UWS_ECHO" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
        return 0
    fi
    say "building uWebSockets $UWS_TAG ($UWS_COMMIT), uSockets $USOCKETS_COMMIT"
    rm -rf "$src" "$out"
    mkdir -p "$PEERS_DIR/src" "$out"
    git clone -q --no-checkout "$UWS_GIT" "$src" >&2 || die "git clone $UWS_GIT failed"
    git -C "$src" -c advice.detachedHead=false checkout -q "$UWS_COMMIT" >&2 || die "checkout $UWS_COMMIT failed"
    rm -rf "$src/uSockets"
    git clone -q --no-checkout "$USOCKETS_GIT" "$src/uSockets" >&2 || die "git clone $USOCKETS_GIT failed"
    git -C "$src/uSockets" -c advice.detachedHead=false checkout -q "$USOCKETS_COMMIT" >&2 \
        || die "checkout uSockets $USOCKETS_COMMIT failed"
    (cd "$src/uSockets" && make WITH_OPENSSL=0 WITH_BORINGSSL=0 WITH_WOLFSSL=0 >&2) \
        || die "uSockets build failed"
    # uWS's build.c flags for its examples
    local cxx=(g++ -march=native -O3 -std=c++2b -flto=auto -Isrc -IuSockets/src)
    sed -e 's/\.listen(9001,/.listen("127.0.0.1", PEERS_PORT,/' -e 's/<< 9001 <</<< PEERS_PORT <</' \
        "$src/examples/EchoServer.cpp" >"$src/examples/EchoServerPeers.cpp"
    grep -q 'listen("127.0.0.1", PEERS_PORT,' "$src/examples/EchoServerPeers.cpp" \
        || die "examples/EchoServer.cpp of uWS $UWS_TAG no longer has .listen(9001, ...): adapt run.sh"
    (cd "$src" && "${cxx[@]}" -DPEERS_PORT="$UWS_ECHO_PORT" examples/EchoServerPeers.cpp \
        uSockets/*.o -lz -o "$UWS_ECHO" >&2) || die "uWS EchoServer build failed"
    (cd "$src" && "${cxx[@]}" "$ROOT/benches/peers/uws_pubsub.cpp" uSockets/*.o -lz \
        -o "$UWS_PUBSUB" >&2) || die "uws_pubsub build failed"
    echo "$stamp" >"$out/stamp"
}

setup_nchan() {
    apt_install nginx libnginx-mod-nchan
    command -v nginx >/dev/null || die "nginx not found after install"
    [ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] || die "no ngx_nchan_module.so (libnginx-mod-nchan)"
    NGX=$PEERS_DIR/nginx
    mkdir -p "$NGX/logs" "$NGX/tmp"
    sed -e "s/@PORT@/$NCHAN_PORT/" -e "s/@USER@/$(id -un)/" -e "s/@NOFILE@/$NOFILE/" \
        benches/peers/nchan.conf >"$NGX/nginx.conf"
    nginx -t -q -p "$NGX/" -c nginx.conf -e logs/error.log 2>&1 | grep -v "^$" >&2 || true
    nginx -t -q -p "$NGX/" -c nginx.conf -e logs/error.log >/dev/null 2>&1 \
        || die "nginx -t rejects $NGX/nginx.conf (see above)"
    NCHAN_VERSION=$(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')
    NGINX_VERSION=$(nginx -v 2>&1 | sed 's/.*nginx\///')
}

# ---------------------------------------------------------------- servers

SERVER_PID=     # what we started (nginx: the master)
MEASURE_PID=    # what we measure (nginx: the worker)
PERF_PID=
LOADER_PID=
cleanup() {
    for p in $PERF_PID $LOADER_PID; do kill "$p" 2>/dev/null || true; done
    stop_server
}
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
        MEASURE_PID=
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_server KIND: pushwire | pwecho | uws | uwsecho | nchan; sets PORT, SERVER_PID, MEASURE_PID
start_server() {
    local kind=$1 log=$RES/server-$1.log
    case $kind in
        pushwire) PORT=$PW_PORT ;;
        pwecho) PORT=$PW_ECHO_PORT ;;
        uws) PORT=$UWS_PORT ;;
        uwsecho) PORT=$UWS_ECHO_PORT ;;
        nchan) PORT=$NCHAN_PORT ;;
    esac
    port_open "$PORT" && die "something already listens on 127.0.0.1:$PORT"
    case $kind in
        pushwire) taskset -c "$SERVER_CORE" "$PW_HUB" --addr "127.0.0.1:$PORT" \
            --max-connections 30000 --sse-heartbeat 3600 >>"$log" 2>&1 & ;;
        pwecho) taskset -c "$SERVER_CORE" "$PW_ECHO" --addr "127.0.0.1:$PORT" >>"$log" 2>&1 & ;;
        uws) taskset -c "$SERVER_CORE" "$UWS_PUBSUB" "$PORT" >>"$log" 2>&1 & ;;
        uwsecho) (cd "$PEERS_DIR/uws" && exec taskset -c "$SERVER_CORE" "$UWS_ECHO") >>"$log" 2>&1 & ;;
        nchan) taskset -c "$SERVER_CORE" nginx -p "$NGX/" -c nginx.conf -e logs/error.log >>"$log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 100); do
        port_open "$PORT" && break
        kill -0 "$SERVER_PID" 2>/dev/null || die "$kind exited at start (see $log)"
        sleep 0.1
    done
    port_open "$PORT" || die "$kind does not listen on 127.0.0.1:$PORT after 10 s (see $log)"
    MEASURE_PID=$SERVER_PID
    if [ "$kind" = nchan ]; then
        MEASURE_PID=
        for _ in $(seq 50); do
            MEASURE_PID=$(pgrep -P "$SERVER_PID" | head -n 1 || true)
            [ -n "$MEASURE_PID" ] && break
            sleep 0.1
        done
        [ -n "$MEASURE_PID" ] || die "nginx started no worker"
    fi
}

field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1; }

# loader_args TARGET TRANSPORT SUBS MODE EVENTS
loader_args() {
    local target=$1 transport=$2 subs=$3 mode=$4 events=$5
    ARGS=(--target "$target" --addr "127.0.0.1:$PORT" --transport "$transport" --subs "$subs"
        --mode "$mode" --events "$events" --data-bytes "$DATA_BYTES" --server-pid "$MEASURE_PID")
    case $target in
        pushwire) ARGS+=(--stats) ;;
        # uWS forwards the body as it is: post pushwire's frame, so the frames are the same size
        uws) ARGS+=(--wrap) ;;
        nchan) [ "$transport" = ws ] && ARGS+=(--wrap) ;;
    esac
    return 0
}

# run_fanout KEY TARGET TRANSPORT SUBS MODE EVENTS: one fresh server, one loader run
run_fanout() {
    local key=$1 target=$2 transport=$3 subs=$4 mode=$5 events=$6 line
    start_server "$target"
    loader_args "$target" "$transport" "$subs" "$mode" "$events"
    line=$(taskset -c "$LOADER_CORE" timeout 900 "$LOADER" "${ARGS[@]}") \
        || die "loader run $key against $target failed"
    kill -0 "$SERVER_PID" 2>/dev/null || die "$target died during $key"
    stop_server
    echo "$line" | tee -a "$RES/lines.txt" >&2
    field deliveries_per_s "$line" >>"$RES/$key.$target"
    field missing "$line" >>"$RES/$key.$target.missing"
    local c
    c=$(field deliveries_per_server_cpu_s "$line")
    [ -n "$c" ] && [ "$c" != na ] && echo "$c" >>"$RES/cpu-$key.$target"
    return 0
}

# ---------------------------------------------------------------- syscalls

syscall_tool() {
    if [ -n "${SYSCALL_TOOL:-}" ]; then echo "$SYSCALL_TOOL"; return; fi
    if command -v perf >/dev/null \
        && perf stat -x, -e raw_syscalls:sys_enter -e syscalls:sys_enter_write -- true >/dev/null 2>&1; then
        echo perf
    else
        echo strace
    fi
}

WRITE_EVENTS="write writev pwritev sendto sendmsg sendmmsg"

# run_syscalls KEY TARGET SUBS MODE EVENTS
run_syscalls() {
    local key=$1 target=$2 subs=$3 mode=$4 events=$5 line out=$RES/syscalls-$1-$2.txt
    local pause=$RES/pause-$key-$target ev=() w
    rm -f "$pause.ready" "$pause.go"
    start_server "$target"
    loader_args "$target" ws "$subs" "$mode" "$events"
    taskset -c "$LOADER_CORE" timeout 900 "$LOADER" "${ARGS[@]}" --pause-file "$pause" \
        >"$RES/loader-out" &
    LOADER_PID=$!
    for _ in $(seq 3000); do
        [ -e "$pause.ready" ] && break
        kill -0 "$LOADER_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ -e "$pause.ready" ] || die "loader for $key against $target did not get ready"
    if [ "$TOOL" = perf ]; then
        ev=(-e raw_syscalls:sys_enter)
        for w in $WRITE_EVENTS; do
            [ -e "/sys/kernel/tracing/events/syscalls/sys_enter_$w" ] && ev+=(-e "syscalls:sys_enter_$w")
        done
        perf stat -x, -o "$out" "${ev[@]}" -p "$MEASURE_PID" 2>/dev/null &
    else
        strace -c -f -o "$out" -p "$MEASURE_PID" 2>/dev/null &
    fi
    PERF_PID=$!
    sleep 1
    touch "$pause.go"
    wait "$LOADER_PID" || die "loader run $key against $target failed"
    LOADER_PID=
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=
    stop_server
    line=$(cat "$RES/loader-out")
    echo "$line" | tee -a "$RES/lines.txt" >&2
    local d total writes
    d=$(field deliveries "$line")
    if [ "$TOOL" = perf ]; then
        total=$(awk -F, '$3 == "raw_syscalls:sys_enter" { print $1 }' "$out")
        writes=$(awk -F, '$3 ~ /^syscalls:sys_enter_/ && $1 ~ /^[0-9]+$/ { s += $1 } END { print s + 0 }' "$out")
    else
        total=$(awk '$NF == "total" { print $(NF-2) }' "$out")
        # strace -c: % time, seconds, usecs/call, calls, [errors,] syscall
        total=$(awk '$NF == "total" { print $4 }' "$out")
        writes=$(awk -v list=" $WRITE_EVENTS " 'index(list, " " $NF " ") { s += $4 } END { print s + 0 }' "$out")
    fi
    awk -v w="$writes" -v t="$total" -v d="$d" 'BEGIN { if (d > 0 && t != "") printf "%.3f %.3f\n", w / d, t / d; else print "na na" }' \
        >"$RES/$key.$target"
    say "syscalls $key $target: writes=$writes total=$total deliveries=$d -> $(cat "$RES/$key.$target")"
}

# ---------------------------------------------------------------- RSS

# run_rss KEY KIND TARGET_LABEL [--subscribed ...]
run_rss() {
    local key=$1 kind=$2 extra=() line path
    shift 2
    start_server "$kind"
    case $kind in
        pushwire) extra=(--stats --subscribed) path=/topics/fanout/ws ;;
        uws) extra=(--subscribed --wrap) path=/topics/fanout/ws ;;
        nchan) extra=(--subscribed --wrap) path=/topics/fanout/ws ;;
        *) path=/ ;;
    esac
    line=$(taskset -c "$LOADER_CORE" timeout 900 "$LOADER" --target "$kind" --addr "127.0.0.1:$PORT" \
        --transport ws --subs "$RSS_CONNS" --mode hold --sub-path "$path" --server-pid "$MEASURE_PID" \
        "${extra[@]}") || die "RSS run $key against $kind failed"
    stop_server
    echo "$line" | tee -a "$RES/lines.txt" >&2
    field rss_per_conn "$line" >>"$RES/$key.$kind"
}

# ---------------------------------------------------------------- run

TOOL=$(syscall_tool)
if phase syscalls && [ "$TOOL" = strace ]; then apt_install strace; fi
build_pushwire
build_loader
UWS_TAG=- UWS_COMMIT=- USOCKETS_COMMIT=- NCHAN_VERSION=- NGINX_VERSION=-
if has uws; then build_uws; fi
if has nchan; then setup_nchan; fi

LOAD_START=$(uptime)
say "load at start: $LOAD_START"

WS_TARGETS=() SSE_TARGETS=()
for t in pushwire uws nchan; do has "$t" && WS_TARGETS+=("$t"); done
for t in pushwire nchan; do has "$t" && SSE_TARGETS+=("$t"); done

# KEY|transport|subs|mode|events
WORKLOADS=()
if phase ws; then
    WORKLOADS+=("ws-small-serial|ws|$SUBS_SMALL|serial|$SERIAL_EVENTS_SMALL"
        "ws-small-rate|ws|$SUBS_SMALL|rate=$RATE|$RATE_EVENTS"
        "ws-big-serial|ws|$SUBS_BIG|serial|$SERIAL_EVENTS_BIG")
fi
if phase sse; then
    WORKLOADS+=("sse-small-serial|sse|$SUBS_SMALL|serial|$SERIAL_EVENTS_SMALL"
        "sse-small-rate|sse|$SUBS_SMALL|rate=$RATE|$RATE_EVENTS"
        "sse-big-serial|sse|$SUBS_BIG|serial|$SERIAL_EVENTS_BIG")
fi

for round in $(seq "$ROUNDS"); do
    say "round $round of $ROUNDS"
    for w in "${WORKLOADS[@]}"; do
        IFS='|' read -r key transport subs mode events <<<"$w"
        if [ "$transport" = ws ]; then targets=("${WS_TARGETS[@]}"); else targets=("${SSE_TARGETS[@]}"); fi
        for t in "${targets[@]}"; do
            run_fanout "$key" "$t" "$transport" "$subs" "$mode" "$events"
        done
    done
    if phase rss; then
        has pushwire && run_rss rss-sub pushwire
        has uws && run_rss rss-sub uws
        has nchan && run_rss rss-sub nchan
        has pushwire && run_rss rss-echo pwecho
        has uws && run_rss rss-echo uwsecho
    fi
done
if phase syscalls; then
    for t in "${WS_TARGETS[@]}"; do
        run_syscalls sys-small-serial "$t" "$SUBS_SMALL" serial "$SERIAL_EVENTS_SMALL"
        run_syscalls sys-small-rate "$t" "$SUBS_SMALL" "rate=$RATE" "$RATE_EVENTS"
    done
fi
LOAD_END=$(uptime)

# ---------------------------------------------------------------- table

median() {
    [ -s "$1" ] || { echo na; return; }
    sort -g "$1" | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
rate_fmt() {
    awk -v r="$1" 'BEGIN { if (r == "na") print "—"; else if (r >= 1e6) printf "%.2fM", r / 1e6; else printf "%.0fk", r / 1e3 }'
}
missing_note() {
    [ -s "$1" ] || return 0
    awk '{ s += $1 } END { if (s > 0) printf " (%d missing)", s }' "$1"
}
# cell KEY TARGET: the median, formatted, with missing deliveries noted
cell() {
    local f=$RES/$1.$2
    if [ ! -s "$f" ]; then echo "—"; return; fi
    echo "$(rate_fmt "$(median "$f")")$(missing_note "$f.missing")"
}
# ratio KEY higher|lower: pushwire over the best peer
ratio() {
    local key=$1 better=$2 pw best=
    pw=$(median "$RES/$key.pushwire")
    for t in uws nchan uwsecho; do
        [ -s "$RES/$key.$t" ] || continue
        local m
        m=$(median "$RES/$key.$t")
        if [ -z "$best" ]; then best=$m
        elif [ "$better" = higher ]; then best=$(awk -v a="$best" -v b="$m" 'BEGIN { print (b > a) ? b : a }')
        else best=$(awk -v a="$best" -v b="$m" 'BEGIN { print (b < a) ? b : a }'); fi
    done
    [ -n "$best" ] && [ "$pw" != na ] || { echo "—"; return; }
    awk -v a="$pw" -v b="$best" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "—" }'
}
label() {
    case $1 in
        ws-small-serial) echo "WebSocket fan-out, $SUBS_SMALL subs, serial (deliveries/s)" ;;
        ws-small-rate) echo "WebSocket fan-out, $SUBS_SMALL subs, $RATE publishes/s asked (deliveries/s)" ;;
        ws-big-serial) echo "WebSocket fan-out, $SUBS_BIG subs, serial (deliveries/s)" ;;
        sse-small-serial) echo "SSE fan-out, $SUBS_SMALL subs, serial (deliveries/s)" ;;
        sse-small-rate) echo "SSE fan-out, $SUBS_SMALL subs, $RATE publishes/s asked (deliveries/s)" ;;
        sse-big-serial) echo "SSE fan-out, $SUBS_BIG subs, serial (deliveries/s)" ;;
    esac
}
sys_cell() {
    local f=$RES/$1.$2
    [ -s "$f" ] || { echo "—"; return; }
    awk '{ printf "%s / %s", $1, $2 }' "$f"
}
sys_ratio() {
    local pw best=
    [ -s "$RES/$1.pushwire" ] || { echo "—"; return; }
    pw=$(awk '{ print $2 }' "$RES/$1.pushwire")
    for t in uws nchan; do
        [ -s "$RES/$1.$t" ] || continue
        local m
        m=$(awk '{ print $2 }' "$RES/$1.$t")
        if [ -z "$best" ] || awk -v a="$m" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$m; fi
    done
    [ -n "$best" ] || { echo "—"; return; }
    awk -v a="$pw" -v b="$best" 'BEGIN { if (b > 0) printf "%.2f (total)", a / b; else print "—" }'
}

{
    echo
    echo "pushwire $PW_COMMIT; uWebSockets $UWS_TAG ($UWS_COMMIT), uSockets $USOCKETS_COMMIT;" \
        "nginx $NGINX_VERSION + nchan $NCHAN_VERSION"
    echo "ROUNDS=$ROUNDS (medians), server on core $SERVER_CORE, loader on core $LOADER_CORE," \
        "$DATA_BYTES-byte events; syscalls counted with $TOOL"
    echo "load averages (1, 5, 15 min) at start: $(echo "$LOAD_START" | sed 's/.*load average: //');" \
        "at end: $(echo "$LOAD_END" | sed 's/.*load average: //')"
    echo
    echo "| workload | pushwire | uWebSockets | nchan | pushwire/best peer |"
    echo "|---|---:|---:|---:|---:|"
    for w in "${WORKLOADS[@]}"; do
        key=${w%%|*}
        echo "| $(label "$key") | $(cell "$key" pushwire) | $(cell "$key" uws) | $(cell "$key" nchan) | $(ratio "$key" higher) |"
    done
    for w in "${WORKLOADS[@]}"; do
        key=${w%%|*}
        echo "| $(label "$key" | sed 's/(deliveries\/s)/(deliveries per server CPU second)/') | $(cell "cpu-$key" pushwire) | $(cell "cpu-$key" uws) | $(cell "cpu-$key" nchan) | $(ratio "cpu-$key" higher) |"
    done
    if phase syscalls; then
        echo "| syscalls per delivery (writes / all), WebSocket $SUBS_SMALL subs, serial | $(sys_cell sys-small-serial pushwire) | $(sys_cell sys-small-serial uws) | $(sys_cell sys-small-serial nchan) | $(sys_ratio sys-small-serial) |"
        echo "| syscalls per delivery (writes / all), WebSocket $SUBS_SMALL subs, $RATE/s asked | $(sys_cell sys-small-rate pushwire) | $(sys_cell sys-small-rate uws) | $(sys_cell sys-small-rate nchan) | $(sys_ratio sys-small-rate) |"
    fi
    if phase rss; then
        b() { local f=$RES/$1.$2; [ -s "$f" ] && echo "$(median "$f") B" || echo "—"; }
        echo "| RSS per idle WebSocket, $RSS_CONNS open, subscribed (pushwire hub, uWS pub/sub, nchan worker) | $(b rss-sub pushwire) | $(b rss-sub uws) | $(b rss-sub nchan) | $(ratio rss-sub lower) |"
        echo "| RSS per idle WebSocket, $RSS_CONNS open, echo servers (pushwire echo, uWS EchoServer) | $(b rss-echo pwecho) | $(b rss-echo uwsecho) | — | $(awk -v a="$(median "$RES/rss-echo.pwecho")" -v b="$(median "$RES/rss-echo.uwsecho")" 'BEGIN { if (a != "na" && b != "na" && b > 0) printf "%.2f", a / b; else print "—" }') |"
    fi
    echo
    echo "deliveries/s: events delivered to all subscribers / time from the first publish to the last"
    echo "delivery; per server CPU second: the same deliveries over the server's utime + stime (nchan: its"
    echo "worker), the steadier figure when other work shares the server's core; ratio > 1: pushwire"
    echo "ahead (for syscalls and RSS: pushwire / the lowest peer, < 1 is better)."
} | tee "$RES/table.md"
