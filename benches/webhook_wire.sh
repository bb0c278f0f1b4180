#!/usr/bin/env bash
# Webhook delivery rate against the wire's limit: the hub's deliveries/s next to `wrk`
# replaying the same signed request to the same receiver at the same concurrency.
#
#   bash benches/webhook_wire.sh                      # this tree's hub
#   HUB="/tmp/before/hub /tmp/after/hub" bash benches/webhook_wire.sh
#
# * Receiver: nginx, one worker, `location / { return 200; }`, access log off, keep-alive
#   for a million requests, its own config and logs under target/webhook_wire/.
# * The request: one real delivery of the hub is captured byte-exact (benches/webhook_wire,
#   `capture`), and `wrk -t1 -cN -d${SECS}s -s post.lua` replays its method, path, headers
#   (`webhook-id`, `webhook-timestamp`, `webhook-signature`, content-type, ...) and body.
# * The hub (`--webhook-allow-private`: the receiver is on loopback) has at most 4
#   deliveries in flight per endpoint, so 4, 16 and 40 in flight are 1, 4 and 10 endpoints
#   on one topic (each publish is one delivery per endpoint). The feeder (`feed`) publishes
#   with `POST /topics/bench` over one keep-alive connection in pipelined bursts, keeping
#   about 4,000 deliveries queued; the rate is `webhooks.delivered` from /stats over SECS
#   seconds after a 1 s warm-up. The publishes cost the hub too (wrk has no such cost).
# * System calls: `strace -f -p HUB` for STRACE_SECS right after the rate window, while
#   the pipeline is still full, divided by the deliveries /stats counted meanwhile: all of
#   the hub's calls (the publishes' and /stats polls' included) and those on the webhook
#   sockets (the fds a "POST /hook..." was written to), by kind.
# * PERF=1: then `perf record -e cpu-clock -g` of the hub for STRACE_SECS more
#   (target/webhook_wire/perf-HUB-N.data; `perf report -i ... --no-children`).
# * FEED (batch): each burst of publishes is one NDJSON batch (`FEED=single`: one request
#   per event, for hubs older than the batch publish), so the feeding costs the hub little.
# * Cores: the hub on HUB_CORE (0); nginx, wrk and the feeder on LOAD_CORE (1).
#
# Settings (environment): HUB (space-separated hub binaries; default: this tree's, built
# with `cargo build --release --example hub`), SECS (5), STRACE_SECS (2), INFLIGHT
# ("4 16 40"), PERF (unset), PORT (18300: nginx PORT, capture PORT+1, hub PORT+2).
# Missing nginx, wrk or strace are installed with apt-get. Everything listens on 127.0.0.1;
# the servers are killed on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${SECS:-5}
STRACE_SECS=${STRACE_SECS:-2}
INFLIGHT=${INFLIGHT:-"4 16 40"}
PORT=${PORT:-18300}
HUB_CORE=${HUB_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
NGINX_PORT=$PORT
CAPTURE_PORT=$((PORT + 1))
HUB_ADDR=127.0.0.1:$((PORT + 2))
WORK=$ROOT/target/webhook_wire
mkdir -p "$WORK"

die() { echo "webhook_wire.sh: $*" >&2; exit 1; }

# ---- tools ------------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
command -v strace >/dev/null || missing+=(strace)
if ((${#missing[@]})); then
    echo "installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [[ -f $WORK/nginx.pid ]] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
}
trap cleanup EXIT

# ---- builds -----------------------------------------------------------------------------
CARGO_TARGET_DIR=$WORK/helper cargo build --release -q \
    --manifest-path benches/webhook_wire/Cargo.toml
HELPER=$WORK/helper/release/webhook-wire
if [[ -z ${HUB:-} ]]; then
    cargo build --release -q --example hub
    HUB=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/hub
fi
for h in $HUB; do [[ -x $h ]] || die "no hub binary at $h"; done

# Waits (at most 5 s) until something listens on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    die "nothing listens on port $1"
}

start_hub() { # $1: binary; sets HUB_PID
    taskset -c "$HUB_CORE" "$1" --addr "$HUB_ADDR" --webhook-allow-private \
        --history-events 100 >"$WORK/hub.log" 2>&1 &
    HUB_PID=$!
    PIDS+=("$HUB_PID")
    wait_port "${HUB_ADDR##*:}"
}
stop_hub() { kill "$HUB_PID" 2>/dev/null || true; wait "$HUB_PID" 2>/dev/null || true; }

register() { # $1: url
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -d "url=$1" "http://$HUB_ADDR/topics/bench/webhooks")
    [[ $code == 201 ]] || die "registering $1 answered $code"
}

delivered() {
    curl -s "http://$HUB_ADDR/stats" | sed -n 's/.*"webhooks":{"delivered":\([0-9]*\).*/\1/p'
}

# ---- the receiver -----------------------------------------------------------------------
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx-body;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / { return 200; }
    }
}
EOF
taskset -c "$LOAD_CORE" "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" 2>/dev/null
wait_port "$NGINX_PORT"

# ---- one real request, captured byte-exact ----------------------------------------------
first=${HUB%% *}
rm -f "$WORK/request.bin"
"$HELPER" capture "127.0.0.1:$CAPTURE_PORT" "$WORK/request.bin" &
cap=$!
PIDS+=("$cap")
wait_port "$CAPTURE_PORT"
start_hub "$first"
register "http://127.0.0.1:$CAPTURE_PORT/hook"
curl -s -o /dev/null -d 'x' "http://$HUB_ADDR/topics/bench"
for _ in $(seq 100); do [[ -s $WORK/request.bin ]] && break; sleep 0.05; done
stop_hub
wait "$cap" 2>/dev/null || true
[[ -s $WORK/request.bin ]] || die "the hub sent no request to the capture port"
REQ_BYTES=$(wc -c <"$WORK/request.bin")
echo "captured request: $REQ_BYTES bytes (target/webhook_wire/request.bin)" >&2

