#!/usr/bin/env bash
# Live streams: what `GET /api/v1/tail` (WebSocket) costs, and how late it is.
#
# Each measurement starts its own `flumen serve` (release build, a Forward source, the store on
# with its defaults, no output), opens its subscriptions with `flumen bench --tail` (each event
# frame's record carries the sender's run/conn/seq/sent_ns, so the subscribers count what they
# miss or get twice, and the latency from the chunk's send to the frame's receipt), sends with
# `flumen bench --to ... --ack` (BATCH events a chunk, FANOUT_BATCH in (b), IN_FLIGHT chunks
# in flight, as a real sender), and reads what flumen's own process spent (/proc/PID/stat, VmHWM):
#
#  (a) latency at each rate of RATES: one subscriber to `{}` (limit=0, only new events),
#      CONNECTIONS sender connections, RATE x DURATION events; p50/p99/p99.9/max.
#  (b) CPU and peak RSS with each number of SUBSCRIBERS at FANOUT_RATE events/s for DURATION
#      seconds, as people watch their deployments: the sender's records carry a deployment_id
#      among QUERIES deployments (default: as many as subscribers), and subscriber i reads
#      `{deployment_id="d-<i mod QUERIES>"}`, so each event goes to SUBSCRIBERS/QUERIES
#      subscribers (one by default: FANOUT_RATE frames a second in all) and the hub tests it
#      against the one query its deployment files it under, not against every subscriber.
#  (c) ingest: events/s acknowledged with the sender flat out (no --rate) for INGEST_DURATION
#      seconds on INGEST_CONNECTIONS connections with INGEST_IN_FLIGHT chunks in flight each
#      (a sender that keeps the pipe full, as Fluent Bit's workers do), with each number of
#      INGEST_SUBSCRIBERS subscribed as in (b), then with each number of INGEST_IDLE_SUBSCRIBERS
#      attached to deployments that receive none of the traffic. With no subscriber the log
#      syncs on its interval; with one, at every write.
#
# The client (the sender and the subscribers, `flumen bench`) runs on the same machine: flumen's
# CPU figures are its process's alone, but the client competes with it for the cores, and the
# latencies include the client's own delays. The client's CPU is shown next to flumen's.
#
#   QUICK=1 bash scripts/bench-live.sh                # a smoke test, half a minute
#   bash scripts/bench-live.sh                        # the full run
#   RATES="10000" SUBSCRIBERS="1000" INGEST_SUBSCRIBERS=0 bash scripts/bench-live.sh
#   QUERIES=10 SUBSCRIBERS=1000 bash scripts/bench-live.sh     # 100 subscribers per query
#   FLUMEN_BIN=/path/to/flumen bash scripts/bench-live.sh      # a binary built elsewhere
#
# Needs curl, jq and awk.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -n "${QUICK:-}" ]; then
  : "${DURATION:=2}" "${RATES:=2000 10000}" "${SUBSCRIBERS:=20 200}" "${FANOUT_RATE:=5000}"
  : "${INGEST_DURATION:=2}" "${INGEST_SUBSCRIBERS:=0 50}" "${INGEST_IDLE_SUBSCRIBERS:=50}" "${TAIL_TIMEOUT:=30}"
fi
DURATION=${DURATION:-30}                       # seconds of each (a) and (b) run
RATES=${RATES:-10000 100000}                   # (a): events/s
SUBSCRIBERS=${SUBSCRIBERS:-1000 10000}         # (b)
FANOUT_RATE=${FANOUT_RATE:-50000}              # (b): events/s
QUERIES=${QUERIES:-}                           # (b), (c): deployments watched (default: one
                                               # per subscriber)
