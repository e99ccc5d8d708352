#!/usr/bin/env bash
# File tail to forward throughput: the figure Vector publishes for "file to TCP" (Vector
# 76.7 MiB/s, Fluent Bit 35 MiB/s, Fluentd 26.1 MiB/s on 2 vCPU).
#
# Writes MB megabytes (MiB) of access-log lines (tests/data/nginx/access.log, 211 bytes a line
# on average, each made unique by a sequence number) into FILES files, then starts `flumen
# serve` with a tail source on them (read from the beginning), the durable log with the chosen
# persistence, and a forward output with acks to a `flumen bench --listen` receiver. Reports the
# MiB/s of file bytes from flumen's start until its output has delivered the last line, and
# what flumen's own process spent (CPU from /proc/PID/stat, peak RSS).
#
#   MB=1000 FILES=4 PERSISTENCE=interval bash scripts/bench-tail.sh
#   PROFILE=1 MB=500 bash scripts/bench-tail.sh      # also: where flumen's CPU goes (perf)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MB=${MB:-1000}
FILES=${FILES:-4}
PERSISTENCE=${PERSISTENCE:-interval}   # always | interval | os
API_PORT=${API_PORT:-18297}
RECEIVER_PORT=${RECEIVER_PORT:-24297}
LINES_FROM=${LINES_FROM:-tests/data/nginx/access.log}

source scripts/bench-common.sh

# The files, written before flumen starts (and so in the page cache, as a live log is).
mkdir -p "$work/logs"
per_file=$((MB * 1048576 / FILES))
for f in $(seq 1 "$FILES"); do
  awk -v limit="$per_file" -v file="$f" '
    { lines[n++] = $0 }
    END {
      size = 0; i = 0
      while (size < limit) {
        line = lines[i % n] " seq=" file "-" i
        print line
        size += length(line) + 1
        i++
      }
    }' "$LINES_FROM" >"$work/logs/app-$f.log"
done
read -r lines bytes < <(cat "$work"/logs/*.log | wc -lc)

"$bin" bench --listen "127.0.0.1:$RECEIVER_PORT" --until-idle 0 --json >"$work/receiver.json" \
  2>"$work/receiver.log" &
receiver=$!
background_process "$receiver"

cat >"$work/bench.toml" <<TOML
data_dir = "$work/data"
[log]
persistence = "$PERSISTENCE"
fsync_interval = "100ms"
max_size = "16GiB"
[api]
address = "127.0.0.1:$API_PORT"
[sources.files]
type = "tail"
paths = ["$work/logs/*.log"]
tag = "bench.tail"
[outputs.out]
type = "forward"
servers = [{ address = "127.0.0.1:$RECEIVER_PORT" }]
require_ack = true
batch = { max_events = 20000, max_bytes = "8MiB" }
[[routes]]
match = ["**"]
outputs = ["out"]
TOML

t0=$(date +%s.%N)
serve "$work/bench.toml" "$API_PORT"
start_profile
# Done when the output has delivered every line out of the durable log.
wait_delivered "$lines" 6000
stop_clock
events=$(delivered)

# flumen started after t0: its CPU counts from 0.
awk -v e="$events" -v l="$lines" -v b="$bytes" -v t0="$t0" -v t1="$t1" -v p="$PERSISTENCE" \
    -v f="$FILES" -v spent="$(spent 0 "$events" line)" 'BEGIN {
  s = t1 - t0
  printf "tail->forward files=%d persistence=%s lines=%d delivered=%d file_bytes=%.0fMiB wall=%.2fs MiB/s=%.1f lines/s=%.0f %s\n",
    f, p, l, e, b / 1048576, s, b / 1048576 / s, e / s, spent
}'
report_profile
stop_serve
kill -INT "$receiver"
wait "$receiver" || true
echo "receiver: $(head -c 400 "$work/receiver.json")"
