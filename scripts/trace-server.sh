#!/usr/bin/env bash
# What `flumen serve` does under load, seen from the kernel: `flumen bench` sends PackedForward
# chunks of 1,000 ~200-byte records over one connection to a server with the null output, while
# either `perf stat` counts the server's context switches, CPU and system calls (TRACE=stat), or
# `strace` times its fdatasync calls (TRACE=strace: how many, median, 90th percentile, longest).
#
#   TRACE=stat   EVENTS=5000000 bash scripts/trace-server.sh
#   TRACE=strace EVENTS=1000000 ACK=1 IN_FLIGHT=4 bash scripts/trace-server.sh
#   SERVER_BIN=/path/to/old/flumen TRACE=stat bash scripts/trace-server.sh   # another build
#
# Needs perf (Debian's linux-perf) or strace. strace slows the server down: read its rates as
# a timeline, not as throughput.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TRACE=${TRACE:-stat}                   # stat | strace
EVENTS=${EVENTS:-5000000}
PERSISTENCE=${PERSISTENCE:-interval}
ACK=${ACK:-}                           # set to 1 for --ack
IN_FLIGHT=${IN_FLIGHT:-1}              # with ACK=1: chunks written before waiting for an ack
FORWARD_PORT=${FORWARD_PORT:-24399}
API_PORT=${API_PORT:-18399}

source scripts/bench-common.sh

cat > "$work/trace.toml" <<TOML
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
type = "null"
[[routes]]
match = ["**"]
outputs = ["out"]
TOML

serve "$work/trace.toml" "$API_PORT"
case "$TRACE" in
  stat)
    perf stat -e context-switches,cpu-migrations,task-clock,raw_syscalls:sys_enter -p "$pid" \
      -o "$work/trace.txt" &
    ;;
  strace)
    strace -f -T -e trace=fdatasync -p "$pid" -o "$work/trace.txt" 2>/dev/null &
    ;;
  *) echo "TRACE is stat or strace" >&2; exit 2 ;;
esac
tracer=$!
sleep 0.5

"$bin" bench --to "127.0.0.1:$FORWARD_PORT" --events "$EVENTS" --batch 1000 --record-size 200 \
  --connections 1 --mode packed ${ACK:+--ack --in-flight "$IN_FLIGHT"} 2>&1 |
  grep -o '[0-9]* events/s' || true
wait_delivered "$EVENTS" 1200
kill -INT "$tracer"
wait "$tracer" || true

if [ "$TRACE" = stat ]; then
  grep -E 'context-switches|cpu-migrations|task-clock|sys_enter' "$work/trace.txt"
else
  grep -o '<[0-9.]*>$' "$work/trace.txt" | tr -d '<>' | sort -n | awk '
    { d[NR] = $1 }
    END { if (NR == 0) { print "no fdatasync"; exit }
          printf "fdatasync calls=%d median=%.2fms p90=%.2fms max=%.2fms\n",
            NR, d[int((NR + 1) / 2)] * 1000, d[int(NR * 0.9 + 0.5)] * 1000, d[NR] * 1000 }'
fi
stop_serve
