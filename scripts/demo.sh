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
step monitor "$SHOP" '__main__.handle_*' --cycle 2 -n 1
step top "$SHOP" -i 2 -n 1
step memory "$SHOP"
step detach "$SHOP"

# -- The sidecar on its embedded default (exporter block; keep it last): no backend configured, so
# spans go to ./peeka-spans.jsonl (OTLP/JSON lines) and /metrics serves on 127.0.0.1:9464.
spans_dir=$(mktemp -d)
echo
echo "\$ peeka export --pid $SHOP --watch '__main__.handle_*' --trace __main__.handle_item --interval 2   # 6 s, in $spans_dir"
(cd "$spans_dir" && exec "$OLDPWD/$PEEKA" export --pid "$SHOP" --watch '__main__.handle_*' \
  --trace __main__.handle_item --interval 2) &
EXPORT=$!
trap 'kill $EXPORT $SHOP 2>/dev/null || true; rm -f "$out"' EXIT
sleep 6
echo "\$ curl -s http://127.0.0.1:9464/metrics | grep -E '^peeka_(function_calls_total|target_up)'"
.venv/bin/python -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=5).read().decode())' \
  | grep -E '^peeka_(function_calls_total|target_up)' || true
kill -TERM "$EXPORT"
wait "$EXPORT" || true
.venv/bin/python - "$spans_dir/peeka-spans.jsonl" <<'PY'
import json, sys
spans = [s for line in open(sys.argv[1]) for rs in json.loads(line)["resourceSpans"]
         for ss in rs["scopeSpans"] for s in ss["spans"]]
names = sorted({s["name"] for s in spans})
print(f"{len(spans)} spans in {sys.argv[1]}: {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}")
PY
