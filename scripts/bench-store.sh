#!/usr/bin/env bash
# The store's benchmark on a corpus that looks like production: `flumen bench --corpus day`
# (EVENTS events over the simulated day 2026-12-01, 200 services, ~3,000 deployment ids, access
# log lines, JSON application messages, stack traces, the token needle-7f3a9c once an hour).
#
#  1. Writes the corpus as JSON lines into `wc -c` (nothing on disk): its raw size, and how fast
#     one core generates it. RAW_ZSTD=1 also pipes it through `zstd -3` (the ratio of plain zstd
#     on the file, for comparison).
#  2. Starts `flumen serve` (release build) with a Forward source and the store on, flush
#     defaults, no output; sends the corpus flat out in PackedForward chunks of BATCH events over
#     CONNECTIONS connections, and waits until the store has made every event durable
#     (flumen_store_events_total; flumen_store_stored_position = flumen_log_next_sequence).
#     Ingest: events/s and MB/s of raw JSON lines from the first send to the last event stored.
#  3. The store's size on disk (du) against the raw JSON lines: the compression ratio; the bytes
#     its flushes and compactions wrote (flumen_store_written_bytes_total), and how many
#     compactions ran. Then (unless COMPACT=0) POST /api/v1/store/compact merges every
#     partition into one file, as happens by itself once a partition's arrival hour is over
#     (the whole corpus arrives within minutes, in one or two partitions): its time, and the
#     size and ratio after it. The queries run on the store as it is then.
#  4. Queries, RUNS times each, with curl's time_total and the stats of the answer's closing line
#     (bytes_decompressed per second of wall time):
#       a100 {deployment_id="<a deployment of a middling service, live at noon>"}, limit 100, day
#       a0   a deployment id that no event has: every chunk it reads is a false positive of
#            the chunks' index filters
#       a    the same as a100, every event: pages of 5,000 (max_limit) with the cursor, times added up
#       b    {} |= "needle-7f3a9c" over the day (24 events expected: brute-force line filter)
#       c    a regex, {} |~ "(POST|PUT) /api/v1/(checkout|orders)[^ ]* HTTP/1.1. 50[234] ",
#            over 12:00-13:00, limit 1000
#       d    sum by (level) (count_over_time({}[1m])) over the day, step 1m (1,440 steps), on
#            /loki/api/v1/query_range; Loki's answer carries no stats, so its bytes scanned are
#            those of b (the same chunks: every one of the day), and its counts are added up
#            and checked against EVENTS (a query cut by query_timeout would come up short)
#     and the server's CPU time per run (bytes decompressed per second of CPU: per core) and
#     peak RSS during each (VmHWM, reset through /proc/PID/clear_refs before).
#
#   EVENTS=2000000 bash scripts/bench-store.sh        # a quick run (about a minute or two)
#   bash scripts/bench-store.sh                       # 20 million events (needs ~12 GB free in
#                                                     # $TMPDIR for the log, ~1 GB for the store)
#   RAW_ZSTD=1 RUNS=5 SEED=2 CONNECTIONS=2 bash scripts/bench-store.sh
#   FLUMEN_BIN=/path/to/flumen bash scripts/bench-store.sh   # a binary built elsewhere
#   KEEP_DATA=/some/dir bash scripts/bench-store.sh   # copy the store there afterwards
#   PROFILE=1 EVENTS=2000000 bash scripts/bench-store.sh   # where the server's CPU goes during
#                                                     # ingest (perf record; see bench-common.sh)
#   QUERIES=0 ...                                     # ingest and size only
#   RATE=2000 EVENTS=240000 QUERIES=0 bash scripts/bench-store.sh   # a live rate (flushes every
#                                                     # 2 s): how much compaction rewrites
#
# Needs curl, jq and awk (and zstd for RAW_ZSTD=1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

EVENTS=${EVENTS:-20000000}
SEED=${SEED:-1}
CONNECTIONS=${CONNECTIONS:-2}
BATCH=${BATCH:-1000}
ACK=${ACK:-}                          # 1: the sender waits for acks (IN_FLIGHT chunks in flight)
IN_FLIGHT=${IN_FLIGHT:-4}
RATE=${RATE:-}                        # events/s over all connections (default: flat out)
RUNS=${RUNS:-3}
QUERIES=${QUERIES:-1}                 # 0: ingest and size only
COMPACT=${COMPACT:-1}                 # 0: no POST /api/v1/store/compact before the queries
LEVEL=${LEVEL:-}                      # the store's compression_level (default: flumen's)
RAW_ZSTD=${RAW_ZSTD:-}
KEEP_DATA=${KEEP_DATA:-}
FORWARD_PORT=${FORWARD_PORT:-24297}
API_PORT=${API_PORT:-18297}
DAY=2026-12-01

