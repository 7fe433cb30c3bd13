#!/usr/bin/env bash
# The main job on its embedded default: start the demo web shop (examples/shop.py), attach to it
# with no restart, and show what Peeka sees. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export COLUMNS=${COLUMNS:-120}
PEEKA=".venv/bin/peeka"
TARGET_PY=${PEEKA_DEMO_PYTHON:-$(command -v python3.12 || command -v python3)}
[ -x "$(cat .peeka/python314 2>/dev/null)" ] && [ -z "${PEEKA_DEMO_PYTHON:-}" ] && TARGET_PY=$(cat .peeka/python314)

out=$(mktemp)
"$TARGET_PY" examples/shop.py >"$out" 2>&1 &
SHOP=$!
trap 'kill $SHOP 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q ready "$out" && break; sleep 0.05; done
echo "== demo shop running as PID $SHOP under $("$TARGET_PY" -V)"
step() { echo; echo "\$ peeka $*"; "$PEEKA" "$@"; }
step ps
step attach "$SHOP"
step thread "$SHOP"
step sm "$SHOP" '__main__.handle_*' -d
step inspect "$SHOP" '__main__.INVENTORY[3]'
step watch "$SHOP" __main__.handle_item -n 3
step watch "$SHOP" __main__.Cart.add -e -n 1 'exception'
step trace "$SHOP" __main__.handle_item -n 1
step stack "$SHOP" __main__.lookup_item -n 1
step monitor "$SHOP" '__main__.handle_*' -c 2 -n 1
step detach "$SHOP"
