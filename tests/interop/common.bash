# Shared helpers for tests/interop/*.sh (sourced, never run: .ci/run runs only *.sh).
# Every script works from any cwd; paths are relative to the repo root.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
INTEROP="$ROOT/tests/interop"
VENV="$INTEROP/.venv"
export PYTHONDONTWRITEBYTECODE=1 # keep the tree clean
# One pinned set for every script, so the venv is installed once.
PY_REQUIREMENTS=(websockets==17.4 sseclient-py==1.9.0 urllib3==2.8.0)
# Whatever a script starts: killed by its EXIT trap (see `install_traps`). PIDS holds
# process ids; a negative entry is a process group (`kill -- -PGID`) started with setsid.
PIDS=()
TMPDIRS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -- "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    # bounded: SIGKILL what has not gone after ~2 s
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 -- "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -9 -- "$pid" 2>/dev/null || true
  done
  if [ ${#TMPDIRS[@]} -gt 0 ]; then rm -rf "${TMPDIRS[@]}"; fi
}

# Clean up on every way out: normal exit, error (set -e), Ctrl-C, SIGTERM.
install_traps() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM HUP
}

log() { printf '[%s] %s\n' "${SCRIPT_NAME:-interop}" "$*" >&2; }

# The shared/ directory that sits beside the repo (CI: a copy next to the fresh clone).
shared_dir() {
  local top
  top=$(git -C "$ROOT" rev-parse --show-toplevel 2>/dev/null || echo "$ROOT")
  if [ -d "$top/../shared" ]; then
    (cd "$top/../shared" && pwd)
  elif [ -d /work/shared ]; then
    echo /work/shared
  else
    echo "shared/ not found beside $top" >&2
    return 1
  fi
}

# Create the venv (once) and install the given pip requirements into it (idempotent: a
# stamp file per requirement set skips pip when nothing changed).
ensure_venv() {
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
      # Debian's python3 lacks ensurepip until python3-venv (python3.X-venv) is installed.
      log "python3 -m venv failed; installing python3-venv"
      rm -rf "$VENV"
      local sudo=""
      [ "$(id -u)" -eq 0 ] || sudo="sudo"
      local ver
      ver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
      $sudo apt-get update -qq >/dev/null
      $sudo apt-get install -y -qq python3-venv >/dev/null 2>&1 ||
        $sudo apt-get install -y -qq "python${ver}-venv" >/dev/null
      python3 -m venv "$VENV"
    fi
  fi
  local stamp="$VENV/.req-$(printf '%s\n' "$@" | sha1sum | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    log "pip install $*"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" >&2
    touch "$stamp"
  fi
}

# cargo build --release --example NAME (quietly unless it fails). With
# PUSHWIRE_PREBUILT=1 (CI runs some scripts in the background while cargo builds other
# things, and cargo's lock on the target dir would make them wait) the binary must exist.
build_example() {
  local target=${CARGO_TARGET_DIR:-target}
  case $target in /*) ;; *) target="$ROOT/$target" ;; esac
  if [ "${PUSHWIRE_PREBUILT:-0}" = 1 ] && [ -x "$target/release/examples/$1" ]; then
    return 0
  fi
  log "cargo build --release --example $1"
  (cd "$ROOT" && cargo build --release --quiet --example "$1")
}

# start_example NAME ARGS...: runs target/release/examples/NAME --addr 127.0.0.1:0 ARGS,
# waits (at most 20 s) for its first stdout line and sets ADDR to its HOST:PORT.
start_example() {
  local name=$1
  shift
  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/pushwire-interop.XXXXXX")
  TMPDIRS+=("$dir")
  local target=${CARGO_TARGET_DIR:-target}
  case $target in /*) ;; *) target="$ROOT/$target" ;; esac # cargo resolves it from $ROOT
  "$target/release/examples/$name" --addr 127.0.0.1:0 "$@" >"$dir/stdout" 2>"$dir/stderr" &
  PIDS+=($!)
  local pid=$!
  local line=""
  for _ in $(seq 200); do
    line=$(head -n1 "$dir/stdout" 2>/dev/null || true)
    case $line in *"://"*) break ;; esac
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited early: $(cat "$dir/stderr")"
      return 1
    fi
    sleep 0.1
  done
  case $line in
    *"://"*) ;;
    *) log "$name printed no address within 20 s"; return 1 ;;
  esac
  ADDR=${line##*://}
  ADDR=${ADDR%%/*}
  SERVER_LOG="$dir/stderr"
  log "$name listening on $ADDR (pid $pid)"
}

# Checks with a pass/fail count and the closing summary line.
PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); printf 'ok   %s\n' "$1"; }
fail() {
  FAILED=$((FAILED + 1))
  printf 'FAIL %s\n' "$1"
  if [ $# -ge 3 ]; then
    printf '     expected: %q\n     got:      %q\n' "$2" "$3"
  fi
}
# check NAME EXPECTED ACTUAL: exact comparison.
check() {
  if [ "$2" == "$3" ]; then pass "$1"; else fail "$1" "$2" "$3"; fi
}
summary() {
  printf '%s: %d passed, %d failed\n' "$1" "$PASSED" "$FAILED"
  [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
}