INGEST_DURATION=${INGEST_DURATION:-$DURATION}  # (c): seconds
INGEST_SUBSCRIBERS=${INGEST_SUBSCRIBERS:-0 1000}
# (c): subscribers attached to deployments that get none of the traffic
INGEST_IDLE_SUBSCRIBERS=${INGEST_IDLE_SUBSCRIBERS:-1000}
CONNECTIONS=${CONNECTIONS:-2}                  # (a): sender connections
FANOUT_CONNECTIONS=${FANOUT_CONNECTIONS:-8}    # (b): sender connections
INGEST_CONNECTIONS=${INGEST_CONNECTIONS:-4}    # (c): sender connections ...
INGEST_IN_FLIGHT=${INGEST_IN_FLIGHT:-4}        # ... each with this many chunks in flight
BATCH=${BATCH:-100}                            # events per chunk in (a) and (c)
# (b): events per chunk. The connections' rate limits start together and stay in step, so
# each round of chunks arrives at once: small chunks keep those bursts small.
FANOUT_BATCH=${FANOUT_BATCH:-50}
IN_FLIGHT=${IN_FLIGHT:-1}                      # (a), (b): chunks in flight per connection
IDLE=${IDLE:-5s}                               # subscribers stop after this long without events
TAIL_TIMEOUT=${TAIL_TIMEOUT:-300}              # seconds after the sender is done, at most
API_BASE=${API_BASE:-18390}
FORWARD_BASE=${FORWARD_BASE:-24390}

for tool in curl jq awk; do
  command -v "$tool" >/dev/null || { echo "bench-live.sh needs $tool" >&2; exit 1; }
done

source scripts/bench-common.sh

# Every subscription is a socket at both ends.
most=0
for n in $SUBSCRIBERS $INGEST_SUBSCRIBERS; do
  if [ "$n" -gt "$most" ]; then most=$n; fi
done
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((most + 1000)) ]; then
  ulimit -n "$(ulimit -Hn)"
fi

hz=$(getconf CLK_TCK)
TIMEFORMAT='%U %S'
run_no=0

# Starts a fresh flumen for one measurement: its own data directory and ports.
start_flumen() {
  run_no=$((run_no + 1))
  rm -f "$work/tail.ticks"
  API_PORT=$((API_BASE + run_no))
  FORWARD_PORT=$((FORWARD_BASE + run_no))
  cat >"$work/live-$run_no.toml" <<TOML
data_dir = "$work/data-$run_no"
[api]
address = "127.0.0.1:$API_PORT"
[sources.fwd]
type = "forward"
address = "127.0.0.1:$FORWARD_PORT"
[store]
TOML
  serve "$work/live-$run_no.toml" "$API_PORT"
}

stop_flumen() {
  stop_serve
  rm -rf "$work/data-$run_no"
}

# Whether process $1 is running (a child that exited is a zombie until waited for).
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ "$state" != Z ]
}

# CPU ticks (user + system) process $1 has spent, 0 without one.
ticks_of() {
  if [ -n "$1" ]; then awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; else echo 0; fi
}

# The live-stream URL of query $1, only events from now on.
tail_url() { echo "ws://127.0.0.1:$API_PORT/api/v1/tail?query=$1&limit=0"; }

# The URLs of the queries {deployment_id="<$2>0"} .. {deployment_id="<$2><$1 - 1>"}; $2 is
# "d-" unless given.
query_urls() {
  local k prefix=${2:-d-}
  for ((k = 0; k < $1; k++)); do tail_url "{deployment_id=\"$prefix$k\"}"; done
}

