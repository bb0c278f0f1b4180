#!/usr/bin/env bash
# The curl commands README.md shows, run against a fresh hub, with their outputs checked
# exactly: every `curl ...` line inside a ``` block that is followed by `# OUTPUT` lines
# (127.0.0.1:8080 replaced by the hub's address). Then a long poll, as the hub's docs show
# it, parked and released by a publish from another curl, and one that times out.
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

for i in "${!CMDS[@]}"; do
  c=${CMDS[$i]//127.0.0.1:8080/$ADDR}
  # every command is bounded in time
  got=$(bash -c "curl --max-time 10 -sS ${c#curl }" 2>&1 || true)
  check "README: ${CMDS[$i]}" "${OUTS[$i]}" "$got"
done
# The README must go on showing these three (publish, read back, health).
for want in '/topics/demo?event=' '/topics/demo/events?since=0' '/healthz'; do
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

if [ "$FAILED" -ne 0 ]; then
  echo "hub stderr (tail):"
  tail -n 20 "$SERVER_LOG"
fi
summary "curl readme"
