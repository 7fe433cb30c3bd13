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
# The default port, unless something here holds it already (then any free one, said on the command line).
metrics=$(.venv/bin/python -c 'import socket
s = socket.socket()
try:
    s.bind(("127.0.0.1", 9464)); print("127.0.0.1:9464")
except OSError:
    s.bind(("127.0.0.1", 0)); print("127.0.0.1:%d" % s.getsockname()[1])')
port_flag=""
[ "$metrics" = "127.0.0.1:9464" ] || port_flag="--metrics-address $metrics"
echo
echo "\$ peeka export --pid $SHOP --watch '__main__.handle_*' --trace __main__.handle_item --interval 2 $port_flag   # in $spans_dir"
(cd "$spans_dir" && exec "$OLDPWD/$PEEKA" export --pid "$SHOP" --watch '__main__.handle_*' \
  --trace __main__.handle_item --interval 2 --metrics-address "$metrics") &
EXPORT=$!
trap 'kill $EXPORT $SHOP 2>/dev/null || true; rm -f "$out"' EXIT
# Until the exporter has sent spans (its start-up and attach take seconds on a busy machine), then one
# more interval: /healthz says how far it got.
.venv/bin/python - "$metrics" <<'PY'
import json, sys, time, urllib.request
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"http://{sys.argv[1]}/healthz", timeout=5) as resp:
            if any(t.get("spans_exported") for t in json.load(resp)["targets"]):
                time.sleep(2)
                break
    except (OSError, ValueError, KeyError):
        pass
    time.sleep(0.5)
else:
    print("(the exporter exported nothing in 120 s: its console lines above say why)")
PY
echo "\$ curl -s http://$metrics/metrics | grep -E '^peeka_(function_calls_total|target_up)'"
.venv/bin/python -c 'import sys, urllib.request
try:
    print(urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode())
except OSError as exc:
    print(f"/metrics did not answer: {exc}", file=sys.stderr)' "$metrics" \
  | grep -E '^peeka_(function_calls_total|target_up)' || true
kill -TERM "$EXPORT"
wait "$EXPORT" || true
.venv/bin/python - "$spans_dir/peeka-spans.jsonl" <<'PY'
import json, sys
try:
    lines = open(sys.argv[1]).readlines()
except OSError as exc:
    sys.exit(f"no spans file: {exc}")
spans = [s for line in lines for rs in json.loads(line)["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
names = sorted({s["name"] for s in spans})
print(f"{len(spans)} spans in {sys.argv[1]}: {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}")
PY