# Opens $1 subscriptions spread over the URLs $4..., which stop once each has $2 events (when
# $2 is not empty) or after IDLE without any, each watching one of $3 deployments (when not
# empty); returns once they are open. Sets $tail_pid; the report goes to $work/tail.json.
start_tail() {
  local n=$1 expect=$2 deployments=$3
  shift 3
  local args=(${deployments:+--deployments "$deployments"})
  # In a file: ten thousand URLs do not fit on a command line.
  printf '%s\n' "$@" >"$work/tail.urls"
  args+=(--tail "@$work/tail.urls")
  : >"$work/tail.json"
  "$bin" bench "${args[@]}" --subscribers "$n" --until-idle "$IDLE" \
    ${expect:+--expect "$expect"} --json >"$work/tail.json" 2>"$work/tail.log" &
  tail_pid=$!
  background_process "$tail_pid"
  for _ in $(seq 1200); do
    grep -q 'subscriptions open' "$work/tail.log" && break
    alive "$tail_pid" || break
    sleep 0.1
  done
  if ! grep -q "$n of $n subscriptions open" "$work/tail.log"; then
    echo "the subscriptions did not all open:" >&2
    cat "$work/tail.log" >&2
    return 1
  fi
  # Their CPU ticks, every 0.1 s while they run: bash reaps their process as soon as it exits
  # (often before the sender is done), and its figures go with it.
  ticks_of "$tail_pid" >"$work/tail.ticks"
  (
    while alive "$tail_pid"; do
      ticks=$(ticks_of "$tail_pid")
      if [ "$ticks" -gt 0 ]; then echo "$ticks" >"$work/tail.ticks"; fi
      sleep 0.1
    done
  ) &
  background_process $!
}

# Sets $tail_ticks to the CPU ticks the subscribers have spent, as last sampled (0 without
# subscribers).
read_tail_ticks() {
  local ticks
  ticks=$(cat "$work/tail.ticks" 2>/dev/null || true)
  if [ -n "$ticks" ] && [ "$ticks" -gt "$tail_ticks" ]; then tail_ticks=$ticks; fi
}

# Waits for the subscribers to stop by themselves, TAIL_TIMEOUT seconds at most, then stops
# them (their report then says "stopped by signal").
await_tail() {
  local waited=0
  while alive "$tail_pid"; do
    if [ "$waited" -eq $((TAIL_TIMEOUT * 10)) ]; then kill -INT "$tail_pid"; fi
    sleep 0.1
    waited=$((waited + 1))
  done
  wait "$tail_pid" || true
}

# Sends with acks to flumen's Forward source, with the extra flags $@: the summary goes to
# $work/sent.json, the sender's CPU seconds to $sender_cpu.
send() {
  { time "$bin" bench --to "127.0.0.1:$FORWARD_PORT" --ack \
      --json "$@" >"$work/sent.json" 2>"$work/sender.log"; } \
    2>"$work/sender.time" || echo "the sender failed: $(tail -3 "$work/sender.log")" >&2
  sender_cpu=$(awk '{print $1 + $2}' "$work/sender.time")
}

# Starts the clocks of one measurement: flumen's and the subscribers' CPU, and the time.
start_clocks() {
  cpu0=$(cpu_ticks)
  tail_ticks=0
  read_tail_ticks
  tail_ticks0=$tail_ticks
  t0=$(date +%s.%N)
}

# Stops them (bench-common's stop_clock: $t1, $cpu1, $hwm_kb; the subscribers' CPU as last
# sampled) and sets $clocks to
# "<wall s> <flumen CPU s> <flumen % of a core> <peak RSS MB> <client CPU s>".
stop_clocks() {
  stop_clock
  read_tail_ticks
  clocks=$(awk -v t0="$t0" -v t1="$t1" -v c0="$cpu0" -v c1="$cpu1" -v hz="$hz" \
      -v hwm="$hwm_kb" -v a="$tail_ticks0" -v b="$tail_ticks" -v s="$sender_cpu" 'BEGIN {
    wall = t1 - t0; cpu = (c1 - c0) / hz
    printf "%.2f %.2f %.0f %.1f %.2f", wall, cpu, cpu / wall * 100, hwm / 1024, (b - a) / hz + s
  }')
}

# The subscribers' figures: "<received> <unique> <complete>/<subscribers> <p50> <p99> <p99.9>
# <max> <stopped by>", latencies in ms.
tail_figures() {
  jq -r '[.received, .unique, "\(.complete)/\(.subscribers)",
          (.latency_ms | .p50, .p99, ."p99.9", .max | . * 100 | round / 100), .stopped_by]
         | map(tostring) | join(" ")' "$work/tail.json"
}

