#!/usr/bin/env bash
# Fan-out cost before and after a change to the hub, measured in the same run.
#
#   bash benches/fanout.sh
#
# "before" is the hub built from BEFORE_REV (876c921 by default): its tree is exported with
# `git archive` into target/fanout-before/src-REV (outside the working tree's files, so
# nothing here is touched) and built there with `cargo build --release --example hub` and
# its own CARGO_TARGET_DIR (target/fanout-before/target), so the main target/ is not
# clobbered. "after" is this tree's hub (`cargo build --release --example hub`). Then the
# fanout bench (benches/fanout.rs) runs against both, interleaved (before, after, before,
# after, ... ROUNDS times each), the hub pinned to HUB_CORE and the bench to BENCH_CORE,
# and a markdown table gives the mean of each figure per side and the ratio after/before
# (lower is better for all of them). Every bench line is printed as it comes and kept in
# target/fanout/last-run.txt.
#
# Settings (environment): BEFORE_REV (876c921), ROUNDS (2), SUBS (10000), WEBHOOKS (100),
# PUBLISHES (20), PHASES (ws,sse,poll,webhook), HUB_CORE (0), BENCH_CORE (1), PORT (19301;
# each run uses its own block of ports from there), BEFORE_HUB / AFTER_HUB (use these hub
# binaries instead of building them).
# The bench kills its hubs when a phase ends, also on failure; hubs listen on 127.0.0.1.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

BEFORE_REV=${BEFORE_REV:-876c921}
ROUNDS=${ROUNDS:-2}
SUBS=${SUBS:-10000}
WEBHOOKS=${WEBHOOKS:-100}
PUBLISHES=${PUBLISHES:-20}
PHASES=${PHASES:-ws,sse,poll,webhook}
HUB_CORE=${HUB_CORE:-0}
BENCH_CORE=${BENCH_CORE:-1}
PORT=${PORT:-19301}

die() { echo "fanout.sh: $*" >&2; exit 1; }

[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || die "ROUNDS must be 1..99"

if [ -z "${BEFORE_HUB:-}" ]; then
    rev=$(git rev-parse --verify --quiet "$BEFORE_REV^{commit}") \
        || die "no commit $BEFORE_REV in this repository"
    src=$ROOT/target/fanout-before/src-${rev:0:12}
    if [ ! -f "$src/Cargo.toml" ]; then
        rm -rf "$src.tmp"
        mkdir -p "$src.tmp"
        git archive "$rev" | tar -x -C "$src.tmp" || die "cannot export $rev"
        mv "$src.tmp" "$src"
    fi
    echo "fanout.sh: building the before hub ($BEFORE_REV) in $src" >&2
    (cd "$src" && CARGO_TARGET_DIR=$ROOT/target/fanout-before/target \
        cargo build --release --example hub >&2) || die "cannot build the before hub"
    BEFORE_HUB=$ROOT/target/fanout-before/target/release/examples/hub
fi
if [ -z "${AFTER_HUB:-}" ]; then
    echo "fanout.sh: building the after hub (this tree)" >&2
    cargo build --release --example hub >&2 || die "cannot build this tree's hub"
    AFTER_HUB=$ROOT/target/release/examples/hub
fi
[ -x "$BEFORE_HUB" ] || die "no before hub at $BEFORE_HUB"
[ -x "$AFTER_HUB" ] || die "no after hub at $AFTER_HUB"

BENCH=$(cargo bench -p pushwire-benches --bench fanout --no-run 2>&1 \
    | sed -n 's/.*Executable .*fanout.rs (\(.*\))$/\1/p' | tail -n 1)
[ -x "$BENCH" ] || die "cannot build or find the fanout bench binary"

PIN_BENCH=()
PIN_HUB=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_BENCH=(taskset -c "$BENCH_CORE")
    PIN_HUB=(--hub-cpu "$HUB_CORE")
else
    echo "fanout.sh: not pinning (no taskset or fewer than 2 cores)" >&2
fi

mkdir -p target/fanout
OUT=target/fanout/last-run.txt
: >"$OUT"
echo "fanout.sh: before=$BEFORE_HUB after=$AFTER_HUB subs=$SUBS webhooks=$WEBHOOKS" \
    "publishes=$PUBLISHES rounds=$ROUNDS hub on core $HUB_CORE, bench on core $BENCH_CORE"

failed=0
run=0
for round in $(seq "$ROUNDS"); do
    for side in before after; do
        if [ $side = before ]; then hub=$BEFORE_HUB; else hub=$AFTER_HUB; fi
        # Each run gets its own ports (one per phase), so no run meets another's leftovers.
        port=$((PORT + run * 8))
        run=$((run + 1))
        echo "fanout.sh: round $round, $side" >&2
        if ! "${PIN_BENCH[@]}" "$BENCH" --label "$side" --hub "$hub" "${PIN_HUB[@]}" \
            --subs "$SUBS" --webhooks "$WEBHOOKS" --publishes "$PUBLISHES" \
            --phases "$PHASES" --port "$port" | tee -a "$OUT"; then
            echo "fanout.sh: the $side run of round $round failed (see its ERROR lines)" >&2
            failed=1
        fi
    done
done

echo
awk '
/^fanout target=/ {
    delete f
    for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    t = f["target"]; tr = f["transport"]
    if (!(tr in seen)) { seen[tr] = 1; order[++ntr] = tr }
    for (m = 1; m <= nm; m++) {
        k = t SUBSEP tr SUBSEP m; v = f[metric[m]] + 0
        sum[k] += v; cnt[k]++
        if (!(k in lo) || v < lo[k]) lo[k] = v
        if (!(k in hi) || v > hi[k]) hi[k] = v
    }
}
function cell(t, tr, m,   k, fmt) {
    k = t SUBSEP tr SUBSEP m
    if (!(k in cnt)) return "-"
    fmt = (metric[m] == "allocs_per_delivery") ? "%.3f" : "%.1f"
    if (cnt[k] == 1) return sprintf(fmt, sum[k])
    return sprintf(fmt " (" fmt "-" fmt ", n=%d)", sum[k] / cnt[k], lo[k], hi[k], cnt[k])
}
function mean(t, tr, m,   k) { k = t SUBSEP tr SUBSEP m; return (k in cnt) ? sum[k] / cnt[k] : -1 }
BEGIN {
    nm = split("ns_per_delivery allocs_per_delivery alloc_bytes_per_delivery cpu_ns_per_delivery", metric, " ")
}
END {
    print "| transport | per delivered event | before | after | after/before |"
    print "|---|---|---|---|---|"
    for (i = 1; i <= ntr; i++) {
        tr = order[i]
        for (m = 1; m <= nm; m++) {
            b = mean("before", tr, m); a = mean("after", tr, m)
            r = (b > 0 && a >= 0) ? sprintf("%.2f", a / b) : "na"
            name = metric[m]; sub(/_per_delivery$/, "", name)
            printf "| %s | %s | %s | %s | %s |\n", tr, name, cell("before", tr, m), cell("after", tr, m), r
        }
    }
}' "$OUT"

exit $failed
