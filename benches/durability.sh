#!/usr/bin/env bash
# Durability cost (issue 10, section 4): publishes/s with 1 and 64 keep-alive publishers in
# memory, with `--data-dir D --fsync always` and `--fsync interval`; /healthz latency during
# each load; recovery time and size of a 1,000 x 1,000-event data dir. All in one run.
#
#   bash benches/durability.sh
#
# Builds this tree's release hub (`cargo build --release --example hub`) and runs
# `cargo bench -p pushwire-benches --bench durability` against it. Every line the bench
# prints is also kept in target/durability/last-run.txt. The bench's settings are
# environment variables (DURBENCH_SECS, DURBENCH_ROUNDS, DURBENCH_PUBLISHERS, DURBENCH_DIR,
# ...: see the top of benches/durability/main.rs); they pass through. PUSHWIRE_HUB=PATH uses that hub instead of
# building one.
set -euo pipefail

cd "$(dirname "$0")/.."

die() { echo "durability.sh: $*" >&2; exit 1; }

if [ -z "${PUSHWIRE_HUB:-}" ]; then
    echo "durability.sh: building the hub (this tree)" >&2
    cargo build --release --example hub >&2 || die "cannot build this tree's hub"
    PUSHWIRE_HUB=$PWD/target/release/examples/hub
fi
[ -x "$PUSHWIRE_HUB" ] || die "no hub at $PUSHWIRE_HUB"
export PUSHWIRE_HUB

mkdir -p target/durability
OUT=target/durability/last-run.txt
start=$(date +%s)
status=0
cargo bench -p pushwire-benches --bench durability | tee "$OUT" || status=$?
echo "durability.sh: $(( $(date +%s) - start )) s, exit status $status; output in $OUT" >&2
exit $status
