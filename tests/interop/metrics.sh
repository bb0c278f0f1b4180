#!/usr/bin/env bash
# The hub's GET /metrics read by the Prometheus project's own parser: the Python
# `prometheus_client` package (metrics.py: text_string_to_metric_families) parses the
# exposition, and the values are checked after known activity (publishes, an SSE stream,
# a parked poll). Plus curl: the Content-Type, and the admin token /metrics needs.
set -euo pipefail
SCRIPT_NAME=metrics
source "$(dirname "$0")/common.bash"
install_traps

ensure_venv "${PY_REQUIREMENTS[@]}" prometheus_client==0.26.0
build_example hub

echo "== curl, with --admin-token"
start_example hub --admin-token adm
BASE="http://$ADDR"
check "curl: /metrics without the admin token: 401" 401 \
  "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE/metrics")"
check "curl: /metrics with it: 200" 200 \
  "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Authorization: Bearer adm' "$BASE/metrics")"
check "curl: Content-Type" "text/plain; version=0.0.4; charset=utf-8" \
  "$(curl -s -o /dev/null -w '%{content_type}' --max-time 5 -H 'Authorization: Bearer adm' "$BASE/metrics")"

echo "== prometheus_client (a fresh hub without tokens)"
start_example hub
py_out=$(mktemp "${TMPDIR:-/tmp}/pushwire-metrics.XXXXXX")
TMPDIRS+=("$py_out")
py_rc=0
(cd "$INTEROP" && timeout --kill-after=5 120 "$VENV/bin/python" metrics.py "$ADDR") >"$py_out" 2>&1 || py_rc=$?
grep -v '^metrics interop:' "$py_out" || true
PASSED=$((PASSED + $(grep -c '^ok ' "$py_out" || true)))
FAILED=$((FAILED + $(grep -c '^FAIL ' "$py_out" || true)))
if [ "$py_rc" -ne 0 ] && ! grep -q '^FAIL ' "$py_out"; then
  fail "metrics.py exited with $py_rc"
  cat "$py_out"
fi
if [ "$FAILED" -ne 0 ]; then
  echo "hub stderr (tail):"
  tail -n 20 "$SERVER_LOG"
fi
summary "metrics interop"
