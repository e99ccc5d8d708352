# Sourced by the benchmark scripts: builds the release binary, gives them a work directory that
# is removed on exit along with every process they register, and starts `flumen serve`.
#
#   source scripts/bench-common.sh
#   serve "$work/config.toml" "$API_PORT"     # sets $pid, waits for /readyz
#   background_process "$some_pid"             # killed on exit

cargo build --release --bin flumen -q
bin=target/release/flumen
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

background_process() { pids+=("$1"); }

# Starts `flumen serve --config $1`, whose API listens on port $2; returns once it is ready.
serve() {
  "$bin" serve --config "$1" 2>"$work/serve.log" &
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