for tool in curl jq awk; do
  command -v "$tool" >/dev/null || { echo "bench-store.sh needs $tool" >&2; exit 1; }
done

source scripts/bench-common.sh

# --- 1. The corpus's raw size -------------------------------------------------------------
echo "corpus: $EVENTS events, seed $SEED: writing it as JSON lines to measure its size..." >&2
g0=$(date +%s.%N)
if [ -n "$RAW_ZSTD" ]; then
  "$bin" bench --corpus day --events "$EVENTS" --seed "$SEED" --write-jsonl - --json \
      2>"$work/corpus.json" | tee >(wc -c >"$work/raw_bytes") | zstd -q -3 -T1 -c | wc -c \
      >"$work/zstd_bytes"
  sleep 0.5   # tee's process substitution writes its count asynchronously
else
  "$bin" bench --corpus day --events "$EVENTS" --seed "$SEED" --write-jsonl - --json \
      2>"$work/corpus.json" | wc -c >"$work/raw_bytes"
fi
g1=$(date +%s.%N)
raw_bytes=$(tr -d ' ' <"$work/raw_bytes")
gen_secs=$(jq -r .secs "$work/corpus.json")
deployment=$(jq -r .sample_deployment "$work/corpus.json")
deployment_events=$(jq -r .sample_events "$work/corpus.json")
needle=$(jq -r .needle "$work/corpus.json")
needle_events=$(jq -r .needle_events "$work/corpus.json")
echo "corpus: $(jq -c 'del(.start, .end)' "$work/corpus.json")" >&2

# --- 2. Ingest --------------------------------------------------------------------------------
cat >"$work/store.toml" <<TOML
data_dir = "$work/data"
[log]
max_size = "16GiB"
[api]
address = "127.0.0.1:$API_PORT"
[sources.fwd]
type = "forward"
address = "127.0.0.1:$FORWARD_PORT"
[store]
${LEVEL:+compression_level = $LEVEL}
TOML
serve "$work/store.toml" "$API_PORT"
start_profile 0.3

cpu0=$(cpu_ticks)
t0=$(date +%s.%N)
"$bin" bench --to "127.0.0.1:$FORWARD_PORT" --corpus day --events "$EVENTS" --seed "$SEED" \
  --batch "$BATCH" --connections "$CONNECTIONS" --tag app ${ACK:+--ack --in-flight "$IN_FLIGHT"} ${RATE:+--rate "$RATE"} \
  --json >"$work/sent.json"
t_sent=$(date +%s.%N)
stored=0
for _ in $(seq 36000); do   # an hour at most
  stored=$(metric 'flumen_store_events_total')
  [ "${stored%.*}" -ge "$EVENTS" ] 2>/dev/null && break
  sleep 0.1
done
stop_clock
report_profile >"$work/profile.out" || true   # perf report into head: SIGPIPE
ingest_cpu=$(awk -v c0="$cpu0" -v c1="$cpu1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", (c1 - c0) / hz }')
ingest_hwm_kb=$hwm_kb
stored_position=$(metric 'flumen_store_stored_position')
compactions=$(metric 'flumen_store_compactions_total')
written_bytes=$(metric 'flumen_store_written_bytes_total')
next_sequence=$(metric 'flumen_log_next_sequence')
if [ "${stored%.*}" -lt "$EVENTS" ]; then
  echo "the store holds ${stored%.*} of $EVENTS events after an hour; its log:" >&2
  tail -20 "$work/serve.log" >&2
  exit 1
fi

# --- 3. Size on disk ----------------------------------------------------------------------
sleep 3   # let a compaction that follows the last flush finish
store_bytes=$(du -sb "$work/data/store" | cut -f1)
store_files=$(find "$work/data/store" -name '*.chunks' | wc -l)
log_bytes=$(( $(du -sb "$work/data" | cut -f1) - store_bytes ))

API="http://127.0.0.1:$API_PORT"
if [ "$COMPACT" != 0 ]; then
  echo "compacting every partition..." >&2
  compact_secs=$(curl -sf -X POST -o "$work/compact.json" -w '%{time_total}' "$API/api/v1/store/compact")
  merged_bytes=$(du -sb "$work/data/store" | cut -f1)
  merged_files=$(jq .files "$work/compact.json")
  merged_chunks=$(jq .chunks "$work/compact.json")
fi

# --- 4. Queries ---------------------------------------------------------------------------
reset_hwm() { echo 5 >"/proc/$pid/clear_refs"; }

