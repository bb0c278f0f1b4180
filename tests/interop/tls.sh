#!/usr/bin/env bash
# TLS interop: the hub (examples/hub.rs) with a plain and a TLS listener, a test PKI made
# here with the `openssl` CLI (a CA; leaves for localhost + 127.0.0.1, expired, for the
# wrong name, and from a CA nobody trusts), and third-party clients and servers on the
# other end of every TLS connection:
#  - curl --cacert: https publish, /events, a parked long poll released by a publish, SSE
#    with Last-Event-ID replay, all with their exact output; ALPN (curl offers h2 and
#    http/1.1, the hub picks http/1.1); curl without the CA, or for another name, refuses
#    the hub (exit 60); plaintext to the TLS port and TLS to the plain port are not served;
#  - the Python `websockets` package over wss:// (tls_clients.py): subscribe, publish both
#    ways, large messages, ?since= replay, refusals on the client side;
#  - https:// webhook receivers (tls_receiver.py: Python `ssl` + http.server, every
#    delivery verified with the `standardwebhooks` reference library): one with the
#    localhost certificate, registered as https://127.0.0.1:P/hook and https://localhost:P/hook
#    (the hub started with --webhook-ca CA.pem), gets every event once, signed and verified
#    (events published one at a time: in order, over one pooled connection per URL; then a
#    burst: still pooled), with SNI only for the DNS name; the hub's
#    own /hooks/receive over its TLS listener verifies what it gets; receivers with an
#    expired certificate, a certificate for other.example only and one from an unknown CA
#    get no request at all (the handshake fails, with the matching alert), and the hub's
#    outcome names the cause after its retries (--webhook-schedule 0.2,0.2: 3 attempts).
# Ends with `tls interop: N passed, M failed`; exits non-zero on any failure.
#
#   KEEP_LOGS=1   keep the temporary directory (PKI, hub and receiver logs, records)
set -euo pipefail
SCRIPT_NAME=tls
source "$(dirname "$0")/common.bash"
install_traps

SWH_REQ="standardwebhooks==1.1.0" # the pin webhooks.sh uses
TARGET=${CARGO_TARGET_DIR:-target}
case $TARGET in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac # cargo resolves it from $ROOT
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pushwire-tls.XXXXXX")
if [ -n "${KEEP_LOGS:-}" ]; then
  log "logs kept in $WORK"
else
  TMPDIRS+=("$WORK")
fi
PY="$VENV/bin/python"
START_S=$EPOCHREALTIME

