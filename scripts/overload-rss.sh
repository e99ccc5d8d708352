#!/usr/bin/env bash
# Memory under sustained overload: senders push flat out (acks on) into `flumen serve` whose
# forward output's destination is away for the first third of the run and then takes events
# more slowly than they come (a receiver paused for 2 s out of every 3), so the durable log
# fills and stays full (when_full = "block"). Samples flumen's RSS every second and reports the
# peak, plus the receiver's lost/duplicated counts at the end.
#
#   DURATION=180 bash scripts/overload-rss.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${DURATION:-180}
MAX_SIZE=${MAX_SIZE:-256MiB}
CONNECTIONS=${CONNECTIONS:-4}
FORWARD_PORT=${FORWARD_PORT:-24297}
API_PORT=${API_PORT:-18297}
RECEIVER_PORT=${RECEIVER_PORT:-24296}

source scripts/bench-common.sh

cat > "$work/overload.toml" <<TOML
data_dir = "$work/data"
[log]
max_size = "$MAX_SIZE"
segment_size = "16MiB"
when_full = "block"
[api]
address = "127.0.0.1:$API_PORT"
[sources.fwd]
type = "forward"
address = "127.0.0.1:$FORWARD_PORT"
[outputs.relay]
type = "forward"
servers = [{ address = "127.0.0.1:$RECEIVER_PORT" }]
require_ack = true
recover_wait = "200ms"
retry = { initial_backoff = "100ms", max_backoff = "1s" }
[[routes]]
match = ["**"]
outputs = ["relay"]
TOML

serve "$work/overload.toml" "$API_PORT"

"$bin" bench --to "127.0.0.1:$FORWARD_PORT" --ack --connections "$CONNECTIONS" \
  --duration "${DURATION}s" --give-up-after "${DURATION}s" --json >"$work/sender.json" &
sender=$!
background_process "$sender"

peak=0
for t in $(seq "$DURATION"); do
  if [ "$t" -eq $((DURATION / 3)) ]; then
    "$bin" bench --listen "127.0.0.1:$RECEIVER_PORT" --until-idle 10s --json >"$work/receiver.json" &
    receiver=$!
    background_process "$receiver"
  fi
  # A slow destination: paused two seconds out of three.
  if [ -n "${receiver:-}" ]; then
    if [ $((t % 3)) -eq 0 ]; then kill -CONT "$receiver"; else kill -STOP "$receiver"; fi
  fi
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  [ "$rss" -gt "$peak" ] && peak=$rss
  sleep 1
done
kill -CONT "$receiver"
wait "$sender" || true
wait "$receiver" || true
hwm=$(peak_rss_kib)
echo "duration=${DURATION}s max_size=$MAX_SIZE peak_rss_sampled=$((peak / 1024))MB vmhwm=$((hwm / 1024))MB"
python3 - "$work/sender.json" "$work/receiver.json" <<'PY'
import json, sys
sender = json.load(open(sys.argv[1]))
receiver = json.load(open(sys.argv[2]))
run = {r["run"]: r for r in receiver["runs"]}[sender["run"]]
print(f"sent={sender['events']} acked={sender.get('acked', sender['events'])} "
      f"unique={run['unique']} duplicated={run['duplicated']} missing={run['missing']}")
PY
