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
#   EVENTS=10000000 OUTPUT=forward OUTPUT_IN_FLIGHT=4 bash scripts/bench-e2e.sh  # 4 deliveries
#                                   # in flight in the forward output
#   EVENTS=2000000 OUTPUT=loki bash scripts/bench-e2e.sh   # the loki output, pushing to a
#                                   # second flumen's Loki push route (snappy protobuf; labels
#                                   # container_name and source, container_id as structured
#                                   # metadata, `log` as the line; LOKI_COMPRESSION=gzip for JSON)
#   EVENTS=2000000 OUTPUT=s3 bash scripts/bench-e2e.sh     # the s3 output, uploading to
#                                   # s3s-fs (scripts/setup.sh builds it into target/tools);
#                                   # S3_COMPRESSION=zstd|none (default gzip); also prints the
#                                   # raw MB/s per core of flumen's CPU and the bucket's size
#   FLUMEN_BIN=/path/to/flumen ... bash scripts/bench-e2e.sh   # a binary built elsewhere
#   PROFILE=1 EVENTS=5000000 bash scripts/bench-e2e.sh   # also: where flumen's CPU goes (perf,
#                                                         # from Debian's linux-perf)
#   PROFILE=stat CONNECTIONS=1 EVENTS=5000000 bash scripts/bench-e2e.sh   # context switches,
#                                   # CPU, system calls (perf stat)
#   PROFILE=strace CONNECTIONS=1 ACK=1 IN_FLIGHT=4 EVENTS=1000000 bash scripts/bench-e2e.sh
#                                   # how many fdatasyncs, and how long (strace)
#   ACK=1 IN_FLIGHT=4 CONNECTIONS=1 bash scripts/bench-e2e.sh   # a sender that waits for acks
#                                   # with 4 chunks in flight (Fluent Bit, Fluentd)
#   ACK=1 MODE=message CONNECTIONS=1 EVENTS=20000 bash scripts/bench-e2e.sh
#                                   # one event per chunk, each acknowledged before the next
#                                   # (the Docker driver with fluentd-request-ack): lines/s
#   SERVER_BIN=/path/to/old/flumen bash scripts/bench-e2e.sh   # serve with another build
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
IN_FLIGHT=${IN_FLIGHT:-1}              # with ACK=1: chunks written before waiting for an ack
MODE=${MODE:-packed}                   # packed | compressed | message | forward
OUTPUT=${OUTPUT:-null}                 # null | forward (acks end to end) | loki | s3
LOKI_COMPRESSION=${LOKI_COMPRESSION:-snappy}
S3_COMPRESSION=${S3_COMPRESSION:-gzip}
OUTPUT_IN_FLIGHT=${OUTPUT_IN_FLIGHT:-} # forward: batch.max_in_flight (unset: the default)
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
batch = { max_events = 20000, max_bytes = \"8MiB\"${OUTPUT_IN_FLIGHT:+, max_in_flight = $OUTPUT_IN_FLIGHT} }"
elif [ "$OUTPUT" = loki ]; then
  # The receiver: another flumen, whose API port takes Loki pushes, discarding what it gets.
  cat > "$work/receiver.toml" <<TOML
data_dir = "$work/receiver-data"
[api]
address = "127.0.0.1:$RECEIVER_PORT"
[outputs.discard]
type = "null"
[[routes]]
match = ["**"]
outputs = ["discard"]
TOML
  "$bin" serve --config "$work/receiver.toml" 2>"$work/receiver.log" &
  receiver=$!
  background_process "$receiver"
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$RECEIVER_PORT/readyz" >/dev/null && break
    sleep 0.1
  done
  output_config="type = \"loki\"
url = \"http://127.0.0.1:$RECEIVER_PORT\"
labels = [\"container_name\", \"source\"]
structured_metadata = [\"container_id\"]
line_field = [\"log\"]
compression = \"$LOKI_COMPRESSION\"
batch = { max_events = 10000, max_bytes = \"8MiB\"${OUTPUT_IN_FLIGHT:+, max_in_flight = $OUTPUT_IN_FLIGHT} }"
elif [ "$OUTPUT" = s3 ]; then
  # The receiver: s3s-fs, a real S3 server that checks signatures, storing on disk.
  mkdir -p "$work/s3/logs"
  "${S3S_FS_BIN:-target/tools/bin/s3s-fs}" --host 127.0.0.1 --port "$RECEIVER_PORT" \
    --access-key bench --secret-key bench-secret "$work/s3" 2>"$work/receiver.log" &
  receiver=$!
  background_process "$receiver"
  output_config="type = \"s3\"
bucket = \"logs\"
endpoint = \"http://127.0.0.1:$RECEIVER_PORT\"
auth = { access_key_id = \"bench\", secret_access_key = \"bench-secret\" }
compression = \"$S3_COMPRESSION\"
batch = { timeout = \"1s\"${OUTPUT_IN_FLIGHT:+, max_in_flight = $OUTPUT_IN_FLIGHT} }"
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
start_profile 0.3

cpu0=$(cpu_ticks)
t0=$(date +%s.%N)
"$bin" bench --to "127.0.0.1:$FORWARD_PORT" --events "$EVENTS" --batch "$BATCH" \
  --record-size "$RECORD_SIZE" --connections "$CONNECTIONS" --mode "$MODE" \
  ${ACK:+--ack --in-flight "$IN_FLIGHT"} \
  ${LOG_LINES:+--log-lines "$LOG_LINES"}
# Done when the output has delivered every event out of the durable log.
wait_delivered "$EVENTS" 1200
stop_clock
bytes=$(curl -s "http://127.0.0.1:$API_PORT/metrics" | awk '$1 ~ /^flumen_source_bytes_total/ { s += $2 } END { print s + 0 }')
events=$(delivered)

# Mean length of a log line (with its newline, as in a file), for the lines' MiB/s.
line_bytes=0
if [ -n "$LOG_LINES" ]; then
  line_bytes=$(awk 'length($0) > 0 { n++; b += length($0) + 1 } END { print b / n }' "$LOG_LINES")
fi

# How the sender waits: "none", or the chunks it keeps in flight (in message mode with acks,
# every event is a chunk of its own, acknowledged before the next: lines/s).
acked=none
if [ -n "$ACK" ]; then acked="$IN_FLIGHT"; fi
awk -v e="$events" -v b="$bytes" -v t0="$t0" -v t1="$t1" -v p="$PERSISTENCE" -v o="$OUTPUT" \
    -v m="$MODE" -v a="$acked" \
    -v lb="$line_bytes" -v spent="$(spent "$cpu0" "$events" event)" 'BEGIN {
  s = t1 - t0
  printf "output=%s persistence=%s mode=%s acks_in_flight=%s events=%d wall=%.2fs events/s=%.0f MB/s=%.1f %s",
    o, p, m, a, e, s, e / s, b / 1e6 / s, spent
  if (lb > 0) printf " log_lines_MiB/s=%.1f", e * lb / 1048576 / s
  if (o == "s3") { split(spent, parts, /[= s]/); printf " MB/s_per_core=%.1f", b / 1e6 / parts[2] }
  printf "\n"
}'
report_profile
stop_serve
if [ "$OUTPUT" = loki ]; then
  echo "receiver: $(curl -s "http://127.0.0.1:$RECEIVER_PORT/metrics" | grep '^flumen_source_events_total' || true)"
fi
if [ -n "${receiver:-}" ]; then
  kill -INT "$receiver"
  wait "$receiver" || true
fi
if [ "$OUTPUT" = forward ]; then
  echo "receiver: $(cat "$work/receiver.json")"
fi
if [ "$OUTPUT" = s3 ]; then
  echo "bucket: $(find "$work/s3/logs" -type f | wc -l) objects, $(du -sb "$work/s3/logs" | cut -f1) bytes"
fi