# One search, every page: prints "seconds events chunks_read bytes_read bytes_decompressed
# events_scanned pages truncated".
search() {
  local query=$1 start=$2 end=$3 limit=$4 all=$5
  local cursor="" secs=0 events=0 cr=0 br=0 bd=0 es=0 pages=0 trunc=null t
  while :; do
    t=$(curl -sf -G -o "$work/page.ndjson" -w '%{time_total}' "$API/api/v1/query" \
      --data-urlencode "query=$query" --data-urlencode "start=$start" \
      --data-urlencode "end=$end" --data-urlencode "limit=$limit" \
      ${cursor:+--data-urlencode "cursor=$cursor"})
    pages=$((pages + 1))
    secs=$(awk -v a="$secs" -v b="$t" 'BEGIN { print a + b }')
    events=$((events + $(grep -vc '"done":true' "$work/page.ndjson" || true)))
    read -r c1 b1 d1 e1 next tr < <(tail -1 "$work/page.ndjson" | jq -r \
      '[.stats.chunks_read, .stats.bytes_read, .stats.bytes_decompressed, .stats.events_scanned, (.next // "-"), (.truncated // "null")] | map(tostring) | join(" ")')
    cr=$((cr + c1)); br=$((br + b1)); bd=$((bd + d1)); es=$((es + e1))
    [ "$tr" != null ] && trunc=$tr
    cursor=$next
    [ "$cursor" = - ] && cursor=""
    if [ -z "$all" ] || [ -z "$cursor" ]; then break; fi
  done
  echo "$secs $events $cr $br $bd $es $pages $trunc"
}

# The metric query: prints "seconds total_count series".
metric_query() {
  local t
  t=$(curl -sf -G -o "$work/metric.json" -w '%{time_total}' "$API/loki/api/v1/query_range" \
    --data-urlencode 'query=sum by (level) (count_over_time({}[1m]))' \
    --data-urlencode "start=${DAY}T00:01:00Z" --data-urlencode "end=2026-12-02T00:00:00Z" \
    --data-urlencode "step=60")
  echo "$t $(jq '[.data.result[].values[][1] | tonumber] | add' "$work/metric.json") $(jq '.data.result | length' "$work/metric.json")"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

declare -A times result hwm cpu
run_search() {
  local name=$1; shift
  local out t="" c0
  reset_hwm
  c0=$(cpu_ticks)
  for _ in $(seq "$RUNS"); do
    out=$(search "$@")
    t="$t ${out%% *}"
  done
  cpu[$name]=$(awk -v a="$c0" -v b="$(cpu_ticks)" -v r="$RUNS" -v hz="$(getconf CLK_TCK)" 'BEGIN { print (b - a) / hz / r }')
  hwm[$name]=$(peak_rss_kib)
  times[$name]=$t
  result[$name]=$out
}

if [ "$QUERIES" != 0 ]; then
echo "queries: $RUNS runs each..." >&2
run_search a100 "{deployment_id=\"$deployment\"}" "${DAY}T00:00:00Z" "2026-12-02T00:00:00Z" 100 ""
run_search a0 '{deployment_id="no-such-deployment-000000000"}' "${DAY}T00:00:00Z" "2026-12-02T00:00:00Z" 100 ""
run_search a "{deployment_id=\"$deployment\"}" "${DAY}T00:00:00Z" "2026-12-02T00:00:00Z" 5000 all
run_search b "{} |= \"$needle\"" "${DAY}T00:00:00Z" "2026-12-02T00:00:00Z" 100 ""
run_search c '{} |~ "(POST|PUT) /api/v1/(checkout|orders)[^ ]* HTTP/1.1. 50[234] "' \
  "${DAY}T12:00:00Z" "${DAY}T13:00:00Z" 1000 ""
reset_hwm
t=""
c0=$(cpu_ticks)
for _ in $(seq "$RUNS"); do
  out=$(metric_query)
  t="$t ${out%% *}"
done
cpu[d]=$(awk -v a="$c0" -v b="$(cpu_ticks)" -v r="$RUNS" -v hz="$(getconf CLK_TCK)" 'BEGIN { print (b - a) / hz / r }')
hwm[d]=$(peak_rss_kib)
times[d]=$t
read -r _ d_count d_series <<<"$out"
# d reads what b reads: every chunk of the day.
read -r _ _ _ _ b_bytes _ <<<"${result[b]}"
fi

if [ -n "$KEEP_DATA" ]; then
  mkdir -p "$KEEP_DATA"
  cp -r "$work/data/store" "$KEEP_DATA/"
fi
stop_serve

# --- Report -------------------------------------------------------------------------------
wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
sent_secs=$(awk -v a="$t0" -v b="$t_sent" 'BEGIN { print b - a }')
echo
echo "corpus: $EVENTS events (seed $SEED), $raw_bytes bytes of JSON lines ($(awk -v b="$raw_bytes" -v e="$EVENTS" 'BEGIN { printf "%.0f", b / e }') B/event), generated in ${gen_secs}s on one core ($(awk -v e="$EVENTS" -v s="$gen_secs" 'BEGIN { printf "%.2f", s / e * 1e6 }') us/event)"
echo "sample deployment: $deployment ($deployment_events events); needle: $needle ($needle_events events)"
awk -v e="$EVENTS" -v b="$raw_bytes" -v w="$wall" -v s="$sent_secs" -v cpu="$ingest_cpu" \
    -v hwm="$ingest_hwm_kb" -v c="$CONNECTIONS" -v ack="${ACK:-no}" 'BEGIN {
  printf "ingest (Forward in to stored, %d connections, sender acks: %s): %.2fs, %.0f events/s, %.1f MB/s of JSON lines; sender done after %.2fs (%.0f events/s into the log); server CPU %.1fs (%.2f us/event), peak RSS %.1f MB\n",
    c, ack, w, e / w, b / 1e6 / w, s, e / s, cpu, cpu / e * 1e6, hwm / 1024
}'
if [ -n "${PROFILE:-}" ]; then echo "server profile during ingest (PROFILE=$PROFILE):"; cat "$work/profile.out"; fi
echo "log position: stored $stored_position of $next_sequence; log left on disk: $log_bytes bytes"
awk -v r="$raw_bytes" -v s="$store_bytes" -v f="$store_files" -v e="$EVENTS" \
    -v w="${written_bytes%.*}" -v c="${compactions%.*}" -v z="$(cat "$work/zstd_bytes" 2>/dev/null || echo 0)" 'BEGIN {
  # Byte counts with %.0f: %d stops at 2^31 - 1 in some awks (mawk).
  printf "store on disk: %.0f bytes in %d files: %.1fx smaller than the JSON lines (%.1f B/event)", s, f, r / s, s / e
  # flumen_store_written_bytes_total counts what flushes and compactions wrote.
  printf "; flushes and compactions wrote %.0f bytes, %.1fx what it keeps; %d compactions", w, w / s, c
  if (z > 0) printf "; zstd -3 of the JSON lines: %.0f bytes, %.1fx", z, r / z
  printf "\n"
}'
if [ "$COMPACT" != 0 ]; then
  awk -v r="$raw_bytes" -v s="$merged_bytes" -v f="$merged_files" -v c="$merged_chunks" \
      -v e="$EVENTS" -v t="$compact_secs" 'BEGIN {
    printf "after POST /api/v1/store/compact (%.1fs): %.0f bytes in %d files, %d chunks: %.1fx smaller than the JSON lines (%.1f B/event)\n", t, s, f, c, r / s, s / e
  }'
