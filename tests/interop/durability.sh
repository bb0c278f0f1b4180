#!/usr/bin/env bash
# Durability, the long run (issue 10 §3): the kill -9 test of tests/durability.rs for 20
# cycles, in release mode. Each cycle: the hub (--data-dir, --fsync always) runs under 4
# keep-alive publishers, SSE, WebSocket and long-poll subscribers and a webhook receiver,
# is killed with SIGKILL at a random moment and restarted on the same directory; then
# every publish answered 201 must be in /events with its id and data, no id may map to two
# data, every subscriber must have seen each event at most once, in order, skipping only
# after a gap notice, and every event must reach the webhook receiver (signed, one
# webhook-id per event). At the end the last hub delivers its whole outbox.
#
# Each cycle the test reports is one check, and the run as a whole is one more. Ends with
# `durability: N passed, M failed`; exits non-zero on any failure.
#
#   PUSHWIRE_KILL_CYCLES=N   cycles (default 20)
#   KEEP_LOGS=1              keep the test output (and PUSHWIRE_KEEP_DIRS=1 the data dirs)
set -euo pipefail
SCRIPT_NAME=durability
source "$(dirname "$0")/common.bash"
install_traps

CYCLES=${PUSHWIRE_KILL_CYCLES:-20}
TEST=kill9_under_load_loses_nothing_acknowledged
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pushwire-durability.XXXXXX")
if [ -n "${KEEP_LOGS:-}" ]; then
  log "output kept in $WORK"
else
  TMPDIRS+=("$WORK")
fi

finish() {
  summary durability
  exit $?
}

# The test binary rebuilds the hub example itself when it is stale; building both here
# keeps compiler output out of the run.
log "cargo build --release --example hub; cargo test --release --test durability --no-run"
if ! (cd "$ROOT" && cargo build --release --quiet --example hub &&
  cargo test --release --quiet --test durability --no-run) >"$WORK/build.log" 2>&1; then
  tail -n 30 "$WORK/build.log"
  fail "build the hub and tests/durability.rs (release)"
  finish
fi

log "running $TEST for $CYCLES cycles"
start_s=$(date +%s)
rc=0
# Bounded: a hang (the test bounds each wait, so this is a backstop) ends after 10 minutes
# (20 cycles take 2-4 minutes on a quiet machine; a loaded one needed more than 5).
(cd "$ROOT" && PUSHWIRE_KILL_CYCLES=$CYCLES timeout -k 10 600 \
  cargo test --release --quiet --test durability "$TEST" -- --exact --nocapture) \
  >"$WORK/test.log" 2>&1 || rc=$?
elapsed=$(($(date +%s) - start_s))

# One check per cycle the test reported as passed.
while IFS= read -r line; do
  pass "${line#durability }"
done < <(grep '^durability cycle [0-9]*/[0-9]* ok' "$WORK/test.log" || true)
ran=$(grep -c '^durability cycle [0-9]*/[0-9]* ok' "$WORK/test.log" || true)
if [ "$rc" -eq 0 ] && [ "$ran" -eq "$CYCLES" ] && grep -q '^durability kill -9: ' "$WORK/test.log"; then
  pass "$(grep '^durability kill -9: ' "$WORK/test.log") (${elapsed} s with the test harness)"
else
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    fail "$TEST did not finish within 300 s"
  else
    fail "$TEST: exit $rc after $ran of $CYCLES cycles"
  fi
  # What went wrong: the panic message (the test puts the details in it).
  grep -v '^durability cycle ' "$WORK/test.log" | grep -Ev '^ +([0-9]+: |at )' | tail -n 40
fi
finish