cat >"$WORK/post.lua" <<EOF
-- Replays target/webhook_wire/request.bin: its method, path, headers and body.
local f = assert(io.open("$WORK/request.bin", "rb"))
local raw = f:read("*a")
f:close()
local head, body = raw:match("^(.-)\r\n\r\n(.*)$")
local line, rest = head:match("^([^\r]*)\r\n(.*)$")
wrk.method, wrk.path = line:match("^(%S+) (%S+)")
wrk.body = body
for name, value in rest:gmatch("([^:\r\n]+): ([^\r\n]*)") do
    wrk.headers[name] = value
end
-- The capture went to the capture port; the replay goes to nginx (as many digits).
for name in pairs(wrk.headers) do
    if name:lower() == "host" then wrk.headers[name] = "127.0.0.1:$NGINX_PORT" end
end
EOF

# ---- wrk --------------------------------------------------------------------------------
declare -A WRK
for n in $INFLIGHT; do
    out=$(taskset -c "$LOAD_CORE" wrk -t1 -c"$n" -d"${SECS}s" -s "$WORK/post.lua" \
        "http://127.0.0.1:$NGINX_PORT/")
    WRK[$n]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
    echo "wrk -c$n: ${WRK[$n]} req/s" >&2
done

# ---- the hub ----------------------------------------------------------------------------
# Counts the calls of an strace log ($1) per delivery ($2): all of them, and those on the
# webhook sockets (the fds a request "POST /hook..." was written to), split by kind.
syscalls() {
    awk -v d="$2" '
        function fd_of(line, name,   rest, parts) {
            rest = substr(line, index(line, name "(") + length(name) + 1)
            split(rest, parts, /[,)]/)
            if (name == "epoll_ctl") { sub(/^ */, "", parts[3]); return parts[3] }
            return parts[1]
        }
        function name_of(line,   m) {
            if (!match(line, /^([0-9]+ +)?[a-z_0-9]+\(/)) return ""
            m = substr(line, RSTART, RLENGTH - 1)
            sub(/^[0-9]+ +/, "", m)
            return m
        }
        NR == FNR {
            n = name_of($0)
            if ((n == "writev" || n == "sendto" || n == "write") && $0 ~ /POST \/hook/)
                hook[fd_of($0, n)] = 1
            next
        }
        {
            n = name_of($0)
            if (n == "") next
            all++
            if (n == "epoll_wait") wait++
            if (fd_of($0, n) in hook) {
                h++
                if (n == "epoll_ctl") ctl++
                else if (n == "recvfrom" || n == "read") rd++
                else if (n == "writev" || n == "sendto" || n == "write") wr++
            }
        }
        END {
            if (d <= 0) d = 1
            printf "%.2f | %.2f | %.2f | %.2f | %.2f | %.2f", all / d, wait / d, h / d, ctl / d, rd / d, wr / d
        }' "$1" "$1"
}

ROWS=()
for h in $HUB; do
    for n in $INFLIGHT; do
        endpoints=$(((n + 3) / 4))
        start_hub "$h"
        for i in $(seq "$endpoints"); do register "http://127.0.0.1:$NGINX_PORT/hook$i"; done
        total=$((1 + SECS + STRACE_SECS + 2))
        [[ -n ${PERF:-} ]] && total=$((total + STRACE_SECS))
        FEED=${FEED:-batch} taskset -c "$LOAD_CORE" "$HELPER" feed "$HUB_ADDR" bench "$endpoints" 1 "$SECS" \
            "$total" >"$WORK/feed.out" &
        feeder=$!
        PIDS+=("$feeder")
        for _ in $(seq $((10 * (SECS + 3)))); do
            grep -q '^rate' "$WORK/feed.out" && break
            sleep 0.1
        done
        rate=$(awk '/^rate/ {print $2}' "$WORK/feed.out")
        [[ -n $rate ]] || die "the feeder measured nothing"
        tag=$(basename "$(dirname "$(dirname "$(dirname "$h")")")")-$n
        d0=$(delivered)
        timeout -s INT "$STRACE_SECS" strace -f -qq -p "$HUB_PID" -o "$WORK/strace-$tag.txt" \
            2>/dev/null || true
        d1=$(delivered)
        if [[ -n ${PERF:-} ]]; then
            perf record -q -e cpu-clock -g -p "$HUB_PID" -o "$WORK/perf-$tag.data" \
                -- sleep "$STRACE_SECS" >/dev/null 2>&1 || true
        fi
        wait "$feeder" || die "the feeder failed"
        stop_hub
        ratio=$(awk -v a="$rate" -v b="${WRK[$n]}" 'BEGIN { printf "%.2f", a / b }')
        row="| $tag | $n | ${WRK[$n]} | $rate | $ratio | $(syscalls "$WORK/strace-$tag.txt" $((d1 - d0))) |"
        ROWS+=("$row")
        echo "$row" >&2
    done
done

echo
echo "load: $(uptime)"
echo "request: $REQ_BYTES bytes; wrk -t1 -cN -d${SECS}s; hub rate over ${SECS}s; system calls per delivery over ${STRACE_SECS}s of strace -f (logs: target/webhook_wire/strace-HUB-N.txt)"
echo
echo "| hub | in flight | wrk req/s | hub deliveries/s | ratio | all calls | epoll_wait | on webhook sockets | epoll_ctl | recvfrom/read | writev/sendto/write |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
