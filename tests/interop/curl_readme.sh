#!/usr/bin/env bash
# The curl commands README.md shows, run against a fresh hub, with their outputs checked
# exactly: every `curl ...` line inside a ``` block that is followed by `# OUTPUT` lines
# (127.0.0.1:8080 replaced by the hub's address). Event ids are the one thing that differs
# from run to run (a topic's first id is the hub's clock in microseconds), so the README
# shows them as README_ID + k and this run's first id is learned from the first output that
# holds one: README_ID + k then stands for FIRST_ID + k in every command and output, which
# must match exactly as before, and FIRST_ID must be the clock in microseconds. Then a long
# poll, as the hub's docs show it, parked and released by a publish from another curl, and
# one that times out.
set -euo pipefail
SCRIPT_NAME=curl-readme
source "$(dirname "$0")/common.bash"
install_traps

build_example hub
start_example hub
BASE="http://$ADDR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pushwire-curl.XXXXXX")
TMPDIRS+=("$WORK")

# --- the README's commands, in the order it shows them
CMDS=()
OUTS=()
in_block=0
cmd=""
out=""
flush() {
  if [ -n "$cmd" ] && [ -n "$out" ]; then
    CMDS+=("$cmd")
    OUTS+=("$out")
  fi
  cmd=""
  out=""
}
while IFS= read -r line; do
  case $line in
    '```'*)
      flush
      in_block=$((1 - in_block))
      continue
      ;;
  esac
  [ "$in_block" -eq 1 ] || continue
  case $line in
    'curl '*' -N '*) flush ;; # a stream never ends: sse_clients.sh reads those
    'curl '*) flush; cmd=$line ;;
    '# '*) [ -n "$cmd" ] && out+="${out:+$'\n'}${line#\# }" ;;
    *) flush ;;
  esac
done <"$ROOT/README.md"
flush

# The first event id the README's examples show: README_ID + k (|k| below a million) in the
# README stands for FIRST_ID + k in this run.
README_ID=1764620000123456
FIRST_ID=""
# ids_py rewrite FIRST_ID TEXT: TEXT with every README id README_ID + k rewritten as
# FIRST_ID + k (unchanged while FIRST_ID is unknown).
# ids_py learn "" EXPECTED GOT: the FIRST_ID that makes EXPECTED match GOT exactly, or
# nothing when none does (then the check fails and shows both).
ids_py() {
  python3 -c '
import re, sys
readme_id, mode, first, text = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ID = re.compile(r"(?<![0-9])[0-9]{16}(?![0-9])")
def is_readme_id(m):
    return abs(int(m.group()) - readme_id) < 1_000_000
if mode == "rewrite":
    if first:
        text = ID.sub(lambda m: str(int(first) + int(m.group()) - readme_id)
                      if is_readme_id(m) else m.group(), text)
    sys.stdout.write(text)
else:
    pattern, ks, pos = "", [], 0
    for m in ID.finditer(text):
        if is_readme_id(m):
            pattern += re.escape(text[pos:m.start()]) + "([0-9]+)"
            ks.append(int(m.group()) - readme_id)
            pos = m.end()
    pattern += re.escape(text[pos:])
    found = re.fullmatch(pattern, sys.argv[5], re.S) if ks else None
    firsts = {int(v) - k for v, k in zip(found.groups(), ks)} if found else set()
    if len(firsts) == 1:
        sys.stdout.write(str(firsts.pop()))
' "$README_ID" "$@"
}

learned_at=""
for i in "${!CMDS[@]}"; do
  c=$(ids_py rewrite "$FIRST_ID" "${CMDS[$i]//127.0.0.1:8080/$ADDR}")
  # every command is bounded in time
  got=$(bash -c "curl --max-time 10 -sS ${c#curl }" 2>&1 || true)
  if [ -z "$FIRST_ID" ]; then
    FIRST_ID=$(ids_py learn "" "${OUTS[$i]}" "$got")
    [ -n "$FIRST_ID" ] && learned_at=$(($(date +%s%N) / 1000))
  fi
  check "README: ${CMDS[$i]}" "$(ids_py rewrite "$FIRST_ID" "${OUTS[$i]}")" "$got"
done
# The README shows realistic ids, and this run's first one is the hub's clock in
# microseconds (the hub runs on this machine: up to a minute before this script read it).
if grep -qF "\"id\":$README_ID" "$ROOT/README.md"; then
  pass "README shows event ids as microsecond timestamps ($README_ID)"
else
  fail "README shows no event id $README_ID in its examples"
