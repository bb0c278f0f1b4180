#!/usr/bin/env bash
# Autobahn|TestSuite fuzzing client over wss:// against examples/echo.rs: cases 1.* to 10.*
# (everything but permessage-deflate, 12.* and 13.*) must end OK, NON-STRICT or
# INFORMATIONAL, with the WebSocket traffic inside TLS (rustls on pushwire's side,
# pyOpenSSL/Twisted's ClientContextFactory in wstest, which does not verify the
# certificate, so a throwaway self-signed one is enough).
#
# Needs ../shared/autobahn beside the repo root (its setup.sh installs wstest and the
# pyOpenSSL/cryptography/service_identity stack it needs for wss:// under $AUTOBAHN_HOME,
# default ~/.cache/autobahn). The report lands in target/autobahn-tls-report/ (override:
# AUTOBAHN_OUTDIR), the run's log beside it. The testee is a release build of
# examples/echo.rs with a TLS listener on a second port.
#   AUTOBAHN_CASES='1.*,9.1.1'   run a subset (default: 1.* to 10.*)
#   AUTOBAHN_TIMEOUT=N           wall-clock limit for wstest (default 300 s; it takes ~25 s;
#                                a subset matching no case makes wstest idle until then)
set -euo pipefail
SCRIPT_NAME=autobahn_tls
source "$(dirname "$0")/common.bash"
install_traps

# Every way out that is not a full report still ends with one summary line.
give_up() {
  log "$*"
  echo "autobahn wss: 0 passed, 1 failed"
  exit 1
}

SHARED=$(shared_dir)
WSTEST=$("$SHARED/autobahn/setup.sh" | tail -n1)
PY27="$(dirname "$WSTEST")/python2.7" # the private interpreter wstest runs on

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pushwire-autobahn-tls.XXXXXX")
TMPDIRS+=("$WORK")

# A self-signed P-256 certificate for 127.0.0.1. Without the openssl CLI, the private
# Python 2.7's cryptography (which wss:// needs anyway) makes an equivalent one.
if command -v openssl >/dev/null; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >"$WORK/openssl.log" 2>&1 ||
    give_up "openssl req failed: $(cat "$WORK/openssl.log")"
else
  PYTHONWARNINGS=ignore "$PY27" - "$WORK" <<'PY' || give_up "no openssl CLI, and python2.7 could not make a certificate"
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
key = ec.generate_private_key(ec.SECP256R1(), default_backend())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, u"localhost")])
now = datetime.datetime.utcnow()
san = x509.SubjectAlternativeName([x509.DNSName(u"localhost"), x509.IPAddress(ipaddress.ip_address(u"127.0.0.1"))])
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2)).add_extension(san, critical=False)
        .sign(key, hashes.SHA256(), default_backend()))
open(sys.argv[1] + "/cert.pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(sys.argv[1] + "/key.pem", "wb").write(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
PY
fi

build_example echo
start_example echo --tls-addr 127.0.0.1:0 --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"
# start_example waits for the ws:// line; the wss:// one follows once the TLS listener is up.
ECHO_OUT="$(dirname "$SERVER_LOG")/stdout"
TLS_ADDR=""
for _ in $(seq 100); do
  TLS_ADDR=$(sed -n 's#^.*wss://\([^/ ]*\).*$#\1#p' "$ECHO_OUT" | head -n1)
  [ -n "$TLS_ADDR" ] && break
  kill -0 "${PIDS[0]}" 2>/dev/null || give_up "echo exited: $(cat "$SERVER_LOG")"
  sleep 0.1
done
[ -n "$TLS_ADDR" ] || give_up "echo printed no wss:// address within 10 s: $(cat "$SERVER_LOG")"
log "wss://$TLS_ADDR"

# Preflight: one TLS handshake with the very context wstest's fuzzing client uses
# (twisted.internet.ssl.ClientContextFactory on pyOpenSSL), so a broken TLS stack in the
# private Python fails here with its own error rather than as 301 dropped connections.
if ! TLS_INFO=$(PYTHONWARNINGS=ignore timeout 20 "$PY27" - "$TLS_ADDR" 2>"$WORK/probe.err" <<'PY'
import socket, sys
from twisted.internet import ssl
from OpenSSL import SSL
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=10)
s.settimeout(None)  # pyOpenSSL wants a blocking socket (`timeout 20` bounds the probe)
c = SSL.Connection(ssl.ClientContextFactory().getContext(), s)
c.set_connect_state()
c.do_handshake()
print("%s %s" % (c.get_protocol_version_name(), c.get_cipher_name()))
c.shutdown()
s.close()
PY
); then
  give_up "wstest's TLS client cannot handshake with wss://$TLS_ADDR: $(tail -n 5 "$WORK/probe.err")"
fi
log "TLS handshake from wstest's context: $TLS_INFO"

OUTDIR=${AUTOBAHN_OUTDIR:-$ROOT/target/autobahn-tls-report}
rm -rf "$OUTDIR"
# In its own session (setsid) so the EXIT trap can stop it; run-server.sh bounds wstest
# with `timeout`, which moves wstest into a process group of its own, so the session is
# what holds them all.
AUTOBAHN_OUTDIR=$OUTDIR AUTOBAHN_AGENT=pushwire AUTOBAHN_TIMEOUT=${AUTOBAHN_TIMEOUT:-300} \
  setsid "$SHARED/autobahn/run-server.sh" "wss://$TLS_ADDR" \
  "${AUTOBAHN_CASES:-1.*,2.*,3.*,4.*,5.*,6.*,7.*,8.*,9.*,10.*}" '12.*,13.*' \
  >"$OUTDIR.log" 2>&1 </dev/null &
RUN_PID=$!
PIDS+=("-$RUN_PID")
# signal_session SIG: every process in the run's session (found through /proc, so no
# procps is needed); the session id is run-server.sh's pid, as setsid did not need to fork.
signal_session() {
  local sig=$1 f stat
  for f in /proc/[0-9]*/stat; do
    read -r stat 2>/dev/null <"$f" || continue
    stat=${stat##*) } # after "pid (comm) ": state ppid pgrp session ...
    set -- $stat
    [ "${4:-}" = "$RUN_PID" ] || continue
    f=${f#/proc/}
    kill "-$sig" "${f%/stat}" 2>/dev/null || true
  done
}
trap 'signal_session TERM; cleanup; signal_session KILL' EXIT
rc=0
wait "$RUN_PID" || rc=$?
# summarize.py's output (counts by behavior, failing cases), its closing line renamed.
sed -n '/^== wstest exit/,$p' "$OUTDIR.log" | sed 's/^autobahn: /autobahn wss: /'
if ! kill -0 "${PIDS[0]}" 2>/dev/null; then
  echo "the echo server died during the run; its stderr:"
  tail -n 20 "$SERVER_LOG"
  rc=1
fi
if [ "$rc" -ne 0 ] && ! tail -n1 "$OUTDIR.log" | grep -q '^autobahn: '; then
  tail -n 30 "$OUTDIR.log"
  echo "autobahn wss: 0 passed, 1 failed"
fi
exit "$rc"
