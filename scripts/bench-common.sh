# Sourced by the benchmark scripts: builds the release binary (or takes $FLUMEN_BIN), gives them a work directory that
# is removed on exit along with every process they register, and starts `flumen serve`.
#
#   source scripts/bench-common.sh
#   serve "$work/config.toml" "$API_PORT"     # sets $pid, waits for /readyz
#   background_process "$some_pid"             # killed on exit
#
# and, for the throughput benchmarks, reads flumen's /metrics and what its process spent, and
# profiles it with PROFILE=1 (or stat, strace):
#
#   start_profile; cpu0=$(cpu_ticks); t0=$(date +%s.%N)
#   ...; wait_delivered "$n" 1200; stop_clock  # sets $t1, $cpu1, $hwm_kb
#   echo "... $(spent "$cpu0" "$n" event)"     # cpu=…s cpu/event=…us peak_rss=…MB
#   report_profile; stop_serve

# FLUMEN_BIN: a flumen binary to use instead of building this tree's release binary (in
# ${CARGO_TARGET_DIR:-target}); SERVER_BIN: a different binary for `flumen serve` only (an older
# build, to compare against, driven by the same load generator).
if [ -z "${FLUMEN_BIN:-}" ]; then cargo build --release --bin flumen -q; fi
bin=${FLUMEN_BIN:-${CARGO_TARGET_DIR:-target}/release/flumen}
server_bin=${SERVER_BIN:-$bin}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

background_process() { pids+=("$1"); }

# Starts `flumen serve --config $1`, whose API listens on port $2; returns once it is ready.
serve() {
  "$server_bin" serve --config "$1" 2>"$work/serve.log" &
  pid=$!
  background_process "$pid"
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$2/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "flumen did not become ready; its log:" >&2
  cat "$work/serve.log" >&2
  return 1
}

# Peak resident memory of flumen so far, in KiB.
peak_rss_kib() { awk '/VmHWM/ {print $2}' "/proc/$pid/status"; }

# The value of the first sample on flumen's /metrics (API port $API_PORT) whose name and labels
# start with the regular expression $1.
metric() { curl -s "http://127.0.0.1:$API_PORT/metrics" | awk -v m="$1" '$1 ~ "^"m {print $2; exit}'; }

# The CPU time flumen has spent so far (user + system), in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }

# Events the output `out` has delivered.
delivered() { metric 'flumen_output_events_total\{output="out"\}'; }

# Waits until the output `out` has delivered $1 events, looking every 50 ms, $2 times at most.
wait_delivered() {
  local out
  for _ in $(seq "$2"); do
    out=$(delivered)
    [ "${out%.*}" -ge "$1" ] 2>/dev/null && return 0
    sleep 0.05
  done
}

# Stops the clock: sets $t1, $cpu1 (flumen's CPU ticks) and $hwm_kb (its peak RSS, KiB).
stop_clock() {
  t1=$(date +%s.%N)
  cpu1=$(cpu_ticks)
  hwm_kb=$(peak_rss_kib)
}

# What flumen's own process spent on $2 events ($3 names one, as in "cpu/event") from $1 CPU
# ticks to $cpu1 (see stop_clock): "cpu=…s cpu/<$3>=…us peak_rss=…MB".
spent() {
  awk -v c0="$1" -v c1="$cpu1" -v e="$2" -v unit="$3" -v hz="$(getconf CLK_TCK)" \
      -v hwm="$hwm_kb" 'BEGIN {
    cpu = (c1 - c0) / hz
    printf "cpu=%.2fs cpu/%s=%.3fus peak_rss=%.1fMB", cpu, unit, cpu / e * 1e6, hwm / 1024
  }'
}

# With PROFILE set, watches the server from the kernel until report_profile, after waiting $1
# seconds (if given) for the tool to attach:
#   PROFILE=1 (or record): where flumen's CPU goes (perf record, from Debian's linux-perf);
#   PROFILE=threads: the same, by thread (flumen-store gathers and flushes, flumen-store-merge
#   merges, tokio-runtime-w the sources and the log), then by thread and function;
#   PROFILE=stat: its context switches, CPU and system calls (perf stat);
#   PROFILE=strace: how many fdatasync calls it made and how long they took (strace; it slows
#   the server down, so read the rates of such a run as a timeline, not as throughput).
start_profile() {
  case "${PROFILE:-}" in
    "") return ;;
    stat) perf stat -e context-switches,cpu-migrations,task-clock,raw_syscalls:sys_enter             -p "$pid" -o "$work/profile.txt" & ;;
    strace) strace -f -T -e trace=fdatasync -p "$pid" -o "$work/profile.txt" 2>/dev/null & ;;
    *) perf record -F 2000 -g -p "$pid" -o "$work/perf.data" 2>/dev/null & ;;
  esac
  profiler=$!
  if [ -n "${1:-}" ]; then sleep "$1"; fi
}

# With PROFILE set: stops watching and prints what start_profile collected (for `record`, the
# 15 functions flumen spent most CPU in).
report_profile() {
  [ -n "${PROFILE:-}" ] || return 0
  kill -INT "$profiler"
  wait "$profiler" || true
  case "$PROFILE" in
    stat) grep -E 'context-switches|cpu-migrations|task-clock|sys_enter' "$work/profile.txt" ;;
    strace)
      grep -o '<[0-9.]*>$' "$work/profile.txt" | tr -d '<>' | sort -n | awk '
        { d[NR] = $1 }
        END { if (NR == 0) { print "no fdatasync"; exit }
              printf "fdatasync calls=%d median=%.2fms p90=%.2fms max=%.2fms\n",
                NR, d[int((NR + 1) / 2)] * 1000, d[int(NR * 0.9 + 0.5)] * 1000, d[NR] * 1000 }' ;;
    threads) perf report -i "$work/perf.data" --no-children --sort comm 2>/dev/null |
         grep -E '^ +[0-9]' | head -8
       perf report -i "$work/perf.data" --no-children --sort comm,symbol 2>/dev/null |
         grep -E '^ +[0-9]' | head -25 ;;
    *) perf report -i "$work/perf.data" --no-children --sort symbol 2>/dev/null |
         grep -E '^ +[0-9]' | head -15 ;;
  esac
}

# Stops flumen and waits for it to exit.
stop_serve() {
  kill -TERM "$pid"
  wait "$pid" || true
}