fi
[ "$QUERIES" != 0 ] || exit 0
echo
echo "| query | runs (s) | median | events | chunks read | MB read | MB decompressed | MB/s decompressed | CPU s | MB/s per core | peak RSS |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for name in a100 a0 a b c; do
  read -r _ events cr br bd _ pages trunc <<<"${result[$name]}"
  med=$(tr ' ' '\n' <<<"${times[$name]}" | grep . | median)
  note=""
  [ "$pages" -gt 1 ] && note=" ($pages pages)"
  [ "$trunc" != null ] && note="$note (truncated: $trunc)"
  awk -v n="$name" -v t="${times[$name]}" -v m="$med" -v e="$events" -v cr="$cr" -v br="$br" \
      -v bd="$bd" -v h="${hwm[$name]}" -v note="$note" -v cpu="${cpu[$name]}" 'BEGIN {
    printf "| %s | %s | %.3f | %d%s | %d | %.1f | %.1f | %.0f | %.2f | %.0f | %.1f MB |\n",
      n, t, m, e, note, cr, br / 1e6, bd / 1e6, bd / 1e6 / m, cpu, (cpu > 0 ? bd / 1e6 / cpu : 0), h / 1024
  }'
done
med=$(tr ' ' '\n' <<<"${times[d]}" | grep . | median)
awk -v t="${times[d]}" -v m="$med" -v c="$d_count" -v s="$d_series" -v bd="$b_bytes" \
    -v h="${hwm[d]}" -v cpu="${cpu[d]}" 'BEGIN {
  printf "| d | %s | %.3f | %d counted in %d series | (as b) | | %.1f | %.0f | %.2f | | %.1f MB |\n",
    t, m, c, s, bd / 1e6, bd / 1e6 / m, cpu, h / 1024
}'
echo
echo "expected: a = $deployment_events events, b = $needle_events, d = $EVENTS counted (the first event, at 00:00:00.000, is before the first window)"
