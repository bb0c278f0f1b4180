#!/usr/bin/env bash
# End-to-end test of the hub's page (examples/hub/index.html) in Debian's chromium, headless,
# driven by playwright-core from npm. Installs what it needs idempotently and never downloads
# a browser. Starts its own hub on a free port and stops it on exit.
#
#   bash tests/interop/browser.sh
#
# Artifacts: target/browser/page.png (screenshot; UPDATE_DOCS_SCREENSHOT=1 also copies it to
# docs/page.png, the README's picture), hub logs.
# SKIP_WEBHOOK=1 leaves the webhook panel out: for local runs against a hub without
# webhooks only; CI runs the full check.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=tests/interop/browser

if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
want=$(node -p "require('./$dir/package.json').dependencies['playwright-core']")
have=$(node -p "try { require('./$dir/node_modules/playwright-core/package.json').version } catch { '' }")
if [ "$want" != "$have" ]; then
  (cd "$dir" && npm install --no-audit --no-fund)
fi

cargo build --release --example hub
mkdir -p target/browser
out=target/browser/hub.stdout
err=target/browser/hub.stderr
target/release/examples/hub --addr 127.0.0.1:0 >"$out" 2>"$err" &
hub=$!
trap 'kill "$hub" 2>/dev/null || true; wait "$hub" 2>/dev/null || true' EXIT

url=
for _ in $(seq 100); do
  url=$(sed -n '1s/^pushwire hub listening on //p' "$out")
  [ -n "$url" ] && break
  kill -0 "$hub" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "the hub did not start:"
  cat "$out" "$err"
  echo "browser: 0 passed, 1 failed"
  exit 1
fi
echo "hub at $url"
node "$dir/test.mjs" "$url"
