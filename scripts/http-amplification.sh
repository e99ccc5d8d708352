#!/usr/bin/env bash
# What one HTTP request costs flumen at the default body limit: a 32 MiB JSON body of empty
# objects (`[{},{},…]`, 11.2 M events) POSTed once with curl to `flumen serve` (HTTP source, null
# output). Reports flumen's peak RSS and CPU (user + system) when the answer comes (from /proc),
# then stops it with SIGTERM and reports what `/usr/bin/time -v` saw from start to exit (the
# null output's reading of the log and the shutdown included), with the HTTP status and how
# many records the log took.
#
#   FLUMEN_BIN=target/release/flumen bash scripts/http-amplification.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=${FLUMEN_BIN:-target/release/flumen}
HTTP_PORT=${HTTP_PORT:-19880}
API_PORT=${API_PORT:-18880}
work=$(mktemp -d)
# $pid is time's; flumen is its child.
flumen_pid() { pgrep -P "$pid"; }
trap 'kill "$(flumen_pid)" 2>/dev/null || true; rm -rf "$work"' EXIT

python3 - "$work/body.json" <<'PY'
import sys
n = (32 << 20) // 3
with open(sys.argv[1], "w") as f:
    f.write("[" + ",".join(["{}"] * n) + "]")
PY

cat > "$work/config.toml" <<TOML
data_dir = "$work/data"
[api]
address = "127.0.0.1:$API_PORT"
[sources.web]
type = "http"
address = "127.0.0.1:$HTTP_PORT"
[outputs.null]
type = "null"
[[routes]]
match = ["**"]
outputs = ["null"]
TOML

/usr/bin/time -v -o "$work/time.txt" "$bin" serve --config "$work/config.toml" 2>"$work/serve.log" &
pid=$!
ready=
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$API_PORT/readyz" >/dev/null && ready=1 && break
  sleep 0.1
done
[ -n "$ready" ] || { echo "flumen did not become ready:" >&2; cat "$work/serve.log" >&2; exit 1; }

status=$(curl -s -o "$work/answer.txt" -w '%{http_code}' -H 'Content-Type: application/json' \
  --data-binary "@$work/body.json" "http://127.0.0.1:$HTTP_PORT/app/flood")
awk -v hz="$(getconf CLK_TCK)" '
  FILENAME ~ /stat$/ {cpu = ($14 + $15) / hz}
  /VmHWM/ {rss = $2}
  END {printf "at the answer: cpu=%.2fs peak_rss=%.1fMB\n", cpu, rss / 1024}' \
  "/proc/$(flumen_pid)/stat" "/proc/$(flumen_pid)/status"
records=$(curl -s "http://127.0.0.1:$API_PORT/metrics" | awk '$1 == "flumen_log_next_sequence" {print $2}')
kill -TERM "$(flumen_pid)"
wait "$pid" || true

awk -v status="$status" -v records="$records" -v body="$(stat -c %s "$work/body.json")" '
  /User time/ {user = $NF}
  /System time/ {sys = $NF}
  /Maximum resident set size/ {rss = $NF}
  END {printf "at exit: body=%d bytes status=%s log_records=%s cpu=%.2fs (user %.2f, sys %.2f) peak_rss=%.1fMB\n",
       body, status, records, user + sys, user, sys, rss / 1024}' "$work/time.txt"
[ "$status" = 200 ] || cat "$work/answer.txt"