# The subscribers that were not complete, if any, for the notes after the tables.
note_incomplete() {
  local incomplete
  incomplete=$(jq '.incomplete' "$work/tail.json")
  if [ "$incomplete" != 0 ]; then
    notes+=("$1: $incomplete subscribers incomplete, e.g. $(jq -c '.first_incomplete[0] | del(.runs)' "$work/tail.json")")
  fi
}

# The events the subscribers of (b) and (c) should have got between them: $1 subscribers over
# $2 deployments ($1 a multiple of $2), each deployment 1/$2 of what was sent.
expected_deliveries() {
  jq --argjson n "$1" --argjson q "$2" '[.per_connection[].events] | add // 0 | . * $n / $q | round' \
    "$work/sent.json"
}

notes=()
echo "bench-live: $(nproc) cores; $("$bin" --version 2>/dev/null || echo "$bin"); DURATION=${DURATION}s" >&2

# --- (a) Latency ------------------------------------------------------------------------------
declare -a latency_rows
for rate in $RATES; do
  events=$((rate * DURATION))
  echo "(a) $rate events/s: $events events, one subscriber to {}..." >&2
  start_flumen
  start_tail 1 "$events" "" "$(tail_url '{}')"
  start_clocks
  send --rate "$rate" --events "$events" --connections "$CONNECTIONS" --batch "$BATCH" \
    --in-flight "$IN_FLIGHT"
  await_tail
  stop_clocks
  read -r wall cpu pct rss client <<<"$clocks"
  read -r received unique complete p50 p99 p999 max stopped <<<"$(tail_figures)"
  acked_rate=$(jq '.acked / .secs | round' "$work/sent.json")
  latency_rows+=("| $rate | $acked_rate | $events | $unique | $complete | $p50 | $p99 | $p999 | $max | $cpu s, ${pct}% | $rss MB | $client s |")
  note_incomplete "(a) $rate events/s"
  [ "$stopped" = expect ] || notes+=("(a) $rate events/s: the subscriber stopped by $stopped, not with every event")
  stop_flumen
done

# --- (b) Many subscribers -------------------------------------------------------------------------
declare -a fanout_rows
for n in $SUBSCRIBERS; do
  queries=${QUERIES:-$n}
  # A multiple of connections x deployments, so that every deployment has as many events.
  events=$((FANOUT_RATE * DURATION / (queries * FANOUT_CONNECTIONS) * queries * FANOUT_CONNECTIONS))
  per_query=$((events / queries))
  echo "(b) $n subscribers over $queries deployments at $FANOUT_RATE events/s ($((FANOUT_RATE * n / queries)) frames/s)..." >&2
  start_flumen
  mapfile -t urls < <(query_urls "$queries")
  start_tail "$n" "$per_query" "$queries" "${urls[@]}"
  start_clocks
  send --rate "$FANOUT_RATE" --events "$events" --connections "$FANOUT_CONNECTIONS" \
    --batch "$FANOUT_BATCH" --in-flight "$IN_FLIGHT" --deployments "$queries"
  await_tail
  stop_clocks
  read -r wall cpu pct rss client <<<"$clocks"
  read -r received unique complete p50 p99 p999 max stopped <<<"$(tail_figures)"
  expected=$(expected_deliveries "$n" "$queries")
  acked_rate=$(jq '.acked / .secs | round' "$work/sent.json")
  fanout_rows+=("| $n | $queries | $acked_rate | $((acked_rate * n / queries)) | $unique of $expected | $complete | $p50 | $p99 | $p999 | $max | $cpu s | ${pct}% | $rss MB | $client s |")
  note_incomplete "(b) $n subscribers"
  [ "$stopped" = expect ] || notes+=("(b) $n subscribers: stopped by $stopped, not with every event")
  stop_flumen
done