finish() {
  if [ "$FAILED" -ne 0 ]; then
    for f in "$WORK"/*.stderr; do
      [ -s "$f" ] && { echo "--- tail of $(basename "$f")"; tail -n 15 "$f"; }
    done
  fi
  log "took $(awk -v a="$START_S" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
  summary "tls interop"
  exit $?
}
# Setup that cannot go on: one failed check, then the summary line.
die() {
  fail "$1"
  finish
}

command -v openssl >/dev/null || die "the openssl CLI is installed (apt-get install openssl)"
ensure_venv "${PY_REQUIREMENTS[@]}" "$SWH_REQ"
"$PY" -c 'import websockets, standardwebhooks' || die "websockets and standardwebhooks import"
build_example hub || die "cargo build --release --example hub"

# ---- the test PKI ------------------------------------------------------------------------
# `openssl ca` (not `x509 -req`) so that any validity period can be given, also one in the
# past: OpenSSL before 3.4 has no -not_before/-not_after. EC P-256 keys (PKCS#8).
PKI="$WORK/pki"
mkdir -p "$PKI/newcerts"
: >"$PKI/index.txt"
echo 1000 >"$PKI/serial"
cat >"$PKI/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
default_ca = test_ca
[test_ca]
dir = .
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
default_md = sha256
policy = any_name
unique_subject = no
copy_extensions = none
email_in_dn = no
[any_name]
commonName = supplied
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $ENV::SAN
EOF
stamp() { date -u -d "$1" +%Y%m%d%H%M%SZ; } # GeneralizedTime for openssl ca
NOW_MINUS=$(stamp '-1 hour')
NOW_PLUS=$(stamp '+7 days')
# ossl ARGS...: openssl in $PKI with the config (SAN must be set for it to load).
ossl() { (cd "$PKI" && SAN=${SAN:-DNS:unused} openssl "$@") >>"$WORK/pki.log" 2>&1; }
newkey() { ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"; }
# make_ca NAME CN: a self-signed CA, valid from 2019 (before every leaf) for 30 days more.
make_ca() {
  newkey "$1" &&
    ossl req -new -config openssl.cnf -key "$1.key" -subj "/CN=$2" -out "$1.csr" &&
    ossl ca -batch -config openssl.cnf -selfsign -keyfile "$1.key" -in "$1.csr" \
      -extensions v3_ca -startdate 20190101000000Z -enddate "$(stamp '+30 days')" -notext \
      -out "$1.pem"
}
# make_leaf NAME CA SAN START END: a server certificate signed by CA.
make_leaf() {
  newkey "$1" &&
    ossl req -new -config openssl.cnf -key "$1.key" -subj "/CN=$1" -out "$1.csr" &&
    SAN=$3 ossl ca -batch -config openssl.cnf -cert "$2.pem" -keyfile "$2.key" -in "$1.csr" \
      -extensions leaf -startdate "$4" -enddate "$5" -notext -out "$1.pem"
}
{
  make_ca ca "pushwire interop test CA" &&
    make_ca otherca "pushwire interop untrusted CA" &&
    make_leaf localhost ca "DNS:localhost,IP:127.0.0.1" "$NOW_MINUS" "$NOW_PLUS" &&
    make_leaf expired ca "DNS:localhost,IP:127.0.0.1" 20200101000000Z 20200102000000Z &&
    make_leaf wrongname ca "DNS:other.example" "$NOW_MINUS" "$NOW_PLUS" &&
    make_leaf unknown otherca "DNS:localhost,IP:127.0.0.1" "$NOW_MINUS" "$NOW_PLUS"
} || { tail -n 20 "$WORK/pki.log"; die "make the test PKI with openssl"; }
CA="$PKI/ca.pem"
# The PKI as openssl itself sees it: the negative cases fail for the intended reason only.
pki_verify() { # pki_verify CERT [ARGS...]: `CERT.pem: OK`, or openssl verify's error line
  openssl verify -CAfile "$CA" "${@:2}" "$PKI/$1.pem" 2>&1 |
    grep -E '^error [0-9]+ at |: OK$' | head -n 1 | sed "s|$PKI/||"
}
NAMES=(-verify_hostname localhost -verify_ip 127.0.0.1)
check "pki: the localhost leaf verifies for localhost and 127.0.0.1" "localhost.pem: OK" \
  "$(pki_verify localhost "${NAMES[@]}")"
check "pki: the expired leaf has expired" "error 10 at 0 depth lookup: certificate has expired" \
  "$(pki_verify expired "${NAMES[@]}")"
check "pki: ... and verifies at a time inside its validity (nothing else is wrong)" "expired.pem: OK" \
  "$(pki_verify expired "${NAMES[@]}" -attime "$(date -u -d '2020-01-01 12:00' +%s)")"
check "pki: the wrong-name leaf verifies for other.example" "wrongname.pem: OK" \
  "$(pki_verify wrongname -verify_hostname other.example)"
check "pki: ... not for localhost" "error 62 at 0 depth lookup: hostname mismatch" \
  "$(pki_verify wrongname -verify_hostname localhost)"
check "pki: the unknown-CA leaf does not chain to the test CA" \
  "error 20 at 0 depth lookup: unable to get local issuer certificate" "$(pki_verify unknown)"
check "pki: ... but to its own CA" "unknown.pem: OK" \
  "$(CA="$PKI/otherca.pem" pki_verify unknown "${NAMES[@]}")"

# The hub connects to the first address a name resolves to, and every listener here is on
# 127.0.0.1: the https://localhost webhooks need localhost to resolve to it first.
check "localhost resolves to 127.0.0.1 first (getaddrinfo, as the hub's resolver)" 127.0.0.1 \
  "$("$PY" -c 'import socket; print(socket.getaddrinfo("localhost", 1, type=socket.SOCK_STREAM)[0][4][0])')"

# ---- start the processes -----------------------------------------------------------------
SERVERS=() # NAME:PID of the hub and the receivers (checked alive at the end)
# start_proc NAME N CMD...: runs CMD (stdout and stderr in $WORK/NAME.*), waits at most
# 20 s for N stdout lines holding a URL and sets ADDRS to their HOST:PORTs, space-separated.
start_proc() {
  local name=$1 n=$2 got=0
  shift 2
  "$@" >"$WORK/$name.stdout" 2>"$WORK/$name.stderr" &
  local pid=$!
  PIDS+=("$pid")
  SERVERS+=("$name:$pid")
  for _ in $(seq 200); do
    got=$(grep -c '://' "$WORK/$name.stdout" 2>/dev/null || true)
    [ "${got:-0}" -ge "$n" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited early: $(tail -n 5 "$WORK/$name.stderr")"
      return 1
    fi
    sleep 0.1
  done
  if [ "${got:-0}" -lt "$n" ]; then
    log "$name printed no address within 20 s"
    return 1
  fi
  ADDRS=$(sed -n 's|.*://\([^/ ]*\).*|\1|p' "$WORK/$name.stdout" | head -n "$n" | tr '\n' ' ')
  log "$name on $ADDRS(pid $pid)"
}

start_proc hub 2 env PUSHWIRE_LOG=debug "$TARGET/release/examples/hub" --addr 127.0.0.1:0 \
  --tls-addr 127.0.0.1:0 --tls-cert "$PKI/localhost.pem" --tls-key "$PKI/localhost.key" \
  --webhook-ca "$CA" --webhook-allow-private --webhook-schedule 0.2,0.2 ||
  die "the hub starts with a plain and a TLS listener"
read -r HUB HUB_TLS <<<"$ADDRS"
check "the hub announces its TLS listener" "pushwire hub listening on https://$HUB_TLS" \
  "$(sed -n 2p "$WORK/hub.stdout")"
TLS_PORT=${HUB_TLS##*:}
declare -A RCV CTL
for r in localhost expired wrongname unknown; do
  start_proc "rcv-$r" 2 "$PY" "$INTEROP/tls_receiver.py" \
    --cert "$PKI/$r.pem" --key "$PKI/$r.key" --idle-timeout 30 ||
    die "the https receiver with the $r certificate starts"
  read -r "RCV[$r]" "CTL[$r]" <<<"$ADDRS"
done

# Every curl to the TLS listener: the test CA, and localhost pinned to 127.0.0.1.
CURL=(curl -sS --max-time 5 --cacert "$CA" --resolve "localhost:$TLS_PORT:127.0.0.1")
HTTPS="https://localhost:$TLS_PORT"
# A curl that trusts only what it would by default (the system store, not the test CA).
bare_curl() { env -u CURL_CA_BUNDLE -u SSL_CERT_FILE -u SSL_CERT_DIR curl "$@"; }
json_field() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }

# ---- curl over https ---------------------------------------------------------------------
echo "== curl"
check "https://localhost/healthz with --cacert" "ok" "$("${CURL[@]}" "$HTTPS/healthz" 2>&1)"
check "https://127.0.0.1/healthz with --cacert (the IP SAN)" "ok" \
  "$("${CURL[@]}" "https://127.0.0.1:$TLS_PORT/healthz" 2>&1)"
check "the plain listener still serves http" "ok" "$(curl -sS --max-time 5 "http://$HUB/healthz" 2>&1)"
"${CURL[@]}" -v --http2 -o /dev/null "$HTTPS/healthz" 2>"$WORK/curl-v.txt" || true
alpn=$(grep -E 'ALPN.*offer' "$WORK/curl-v.txt" | head -n1 | sed 's/^\* //')
case $alpn in
  *h2*http/1.1*) pass "ALPN: curl offered h2 and http/1.1 ($alpn)" ;;
  *) fail "ALPN: curl offered h2 and http/1.1" "ALPN: offers h2,http/1.1" "$alpn" ;;
esac
check "ALPN: the hub accepted http/1.1" 1 \
  "$(grep -cE 'ALPN[:,] server accepted (to use )?http/1\.1' "$WORK/curl-v.txt" || true)"
check "  and answered over HTTP/1.1" "< HTTP/1.1 200 OK" \
  "$(grep -m1 '^< HTTP/' "$WORK/curl-v.txt" | tr -d '\r')"
check "  with TLS 1.3" 1 "$(grep -c 'SSL connection using TLSv1.3' "$WORK/curl-v.txt" || true)"
rc=0
bare_curl -sS --max-time 5 --resolve "localhost:$TLS_PORT:127.0.0.1" "$HTTPS/healthz" \
  >/dev/null 2>"$WORK/curl-nocacert.txt" || rc=$?
check "curl without --cacert refuses the hub's certificate (exit 60)" 60 "$rc"
rc=0
"${CURL[@]}" --resolve "other.example:$TLS_PORT:127.0.0.1" "https://other.example:$TLS_PORT/healthz" \
  >/dev/null 2>"$WORK/curl-othername.txt" || rc=$?
check "curl --cacert for another name (other.example) refuses it too (exit 60)" 60 "$rc"
code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TLS_PORT/healthz" || true)
check "plaintext HTTP to the TLS port gets no HTTP answer" 000 "$code"
rc=0
"${CURL[@]}" -o /dev/null "https://127.0.0.1:${HUB##*:}/healthz" 2>/dev/null || rc=$?
check "TLS to the plain port fails the handshake (curl exit 35)" 35 "$rc"

T="tls-$$"
answer=$("${CURL[@]}" --data-binary 'hello over tls' "$HTTPS/topics/$T?event=greeting" 2>&1)
F=$(sed -n 's/^{"topic":"'"$T"'","id":\([0-9]\{1,16\}\)}$/\1/p' <<<"$answer")
now_us=$(($(date +%s%N) / 1000))
if [ -n "$F" ] && [ "$F" -le "$now_us" ] && [ "$F" -gt $((now_us - 60000000)) ]; then
  pass "https publish: 201 JSON, the first id ($F) is the Unix time in microseconds"
else
  fail "https publish: the first id is the Unix time in microseconds" "an id near $now_us" "$answer"
  F=1
fi
nth() { echo $((F + $1 - 1)); } # nth K: the K-th event's id
check "https publish 2 (multi-line, unicode) gets the next id" "{\"topic\":\"$T\",\"id\":$(nth 2)}" \
  "$("${CURL[@]}" --data-binary $'zwei\nZeilen \xe2\x9c\x93' "$HTTPS/topics/$T" 2>&1)"
E1="{\"id\":$(nth 1),\"event\":\"greeting\",\"data\":\"hello over tls\"}"
E2="{\"id\":$(nth 2),\"event\":null,\"data\":\"zwei\\nZeilen ✓\"}"
check "https /events?since=0: exactly both" "{\"events\":[$E1,$E2],\"next\":$(nth 2),\"gap\":false}" \
  "$("${CURL[@]}" "$HTTPS/topics/$T/events?since=0" 2>&1)"
check "https /events?since=<1st>: the second" "{\"events\":[$E2],\"next\":$(nth 2),\"gap\":false}" \
  "$("${CURL[@]}" "https://127.0.0.1:$TLS_PORT/topics/$T/events?since=$(nth 1)" 2>&1)"

# A long poll over https parks, and a publish over https releases it.
stat_parked() {
  "${CURL[@]}" "$HTTPS/stats" 2>/dev/null |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["connections"]["parked"])' 2>/dev/null || true
}
"${CURL[@]}" --max-time 10 "$HTTPS/topics/$T/poll?since=$(nth 2)&timeout=8" >"$WORK/poll.out" 2>&1 &
poll_pid=$!
PIDS+=("$poll_pid")
parked=0
for _ in $(seq 100); do # at most 5 s
  [ "$(stat_parked)" = 1 ] && { parked=1; break; }
  sleep 0.05
done
check "https long poll parks (/stats parked = 1)" 1 "$parked"
check "  and has not answered before the publish" "" "$(cat "$WORK/poll.out")"
published=$EPOCHREALTIME
check "https publish 3" "{\"topic\":\"$T\",\"id\":$(nth 3)}" \
  "$("${CURL[@]}" --data-binary 'released' "$HTTPS/topics/$T" 2>&1)"
wait "$poll_pid" || true # bounded by its --max-time
ms=$(awk -v a="$published" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')
check "the parked poll answers with the new event (${ms} ms after the publish)" \
  "{\"events\":[{\"id\":$(nth 3),\"event\":null,\"data\":\"released\"}],\"next\":$(nth 3),\"gap\":false}" \
  "$(cat "$WORK/poll.out")"
[ "$ms" -lt 2000 ] && pass "  released before its timeout" || fail "  released ${ms} ms after the publish"

# SSE over https: `curl -N` the stream (as sse_clients.sh does), Last-Event-ID replay, live.
declare -A CURL_PID
sse_open() { # sse_open NAME URL [CURL ARGS...]: returns once the response head arrived (5 s)
  local name=$1 url=$2
  shift 2
  "${CURL[@]}" -N --max-time 20 -D "$WORK/$name.head" -o "$WORK/$name.body" "$@" "$url" \
    2>"$WORK/sse-$name.err" &
  PIDS+=($!)
  CURL_PID[$name]=$!
  for _ in $(seq 100); do
    grep -q $'^\r$' "$WORK/$name.head" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
count_events() {
  awk '/^data:/ { d = 1 } /^$/ { if (d) n++; d = 0 } END { print n + 0 }' "$1" 2>/dev/null || echo 0
}
sse_take() { # sse_take NAME N: waits (5 s) for N events, stops curl, prints them (no comments)
  local name=$1 n=$2
  for _ in $(seq 100); do
    [ "$(count_events "$WORK/$name.body")" -ge "$n" ] && break
    sleep 0.05
  done
  sleep 0.1 # a duplicate would show up too
  kill "${CURL_PID[$name]}" 2>/dev/null || true
  wait "${CURL_PID[$name]}" 2>/dev/null || true
  awk 'BEGIN { RS = ""; ORS = "\n\n" }
       { out = ""; n = split($0, l, "\n")
         for (i = 1; i <= n; i++) if (l[i] !~ /^(:|retry:)/) out = out l[i] "\n"
         if (out != "") printf "%s\n", out }' "$WORK/$name.body"
  echo .
}
ev() { # ev ID EVENT DATA-LINE...: one event as the hub writes it
  printf 'id: %s\n' "$1"
  [ -n "$2" ] && printf 'event: %s\n' "$2"
  shift 2
  local line
  for line in "$@"; do printf 'data: %s\n' "$line"; done
  printf '\n'
}
expect() { "$@"; echo .; }
if sse_open resume "$HTTPS/topics/$T/sse" -H "Last-Event-ID: $(nth 1)"; then
  head=$(tr -d '\r' <"$WORK/resume.head" | tr 'A-Z' 'a-z')
  check "https SSE: 200, text/event-stream" "http/1.1 200 ok content-type: text/event-stream" \
    "$(head -n1 <<<"$head") $(grep '^content-type:' <<<"$head")"
  "${CURL[@]}" --data-binary 'over sse' "$HTTPS/topics/$T?event=live" >/dev/null 2>&1 || true
  check "https SSE: Last-Event-ID <1st> replays 2 and 3, then the live 4th, exact bytes" \
    "$(expect eval 'ev $(nth 2) "" zwei "Zeilen ✓"; ev $(nth 3) "" released; ev $(nth 4) live "over sse"')" \
    "$(sse_take resume 3)"
else
  fail "https SSE: the response head arrives within 5 s"
fi
if sse_open query "https://127.0.0.1:$TLS_PORT/topics/$T/sse?last_event_id=$(nth 3)"; then
  check "https SSE by IP: ?last_event_id=<3rd> replays the 4th" \
    "$(expect ev "$(nth 4)" live 'over sse')" "$(sse_take query 1)"
else
  fail "https SSE by IP: the response head arrives within 5 s"
fi

# ---- Python websockets over wss ----------------------------------------------------------
echo "== websockets over wss (tls_clients.py)"
py_rc=0
INTEROP_NO_SUMMARY=1 timeout --kill-after=5 60 \
  "$PY" "$INTEROP/tls_clients.py" "$TLS_PORT" "$CA" >"$WORK/tls_clients.out" 2>&1 || py_rc=$?
cat "$WORK/tls_clients.out"
PASSED=$((PASSED + $(grep -c '^ok ' "$WORK/tls_clients.out" || true)))
FAILED=$((FAILED + $(grep -c '^FAIL ' "$WORK/tls_clients.out" || true)))
if [ "$py_rc" -ne 0 ] && ! grep -q '^FAIL ' "$WORK/tls_clients.out"; then
  fail "tls_clients.py exited with $py_rc"
fi

# What the hub made of the connections it did not serve (PUSHWIRE_LOG=debug).
hub_saw() { grep -cE "$1" "$WORK/hub.stderr" 2>/dev/null || true; }
n=$(hub_saw 'closed: tls: not TLS')
[ "$n" -ge 1 ] && pass "hub log: plaintext HTTP on the TLS port closed as 'not TLS'" ||
  fail "hub log: plaintext HTTP on the TLS port closed as 'not TLS' (found $n)"
n=$(hub_saw 'tls: the peer sent a fatal alert: received fatal alert: UnknownCA')
[ "$n" -ge 2 ] && pass "hub log: the clients without the CA (curl, Python) sent UnknownCA ($n)" ||
  fail "hub log: the clients without the CA (curl, Python) sent UnknownCA (found $n, want >= 2)"
n=$(hub_saw 'closed: tls: no common ALPN protocol')
[ "$n" -ge 1 ] && pass "hub log: the h2-only client closed for no common ALPN protocol" ||
  fail "hub log: the h2-only client closed for no common ALPN protocol (found $n)"

# ---- https webhooks ----------------------------------------------------------------------
echo "== https webhooks"
WT="tls-hooks-$$" # the receiver with the good certificate, and the hub itself
WB="tls-bad-$$"   # the receivers whose certificates the hub must refuse
P_GOOD=${RCV[localhost]##*:}
# name topic url
HOOKS="good-ip $WT https://127.0.0.1:$P_GOOD/hook
good-dns $WT https://localhost:$P_GOOD/hook
self $WT https://localhost:$TLS_PORT/hooks/receive
expired $WB https://localhost:${RCV[expired]##*:}/hook
wrongname-ip $WB https://127.0.0.1:${RCV[wrongname]##*:}/hook
wrongname-dns $WB https://localhost:${RCV[wrongname]##*:}/hook
unknown $WB https://127.0.0.1:${RCV[unknown]##*:}/hook"
while read -r name topic url; do
  code=$("${CURL[@]}" -o "$WORK/reg-$name.json" -w '%{http_code}' --data-urlencode "url=$url" \
    "$HTTPS/topics/$topic/webhooks" 2>>"$WORK/curl.stderr" || true)
  check "register $url over https: 201" 201 "$code"
  [ "$code" = 201 ] || die "cannot go on without the $name webhook: $(cat "$WORK/reg-$name.json")"
  secret=$(json_field "$WORK/reg-$name.json" secret)
  rcv=${name%-*}
  [ "$rcv" = good ] && rcv=localhost
  [ "$name" = self ] && continue
  printf '{"url":"%s","secret":"%s"}' "$url" "$secret" >"$WORK/sec.json"
  code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' --data-binary @"$WORK/sec.json" \
    "http://${CTL[$rcv]}/_secrets" 2>>"$WORK/curl.stderr" || true)
  [ "$code" = 204 ] || die "the $rcv receiver took the secret for $url ($code)"
done <<<"$HOOKS"

# The events: 4 one at a time (each delivered before the next is published: order and
# pooling are deterministic), then a burst of 6 (unicode, quotes, CR/LF, control
# characters, 40 KB: several TLS records, event names).
"$PY" - "$WORK/events" <<'EOF'
import json, os, sys, urllib.parse
d = sys.argv[1]
os.makedirs(d)
events = [
    ("one at a time 1", None),
    ("one at a time 2", "step"),
    ("one at a time 3", None),
    ("one at a time 4", "step"),
    ("h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e \U0001F680", None),
    ('she said "hi" and \\back\\slash\\', "quote.test"),
    ("line one\nline two\r\nline three\ttabbed\n", None),
    ("ctl \x01\x02\x1b\x7f end", None),
    ("y" * 40000 + "\u00e9", "big"),
    ("last of the burst", "a~!@#$%^&*()_+={}[]|:;'<>,.?/\"`"),
]
for i, (data, name) in enumerate(events, 1):
    with open(os.path.join(d, "%02d.data" % i), "wb") as f:
        f.write(data.encode())
    q = "" if name is None else "?event=" + urllib.parse.quote(name, safe="")
    with open(os.path.join(d, "%02d.query" % i), "w") as f:
        f.write(q)
with open(os.path.join(d, "events.json"), "w") as f:
    json.dump([{"data": a, "event": b} for a, b in events], f)
EOF
NEVENTS=$(ls "$WORK/events"/*.data | wc -l)
NSEQ=4
: >"$WORK/ids.txt"
publish_event() { # publish_event K: event K over https to $WT; its id goes to ids.txt
  local n
  n=$(printf '%02d' "$1")
  code=$("${CURL[@]}" -o "$WORK/pub.json" -w '%{http_code}' --data-binary @"$WORK/events/$n.data" \
    "$HTTPS/topics/$WT$(cat "$WORK/events/$n.query")" 2>>"$WORK/curl.stderr" || true)
  if [ "$code" = 201 ]; then
    json_field "$WORK/pub.json" id >>"$WORK/ids.txt"
  else
    fail "publish event $1 over https: $code $(cat "$WORK/pub.json" 2>/dev/null)"
  fi
}
records_count() { # records_count RECEIVER: how many requests it recorded
  curl -s --max-time 5 "http://${CTL[$1]}/records" 2>/dev/null |
    "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["records"]))' 2>/dev/null || echo 0
}

# The refused receivers first: their retries run alongside the good deliveries. Three
# events each (an endpoint pauses after 5 failed messages in a row).
NBAD=3
for i in $(seq "$NBAD"); do
  code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' --data-binary "refused $i" \
    "$HTTPS/topics/$WB" 2>>"$WORK/curl.stderr" || true)
  [ "$code" = 201 ] || fail "publish to $WB over https: $code"
done
in_time=1
for k in $(seq "$NSEQ"); do
  publish_event "$k"
  arrived=0
  for _ in $(seq 100); do # bounded: 10 s each
    [ "$(records_count localhost)" -ge $((2 * k)) ] && { arrived=1; break; }
    sleep 0.1
  done
  [ "$arrived" -eq 1 ] || in_time=0
done
check "one at a time: each of $NSEQ events reached both https URLs within 10 s" 1 "$in_time"
for k in $(seq $((NSEQ + 1)) "$NEVENTS"); do publish_event "$k"; done
check "events published over https" "$NEVENTS" "$(wc -l <"$WORK/ids.txt")"

# Every message to an outcome (bounded): 3 good URLs x N delivered, 4 refused x 3 failed.
want_delivered=$((3 * NEVENTS))
want_failed=$((4 * NBAD))
settled=0
for _ in $(seq 300); do # bounded: 30 s
  "${CURL[@]}" -o "$WORK/stats.json" "$HTTPS/stats" 2>/dev/null || true
  n=$("$PY" -c 'import json, sys
w = json.load(open(sys.argv[1]))["webhooks"]
print(w["delivered"] + w["failed"] if w["retrying"] == 0 else -1)' "$WORK/stats.json" 2>/dev/null || echo -1)
  [ "$n" -ge $((want_delivered + want_failed)) ] && { settled=1; break; }
  sleep 0.1
done
check "all $((want_delivered + want_failed)) webhook messages reached an outcome within 30 s" 1 "$settled"
sleep 0.5 # anything late (a duplicate, a stray retry) would land now
"${CURL[@]}" -o "$WORK/stats.json" "$HTTPS/stats" 2>/dev/null || true
"${CURL[@]}" -o "$WORK/list-bad.json" "$HTTPS/topics/$WB/webhooks" 2>/dev/null || true
for r in localhost expired wrongname unknown; do
  curl -s --max-time 5 -o "$WORK/records-$r.json" "http://${CTL[$r]}/records" || true
done

rc=0
"$PY" - "$WORK" "$WT" "$P_GOOD" "$TLS_PORT" "$NSEQ" "$NBAD" \
  "${RCV[expired]##*:}" "${RCV[wrongname]##*:}" "${RCV[unknown]##*:}" \
  >"$WORK/checks.txt" 2>"$WORK/checks.stderr" <<'EOF' || rc=$?
import json, re, sys

work, topic, p_good, p_tls, nseq, nbad, p_exp, p_wrong, p_unk = sys.argv[1:10]
NSEQ, NBAD = int(nseq), int(nbad)
events = json.load(open(work + "/events/events.json"))
ids = [int(l) for l in open(work + "/ids.txt").read().split()]
N = len(events)
stats = json.load(open(work + "/stats.json"))
rec = {r: json.load(open("%s/records-%s.json" % (work, r)))
       for r in ("localhost", "expired", "wrongname", "unknown")}
hub_log = open(work + "/hub.stderr", encoding="utf-8", errors="replace").read().splitlines()
listing = json.load(open(work + "/list-bad.json"))


def check(name, ok, detail=""):
    print(("ok   %s" if ok else "FAIL %s") % name)
    if not ok and detail != "":
        print("     " + str(detail)[:800])


def pid(r):
    p = r["payload"]
    return p["data"].get("id") if isinstance(p, dict) and isinstance(p.get("data"), dict) else None


URL_IP = "https://127.0.0.1:%s/hook" % p_good
URL_DNS = "https://localhost:%s/hook" % p_good
good = rec["localhost"]["records"]
conns = {c["id"]: c for c in rec["localhost"]["connections"]}
by_url = {u: [r for r in good if r["url"] == u] for u in (URL_IP, URL_DNS)}

# -- the good receiver -----------------------------------------------------------------------
check("the https receiver got %d deliveries: %d events x 2 URLs, nothing else" % (len(good), N),
      len(good) == 2 * N and all(len(v) == N for v in by_url.values()),
      [(r["url"], r["path"]) for r in good if r["url"] not in by_url])
bad = [(r["url"], r["webhook_id"], r["error"]) for r in good if not r["verified"]]
check("every https delivery verified by standardwebhooks (secret of its URL, Host header"
      " included)", good and not bad, bad[:5])
bad = [(r["url"], r["webhook_id"]) for r in good if r["tamper_rejected"] is not True]
check("each with one byte added to its body is refused by standardwebhooks",
      good and not bad, bad[:5])
bad = []
for r in good:
    p, i = r["payload"], pid(r)
    if i not in ids:
        bad.append(("unknown id", r["url"], i))
        continue
    ev = events[ids.index(i)]
    want = {"topic": topic, "id": i, "event": ev["event"], "data": ev["data"]}
    if not isinstance(p, dict) or set(p) != {"type", "timestamp", "data"} or p["data"] != want \
            or p["type"] != (ev["event"] or "message"):
        bad.append(("payload", r["url"], i))
check("payloads: type and data.{topic,id,event,data} exactly as published (unicode, CR/LF,"
      " control characters, 40 KB)", good and not bad, bad[:4])
for u, rs in by_url.items():
    got = [pid(r) for r in rs]
    check("%s: the %d one-at-a-time events in publish order" % (u, NSEQ), got[:NSEQ] == ids[:NSEQ],
          (ids[:NSEQ], got[:NSEQ]))
    check("%s: every event exactly once" % u, sorted(got) == sorted(ids), (ids, got))
wid = {}
for r in good:
    wid.setdefault(pid(r), set()).add(r["webhook_id"])
check("one webhook-id per event on both URLs, distinct across events",
      all(len(s) == 1 for s in wid.values()) and len({min(s) for s in wid.values()}) == len(wid), wid)
bad = [(r["url"], r["host"]) for r in good if r["url"] != "https://%s/hook" % r["host"]
       or r["request_version"] != "HTTP/1.1" or not (r["content_type"] or "").startswith("application/json")]
check("HTTP/1.1 POST, Host header of its URL, application/json", good and not bad, bad[:4])

used = {u: sorted({r["conn"] for r in rs}) for u, rs in by_url.items()}
bad = [c for c in conns.values() if c["handshake"] != "ok" or c["alpn"] != "http/1.1"
       or c["version"] != "TLSv1.3"]
check("every connection to the receiver: handshake ok, TLS 1.3, ALPN http/1.1 (%d connections)"
      % len(conns), conns and not bad, bad[:3])
check("SNI: localhost for https://localhost, none for https://127.0.0.1 (RFC 6066 3)",
      all(conns[c]["sni"] == "localhost" for c in used[URL_DNS])
      and all(conns[c]["sni"] is None for c in used[URL_IP]),
      {u: [conns[c]["sni"] for c in cs] for u, cs in used.items()})
seq_conns = {u: {r["conn"] for r in rs[:NSEQ]} for u, rs in by_url.items()}
check("pooled: the %d one-at-a-time deliveries per URL went over one connection each (%s)"
      % (NSEQ, {u: len(c) for u, c in seq_conns.items()}),
      all(len(c) == 1 for c in seq_conns.values()), seq_conns)
check("pooled: %d deliveries over %d TCP connections accepted in all (%s per URL)"
      % (len(good), len(conns), [len(c) for c in used.values()]),
      len(conns) < len(good) and all(len(c) < len(rs) for c, rs in zip(used.values(), by_url.values())),
      used)

# -- the hub's own /hooks/receive over its TLS listener ---------------------------------------
rv = stats["received"]
check("the hub's /hooks/receive got all %d over https://localhost:%s and verified them"
      % (N, p_tls), rv == {"webhooks": N, "bad_signature": 0}, rv)

# -- the refused receivers -------------------------------------------------------------------
# name, port, URLs registered there, the hub's cause, the alert the receiver got
refused = [
    ("expired", p_exp, 1, "certificate expired", "alert certificate expired"),
    ("wrongname", p_wrong, 2, "certificate name mismatch", "alert bad certificate"),
    ("unknown", p_unk, 1, "certificate has an unknown issuer", "alert unknown ca"),
]
outcome = re.compile(r'webhook msg_[^ :]*: Failed \{ attempts: ([0-9]+), error: "(.*)" \}$')
for name, port, urls, cause, alert in refused:
    r = rec[name]
    check("%s: the receiver got no request at all" % name, r["records"] == [], r["records"][:2])
    cs = r["connections"]
    want = urls * NBAD * 3
    check("%s: %d TCP connections (%d URL(s) x %d events x 3 attempts), every handshake failed"
          % (name, want, urls, NBAD), len(cs) == want and all(c["handshake"] != "ok" for c in cs),
          [c["handshake"] for c in cs][:3] + [len(cs)])
    check("%s: the hub ended each handshake with the TLS alert '%s'" % (name, alert[6:]),
          cs and all(alert in (c["handshake"] or "").lower() for c in cs),
          sorted({c["handshake"] for c in cs}))
    lines = [m for m in map(outcome.search, hub_log) if m and "127.0.0.1:%s: tls: " % port in m.group(2)]
    check("%s: the hub logged %d failed outcomes, each after 3 attempts" % (name, urls * NBAD),
          len(lines) == urls * NBAD and all(m.group(1) == "3" for m in lines),
          [m.group(0)[:160] for m in lines][:3] + [len(lines)])
    check("%s: ... naming the cause: '127.0.0.1:%s: tls: %s'" % (name, port, cause),
          lines and all(("127.0.0.1:%s: tls: %s" % (port, cause)) in m.group(2) for m in lines),
          sorted({m.group(2)[:200] for m in lines}))
wr = rec["wrongname"]["connections"]
check("wrongname: SNI localhost for https://localhost, none for https://127.0.0.1 (3 + 3 attempts each)",
      sorted(str(c["sni"]) for c in wr) == sorted(["None"] * 3 * NBAD + ["localhost"] * 3 * NBAD),
      [c["sni"] for c in wr])
dis = [w for w in listing.get("webhooks", []) if w["disabled"]]
check("a refused certificate does not disable the webhook", listing.get("webhooks") and not dis, listing)

# -- /stats ----------------------------------------------------------------------------------
w = stats["webhooks"]
want_att = 3 * N + 4 * NBAD * 3
check("/stats webhooks: delivered %d == %d, failed %d == %d, retrying %d == 0"
      % (w["delivered"], 3 * N, w["failed"], 4 * NBAD, w["retrying"]),
      (w["delivered"], w["failed"], w["retrying"]) == (3 * N, 4 * NBAD, 0), w)
check("/stats webhooks: attempts %d == %d (one per good delivery, 3 per refused message)"
      % (w["attempts"], want_att), w["attempts"] == want_att, w)
EOF
cat "$WORK/checks.txt"
PASSED=$((PASSED + $(grep -c '^ok ' "$WORK/checks.txt" || true)))
FAILED=$((FAILED + $(grep -c '^FAIL ' "$WORK/checks.txt" || true)))
if [ "$rc" -ne 0 ]; then
  fail "the webhook checks stopped early (exit $rc):"
  tail -n 15 "$WORK/checks.stderr"
fi
for p in "${SERVERS[@]}"; do
  kill -0 "${p#*:}" 2>/dev/null || fail "${p%:*} died during the run (pid ${p#*:})"
done
finish
