#!/usr/bin/env bash
# What deployments cost ingest: acknowledged Forward events/s into `flumen serve` on the
# embedded default (store on), with the deployment catalogue on (SQLite, one running
# deployment, so the counter reads every log record) and off (`[deployments] database =
# "off"`), alternated ROUNDS times in one sitting. flumen's own CPU per event is read from /proc.
#
#   bash scripts/bench-deployments.sh                     # tracer records (no deployment_id)
#   CORPUS=day EVENTS=2000000 bash scripts/bench-deployments.sh
#                                   # the production-like corpus: every event names a
#                                   # deployment (none of them the registered one)
#   COUNTED=1 bash scripts/bench-deployments.sh           # an enrich filter (in both runs)
#                                   # sets deployment_id = "bench" on every tracer record: each
#                                   # one is counted
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

EVENTS=${EVENTS:-5000000}
ROUNDS=${ROUNDS:-4}
CORPUS=${CORPUS:-}
COUNTED=${COUNTED:-}
API_PORT=${API_PORT:-18480}
FORWARD_PORT=${FORWARD_PORT:-18424}

source scripts/bench-common.sh

config() {
  cat <<EOF
data_dir = "$work/data"
[store]
[api]
address = "127.0.0.1:$API_PORT"
[sources.forward]
type = "forward"
address = "127.0.0.1:$FORWARD_PORT"
[deployments]
database = "$1"
EOF
  if [ -n "$COUNTED" ]; then
    # Every event names the registered deployment.
    printf '[[filters]]\ntype = "enrich"\nset = { deployment_id = "bench" }\n'
  fi
}

sender=(--to "127.0.0.1:$FORWARD_PORT" --events "$EVENTS" --batch 1000 --connections 2 --ack --json)
if [ -n "$CORPUS" ]; then sender+=(--corpus "$CORPUS"); fi

one_run() {
  local label=$1 database=$2
  rm -rf "$work/data"
  config "$database" >"$work/config.toml"
  serve "$work/config.toml" "$API_PORT"
  if [ "$database" != off ]; then
    curl -sf -XPOST "http://127.0.0.1:$API_PORT/api/v1/deployments" \
      -H 'content-type: application/json' -d '{"id":"bench"}' >/dev/null
  fi
  local cpu0 out
  cpu0=$(cpu_ticks)
  out=$("$bin" bench "${sender[@]}" 2>/dev/null | tail -1)
  local cpu1 ticks
  cpu1=$(cpu_ticks)
  ticks=$(getconf CLK_TCK)
  python3 - "$label" "$out" "$cpu0" "$cpu1" "$ticks" "$EVENTS" <<'PY'
import json, sys
label, out, cpu0, cpu1, ticks, events = sys.argv[1:]
d = json.loads(out)
cpu_us = (int(cpu1) - int(cpu0)) / int(ticks) * 1e6 / int(events)
print(f"{label:4} acked/s={d['events_per_sec']:>10,.0f}  flumen cpu/event={cpu_us:.2f}us")
PY
  curl -s "http://127.0.0.1:$API_PORT/api/v1/deployments/bench" 2>/dev/null \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print("     counted towards bench:", d["events"]["total"])' \
    2>/dev/null || true
  stop_serve
}

# Alternated, each first in every other round: a run pays for the writeback of the one before.
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then
    one_run on sqlite
    one_run off off
  else
    one_run off off
    one_run on sqlite
  fi
done
