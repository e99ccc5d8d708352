#!/usr/bin/env bash
# End-to-end throughput benchmark: `flumen bench` drives PackedForward traffic (records of
# ~200 bytes, chunks of 1,000) into `flumen serve` (Forward in, the durable log with the chosen
# persistence, then a null output, or a forward output with acks to a `flumen bench --listen`
# receiver that counts what arrives), and this script reports what flumen's own process spent:
# events/s, MB/s, CPU µs per event (from /proc/PID/stat, so the load generator sharing the cores
# is not counted) and peak RSS (VmHWM).
#
#   EVENTS=10000000 PERSISTENCE=interval CONNECTIONS=2 OUTPUT=null bash scripts/bench-e2e.sh
#   EVENTS=10000000 PERSISTENCE=interval OUTPUT=forward bash scripts/bench-e2e.sh
#   PROFILE=1 EVENTS=5000000 bash scripts/bench-e2e.sh   # also: where flumen's CPU goes (perf,
#                                                         # from Debian's linux-perf)
#   LOG_LINES=tests/data/nginx/common.log FILTERS=scripts/bench-filters/apache-regex.toml \
#     bash scripts/bench-e2e.sh     # records carry those lines in `log`, parsed by the filters;
#                                   # also reports MiB/s of log lines (the figure Vector and
#                                   # Fluent Bit publish)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

EVENTS=${EVENTS:-10000000}
PERSISTENCE=${PERSISTENCE:-interval}   # always | interval | os
CONNECTIONS=${CONNECTIONS:-2}
RECORD_SIZE=${RECORD_SIZE:-200}
BATCH=${BATCH:-1000}
ACK=${ACK:-}                           # set to 1 for --ack
OUTPUT=${OUTPUT:-null}                 # null | forward (acks end to end)
FORWARD_PORT=${FORWARD_PORT:-24299}
API_PORT=${API_PORT:-18299}
RECEIVER_PORT=${RECEIVER_PORT:-24298}
LOG_LINES=${LOG_LINES:-}                # a file whose lines become the records' `log` field
FILTERS=${FILTERS:-}                    # a TOML file of [[filters]] tables

source scripts/bench-common.sh

if [ "$OUTPUT" = forward ]; then
  "$bin" bench --listen "127.0.0.1:$RECEIVER_PORT" --until-idle 0 --json >"$work/receiver.json" &
  receiver=$!
  background_process "$receiver"
  output_config="type = \"forward\"
servers = [{ address = \"127.0.0.1:$RECEIVER_PORT\" }]
require_ack = true
batch = { max_events = 20000, max_bytes = \"8MiB\" }"
else
  output_config='type = "null"'
fi

cat > "$work/bench.toml" <<TOML
data_dir = "$work/data"
[log]
persistence = "$PERSISTENCE"
fsync_interval = "100ms"
max_size = "8GiB"
[api]
address = "127.0.0.1:$API_PORT"
[sources.fwd]
type = "forward"
address = "127.0.0.1:$FORWARD_PORT"
[outputs.out]
$output_config
[[routes]]
match = ["**"]
outputs = ["out"]
TOML
if [ -n "$FILTERS" ]; then cat "$FILTERS" >>"$work/bench.toml"; fi

serve "$work/bench.toml" "$API_PORT"
if [ -n "${PROFILE:-}" ]; then
  perf record -F 2000 -g -p "$pid" -o "$work/perf.data" 2>/dev/null &
  profiler=$!
  sleep 0.3
fi

metric() { curl -s "http://127.0.0.1:$API_PORT/metrics" | awk -v m="$1" '$1 ~ "^"m {print $2; exit}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
ticks_per_s=$(getconf CLK_TCK)

cpu0=$(cpu_ticks)
t0=$(date +%s.%N)
"$bin" bench --to "127.0.0.1:$FORWARD_PORT" --events "$EVENTS" --batch "$BATCH" \
  --record-size "$RECORD_SIZE" --connections "$CONNECTIONS" ${ACK:+--ack} \
  ${LOG_LINES:+--log-lines "$LOG_LINES"}
# Done when the output has delivered every event out of the durable log.
for _ in $(seq 1200); do
  out=$(metric 'flumen_output_events_total\{output="out"\}')
  [ "${out%.*}" -ge "$EVENTS" ] 2>/dev/null && break
  sleep 0.05
done
t1=$(date +%s.%N)
cpu1=$(cpu_ticks)
bytes=$(metric 'flumen_source_bytes_total')
hwm_kb=$(peak_rss_kib)
events=$(metric 'flumen_output_events_total\{output="out"\}')

# Mean length of a log line (with its newline, as in a file), for the lines' MiB/s.
line_bytes=0
if [ -n "$LOG_LINES" ]; then
  line_bytes=$(awk 'length($0) > 0 { n++; b += length($0) + 1 } END { print b / n }' "$LOG_LINES")
fi

awk -v e="$events" -v b="$bytes" -v t0="$t0" -v t1="$t1" -v c0="$cpu0" -v c1="$cpu1" \
    -v hz="$ticks_per_s" -v hwm="$hwm_kb" -v p="$PERSISTENCE" -v o="$OUTPUT" -v lb="$line_bytes" 'BEGIN {
  s = t1 - t0; cpu = (c1 - c0) / hz;
  printf "output=%s persistence=%s events=%d wall=%.2fs events/s=%.0f MB/s=%.1f cpu=%.2fs cpu/event=%.3fus peak_rss=%.1fMB",
    o, p, e, s, e / s, b / 1e6 / s, cpu, cpu / e * 1e6, hwm / 1024
  if (lb > 0) printf " log_lines_MiB/s=%.1f", e * lb / 1048576 / s
  printf "\n"
}'
if [ -n "${PROFILE:-}" ]; then
  kill -INT "$profiler"
  wait "$profiler" || true
  perf report -i "$work/perf.data" --no-children --sort symbol 2>/dev/null | grep -E '^ +[0-9]' | head -15
fi
kill -TERM "$pid"
wait "$pid" || true
if [ -n "${receiver:-}" ]; then
  kill -INT "$receiver"
  wait "$receiver" || true
  echo "receiver: $(cat "$work/receiver.json")"
fi