# --- (c) Ingest --------------------------------------------------------------------------------
# Measures ingest beside $1 subscribers whose deployments are named $2<k>: "d-" are those the
# sender's records cycle over (every event goes to one of them), any other prefix names
# deployments that receive nothing (subscribers attached, idle). $3 labels the row.
measure_ingest() {
  local n=$1 prefix=$2 label=$3
  # The same records with and without subscribers: with deployments.
  local queries=${QUERIES:-$((n > 0 ? n : 1000))}
  echo "(c) ingest flat out for ${INGEST_DURATION}s with $label..." >&2
  start_flumen
  tail_pid=""
  if [ "$n" -gt 0 ]; then
    mapfile -t urls < <(query_urls "$queries" "$prefix")
    start_tail "$n" "" "$queries" "${urls[@]}"
  fi
  start_clocks
  send --duration "${INGEST_DURATION}s" --connections "$INGEST_CONNECTIONS" --batch "$BATCH" \
    --in-flight "$INGEST_IN_FLIGHT" --deployments "$queries"
  stop_clocks
  read -r wall cpu pct rss client <<<"$clocks"
  acked_rate=$(jq '.acked / .secs | round' "$work/sent.json")
  delivered="-"
  if [ -n "$tail_pid" ]; then
    if [ "$prefix" = d- ]; then
      await_tail
      read -r received unique complete p50 p99 p999 max stopped <<<"$(tail_figures)"
      delivered="$unique of $(expected_deliveries "$n" "$queries"), $complete complete, p99 $p99 ms"
      note_incomplete "(c) $label"
    else
      kill -INT "$tail_pid"
      await_tail
      delivered="none (nothing for them)"
    fi
  fi
  ingest_rows+=("| $label | $acked_rate | $cpu s, ${pct}% | $rss MB | $client s | $delivered |")
  stop_flumen
}

declare -a ingest_rows
for n in $INGEST_SUBSCRIBERS; do
  measure_ingest "$n" d- "$n subscribers"
done
for n in $INGEST_IDLE_SUBSCRIBERS; do
  measure_ingest "$n" x- "$n idle subscribers"
done

# --- Report ------------------------------------------------------------------------------------
echo
echo "flumen live streams (GET /api/v1/tail, WebSocket), $(nproc) cores. The client (flumen bench:"
echo "the sender and the subscribers) runs on the same machine: flumen's CPU is its process's alone,"
echo "but the client competes with it for the cores and the latencies include the client's delays."
echo "Sender: Forward with acks, $IN_FLIGHT chunk(s) in flight per connection ($INGEST_IN_FLIGHT in (c)), $BATCH events a chunk"
echo "($FANOUT_BATCH in (b))."
echo
echo "(a) latency from the send of a chunk (sent_ns) to its events' frames on one WebSocket"
echo "    ({}, limit=0), $CONNECTIONS connections, ${DURATION}s at each rate; CPU from the first send"
echo "    until the subscriber has every event:"
echo
echo "| rate | acked/s | sent | received | complete | p50 ms | p99 ms | p99.9 ms | max ms | flumen CPU | flumen peak RSS | client CPU |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for row in "${latency_rows[@]}"; do echo "$row"; done
echo
echo "(b) subscriber i reads {deployment_id=\"d-<i mod deployments>\"}, the sender's records cycle"
echo "    over the deployments, $FANOUT_CONNECTIONS connections at $FANOUT_RATE events/s for ${DURATION}s; CPU"
echo "    from the first send until every subscriber has every event (% of a core: over that time):"
echo
echo "| subscribers | deployments | acked/s | frames/s | events received | complete | p50 ms | p99 ms | p99.9 ms | max ms | flumen CPU | % of a core | flumen peak RSS | client CPU |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for row in "${fanout_rows[@]}"; do echo "$row"; done
echo
echo "(c) ingest with the sender flat out on $INGEST_CONNECTIONS connections for ${INGEST_DURATION}s, subscribers as in (b);"
echo "    CPU over the send (the subscribers may still be catching up after it):"
echo
echo "| subscribers | acked events/s | flumen CPU | flumen peak RSS | client CPU | subscribers got |"
echo "|---|---|---|---|---|---|"
for row in "${ingest_rows[@]}"; do echo "$row"; done
if [ "${#notes[@]}" -gt 0 ]; then
  echo
  for note in "${notes[@]}"; do echo "note: $note"; done
fi