fi
if [ -n "$FIRST_ID" ] && [ "$FIRST_ID" -le "$learned_at" ] &&
  [ "$FIRST_ID" -gt $((learned_at - 60000000)) ]; then
  pass "the first id of topic demo ($FIRST_ID) is the Unix time in microseconds"
else
  fail "the first id of topic demo is the Unix time in microseconds" \
    "at most ${learned_at:-now}, within a minute" "${FIRST_ID:-no id learned}"
fi
# The README must go on showing these four (publish, read back, a gap, health).
for want in '/topics/demo?event=' '/topics/demo/events?since=0' '/topics/demo/events?since=41' '/healthz'; do
  found=0
  for c in "${CMDS[@]}"; do
    case $c in *"$want"*) found=1 ;; esac
  done
  if [ "$found" -eq 1 ]; then pass "README shows a checked curl command for $want"; else
    fail "README shows no curl command (with its output) for $want"; fi
done

# --- long poll: parks, is released by a publish from another curl
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
stat_parked() { curl -s --max-time 5 "$BASE/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["connections"]["parked"])'; }
LAST=$(curl -s --max-time 5 "$BASE/topics/demo/events?since=0" | json_field next)
NEXT=$((LAST + 1))

start=$EPOCHREALTIME
curl -sS --max-time 10 "$BASE/topics/demo/poll?since=$LAST&timeout=5" >"$WORK/poll.out" 2>&1 &
poll_pid=$!
PIDS+=("$poll_pid")
parked=0
for _ in $(seq 100); do # at most 5 s
  [ "$(stat_parked)" = 1 ] && { parked=1; break; }
  sleep 0.05
done
check "long poll since=$LAST parks (/stats parked = 1)" 1 "$parked"
check "the poll has not answered before the publish" "" "$(cat "$WORK/poll.out")"
published=$EPOCHREALTIME
check "publish from another curl" "{\"topic\":\"demo\",\"id\":$NEXT}" \
  "$(curl -sS --max-time 5 -d 'world' "$BASE/topics/demo")"
wait "$poll_pid" || true
released=$EPOCHREALTIME
check "the parked poll answers with the new event" \
  "{\"events\":[{\"id\":$NEXT,\"event\":null,\"data\":\"world\"}],\"next\":$NEXT,\"gap\":false}" \
  "$(cat "$WORK/poll.out")"
ms=$(awk -v a="$published" -v b="$released" 'BEGIN { printf "%d", (b - a) * 1000 }')
total=$(awk -v a="$start" -v b="$released" 'BEGIN { printf "%d", (b - a) * 1000 }')
if [ "$ms" -lt 1000 ] && [ "$total" -lt 5000 ]; then
  pass "released ${ms} ms after the publish (before its 5 s timeout)"
else
  fail "released ${ms} ms after the publish, ${total} ms after it started"
fi
check "/stats parked back to 0" 0 "$(stat_parked)"

start=$EPOCHREALTIME
check "a poll with nothing new times out with an empty list" \
  "{\"events\":[],\"next\":$NEXT,\"gap\":false}" \
  "$(curl -sS --max-time 10 "$BASE/topics/demo/poll?since=$NEXT&timeout=1")"
ms=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')
if [ "$ms" -ge 900 ] && [ "$ms" -lt 3000 ]; then pass "  after its 1 s timeout (${ms} ms)"; else
  fail "  timed out after ${ms} ms, not about 1 s"; fi
check "a poll behind the last id answers at once" \
  "{\"events\":[{\"id\":$NEXT,\"event\":null,\"data\":\"world\"}],\"next\":$NEXT,\"gap\":false}" \
  "$(curl -sS --max-time 2 "$BASE/topics/demo/poll?since=$LAST&timeout=30")"
all=$(curl -sS --max-time 5 "$BASE/topics/demo/events?since=0")
check "a poll with a cursor from another id range (41) answers at once: everything, gap" \
  "${all/%\"gap\":false\}/\"gap\":true\}}" \
  "$(curl -sS --max-time 2 "$BASE/topics/demo/poll?since=41&timeout=30")"
check "a poll from just before the first id ($((FIRST_ID - 1))): everything, no gap" "$all" \
  "$(curl -sS --max-time 2 "$BASE/topics/demo/poll?since=$((FIRST_ID - 1))&timeout=30")"

if [ "$FAILED" -ne 0 ]; then
  echo "hub stderr (tail):"
  tail -n 20 "$SERVER_LOG"
fi
summary "curl readme"
