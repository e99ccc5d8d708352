#!/usr/bin/env bash
# Regenerates the real-program log samples under tests/data/ (see tests/data/README.md).
#
# Every file is written by the real program, not typed: Debian's nginx under a few hundred
# concurrent curl requests (plus hand-crafted bad requests sent with nc), util-linux `logger`
# to small UDP/Unix-socket listeners and through a private rsyslogd that forwards to TCP
# listeners and writes files, and uncaught exceptions from real Python, Java and Go runtimes.
#
# Needs a Debian 12 machine and root (for apt and so nginx can drop to www-data). Installs,
# when missing: nginx rsyslog netcat-openbsd curl python3 default-jdk-headless golang-go.
# Nothing outside a temporary directory and tests/data/ is touched: nginx and rsyslogd run
# with their own configs, pid files and logs and are stopped at the end.
#
# Usage: scripts/capture-test-data.sh [OUT_DIR]   (default: tests/data)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo_root/tests/data}"
log() { printf 'capture: %s\n' "$*" >&2; }

# --- packages --------------------------------------------------------------------------------
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v rsyslogd >/dev/null || need+=(rsyslog)
command -v nc >/dev/null || need+=(netcat-openbsd)
command -v curl >/dev/null || need+=(curl)
command -v logger >/dev/null || need+=(bsdutils)
command -v python3 >/dev/null || need+=(python3)
command -v javac >/dev/null || need+=(default-jdk-headless)
command -v go >/dev/null || need+=(golang-go)
if [ "${#need[@]}" -gt 0 ]; then
    log "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

work="$(mktemp -d /tmp/flumen-capture.XXXXXX)"
chmod 755 "$work"
pids=()
cleanup() {
    if [ -f "$work/nginx/nginx.pid" ]; then
        kill -QUIT "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true
    fi
    if [ -f "$work/rsyslog/rsyslogd.pid" ]; then
        kill "$(cat "$work/rsyslog/rsyslogd.pid")" 2>/dev/null || true
    fi
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 0.5
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

mkdir -p "$out/nginx" "$out/syslog" "$out/multiline"

# --- nginx -----------------------------------------------------------------------------------
log "nginx: $(nginx -v 2>&1)"
n="$work/nginx"
mkdir -p "$n/www/static" "$n/www/docs" "$n/www/café" "$n/tmp"
cp /usr/share/nginx/html/index.html "$n/www/index.html" 2>/dev/null ||
    printf '<!DOCTYPE html><title>Welcome</title><h1>It works</h1>\n' >"$n/www/index.html"
printf 'console.log("app");\n' >"$n/www/static/app.js"
printf 'body { color: #333; }\n' >"$n/www/static/site.css"
head -c 40000 /dev/urandom >"$n/www/static/logo.png"
printf '<h1>Docs</h1>\n' >"$n/www/docs/index.html"
printf 'naïve\n' >"$n/www/café/menu.txt"
printf 'alice:{PLAIN}wonderland\n' >"$n/htpasswd"
chmod -R a+rX "$n"
port="$(free_port)"
dead_port="$(free_port)" # nothing listens there: proxy_pass to it gives 502s and error lines
listen6=""
if python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
    listen6="listen [::1]:$port;"
fi
cat >"$n/nginx.conf" <<EOF
user www-data;
worker_processes 2;
pid $n/nginx.pid;
error_log $n/error.log info;
events { worker_connections 512; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    client_body_temp_path $n/tmp/body;
    proxy_temp_path $n/tmp/proxy;
    fastcgi_temp_path $n/tmp/fastcgi;
    uwsgi_temp_path $n/tmp/uwsgi;
    scgi_temp_path $n/tmp/scgi;
    keepalive_timeout 2s;
    large_client_header_buffers 4 4k;
    log_format common '\$remote_addr - \$remote_user [\$time_local] "\$request" \$status \$body_bytes_sent';
    limit_req_zone \$binary_remote_addr zone=slow:1m rate=1r/s;
    server {
        listen 127.0.0.1:$port;
        $listen6
        server_name localhost;
        root $n/www;
        access_log $n/access.log combined;
        access_log $n/common.log common;
        location = /old-page { return 301 /new-page; }
        location = /new-page { return 200 "moved here\n"; }
        location /api/ { return 201 '{"ok":true}'; }
        location /private/ { deny all; }
        location /admin/ { auth_basic "admin"; auth_basic_user_file $n/htpasswd; }
        location /limited/ { limit_req zone=slow burst=1 nodelay; return 200 "ok\n"; }
        location /upstream/ { proxy_pass http://127.0.0.1:$dead_port; }
        location /upload/ { client_max_body_size 1k; return 200 "stored\n"; }
    }
}
EOF
nginx -t -q -c "$n/nginx.conf" -e "$n/error.log"
nginx -c "$n/nginx.conf" -e "$n/error.log"
sleep 0.5
base="http://127.0.0.1:$port"
ua_firefox='Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0'
ua_chrome='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36'
ua_iphone='Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'
ua_bot='Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)'
ua_quoted='Weird "Agent" \with\ backslashes/1.0 (quote: "x")'
long_query="q=$(printf 'flumen+log+aggregator+%.0s' $(seq 1 60))&page=2&utm_source=newsletter&utm_medium=email&utm_campaign=$(head -c 300 /dev/zero | tr '\0' 'x')"
c() { curl -s -o /dev/null --max-time 5 "$@" || true; }
one_round() {
    c "$base/" -A "$ua_firefox" &
    c "$base/index.html" -A "$ua_chrome" -e 'https://www.example.com/search?q=flumen&lang=en' &
    c "$base/static/app.js" -A "$ua_chrome" -e "$base/" &
    c "$base/static/site.css" -A "$ua_iphone" -e "$base/" &
    c "$base/static/logo.png" -A "$ua_iphone" &
    c "$base/static/logo.png" -r 0-1023 -A "$ua_firefox" &
    c "$base/static/app.js" -H 'If-Modified-Since: Sat, 01 Jan 2050 00:00:00 GMT' -A "$ua_firefox" &
    c -I "$base/" -A "$ua_bot" &
    c "$base/docs" -A "$ua_bot" &
    c "$base/docs/" -A "$ua_bot" &
    c "$base/old-page" -L -A "$ua_chrome" &
    c "$base/missing.html" -A "$ua_chrome" &
    c "$base/wp-login.php" -A 'python-requests/2.31.0' &
    c "$base/.env" -A 'Go-http-client/1.1' &
    c "$base/search?$long_query" -A "$ua_firefox" &
    c "$base/caf%C3%A9/menu.txt" -A "$ua_firefox" &
    c "$base/café/menu.txt" -A "$ua_firefox" &
    c "$base/日本語/ページ" -A "$ua_iphone" &
    c "$base/a%20b%22c" -A "$ua_quoted" &
    c "$base/" -A "$ua_quoted" -e 'https://example.org/?a="b"' &
    c "$base/" -A '' &
    c "$base/" --http1.0 -A "$ua_bot" &
    c -X POST "$base/api/events" -H 'Content-Type: application/json' -d '{"event":"signup"}' -A 'node-fetch/1.0' &
    c -X PUT "$base/api/items/42" -d 'name=x' -A 'curl/7.88.1' &
    c -X DELETE "$base/api/items/42" -A 'curl/7.88.1' &
    c -X OPTIONS "$base/api/items" -A 'curl/7.88.1' &
    c -X PATCH "$base/static/app.js" -A 'curl/7.88.1' &
    c -X POST "$base/index.html" -d 'a=1' -A "$ua_chrome" &
    c -X POST "$base/upload/file" --data-binary @"$n/www/static/logo.png" -A "$ua_chrome" &
    c "$base/private/secret.txt" -A "$ua_chrome" &
    c "$base/admin/" -A "$ua_chrome" &
    c "$base/admin/" -u alice:wonderland -A "$ua_chrome" &
    c "$base/admin/" -u bob:guess -A "$ua_chrome" &
    c "$base/admin/" -u alice:wrong -A "$ua_chrome" &
    c "$base/limited/a" "$base/limited/b" "$base/limited/c" -A "$ua_bot" &
    c "$base/upstream/orders?id=7" -A "$ua_chrome" &
    c "$base/" "$base/static/app.js" "$base/static/site.css" -A "$ua_firefox" &
    c "$base/" -H "X-Forwarded-For: 203.0.113.7" -A "$ua_chrome" &
    if [ -n "$listen6" ]; then c -g "http://[::1]:$port/" -A "$ua_firefox" & fi
    wait
}
raw() { printf "$1" | nc -N -w 2 127.0.0.1 "$port" >/dev/null 2>&1 || true; }
for round in 1 2 3 4 5 6; do
    one_round
done
raw 'GARBAGE\r\n\r\n'
raw 'GET /path with spaces HTTP/1.1\r\nHost: localhost\r\n\r\n'
raw 'GET / HTTP/1.1\r\n\r\n'
raw 'GET / HTTP/9.9\r\nHost: localhost\r\n\r\n'
raw 'GET /\r\n'
raw '\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03'
raw ''
raw "GET /$(head -c 5000 /dev/zero | tr '\0' 'a') HTTP/1.1\r\nHost: localhost\r\n\r\n"
raw 'GET /\xff\xfe\x01 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bytes\xc3\x28\r\n\r\n'
raw 'POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nabc'
for round in 1 2; do
    one_round
done
sleep 2.5 # let keepalive connections time out (info lines in error.log)
kill -QUIT "$(cat "$n/nginx.pid")"
sleep 1
cp "$n/access.log" "$out/nginx/access.log"
cp "$n/common.log" "$out/nginx/common.log"
cp "$n/error.log" "$out/nginx/error.log"
log "nginx: $(wc -l <"$out/nginx/access.log") access, $(wc -l <"$out/nginx/error.log") error lines"

# --- syslog ----------------------------------------------------------------------------------
# A listener that writes each datagram (UDP, Unix) or each received line (TCP) as one line.
cat >"$work/listen.py" <<'EOF'
import os, signal, socket, sys, threading
kind, addr, path = sys.argv[1:4]
out = open(path, "wb", buffering=0)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
def frame(data):
    out.write(data.rstrip(b"\n") + b"\n")
if kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", int(addr)))
elif kind == "unix":
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(addr)
else:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(addr))); s.listen(8)
    def serve(conn):
        while True:
            data = conn.recv(65536)
            if not data:
                return
            out.write(data)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
print("ready", flush=True)
while True:
    frame(s.recv(65536))
EOF
listen() { # kind addr file
    python3 "$work/listen.py" "$@" >"$work/listen.$$.$RANDOM" &
    pids+=("$!")
    sleep 0.3
}
# logger variants: $1 is the transport option list (an array name)
send_variants() {
    local -n transport=$1
    local fmt=$2
    logger "${transport[@]}" "$fmt" -t myapp "application started on port 8080"
    logger "${transport[@]}" "$fmt" -t myapp -i -p local0.err "payment failed: card declined (code=51)"
    logger "${transport[@]}" "$fmt" -t worker --id=4242 -p daemon.warning "queue depth 1532 exceeds 1000"
    logger "${transport[@]}" "$fmt" -t sshd -i -p auth.info "Accepted publickey for deploy from 198.51.100.23 port 52814 ssh2: ED25519 SHA256:Qm9vYmFy"
    logger "${transport[@]}" "$fmt" -t CRON -p cron.info "(root) CMD (   cd / && run-parts --report /etc/cron.hourly)"
    logger "${transport[@]}" "$fmt" -t kernel -p kern.crit "Out of memory: Killed process 3120 (java) total-vm:8123456kB"
    logger "${transport[@]}" "$fmt" -t app.web -p local7.debug 'debug: user="alice" path=/café [cache miss] ☕'
    logger "${transport[@]}" "$fmt" -p user.notice "a message without a tag option"
    logger "${transport[@]}" "$fmt" -t postfix/smtpd -i -p mail.notice "connect from unknown[203.0.113.9]"
    logger "${transport[@]}" "$fmt" -t myapp -p local0.emerg "disk /var is full"
    logger "${transport[@]}" "$fmt" -t myapp -p local0.alert "replication broken"
    if [ "$fmt" = --rfc5424 ]; then
        logger "${transport[@]}" --rfc5424 -t myapp --msgid ID47 -p local4.notice "with a message id"
        logger "${transport[@]}" --rfc5424 -t evntslog --msgid ID47 --sd-id exampleSDID@32473 \
            --sd-param 'iut="3"' --sd-param 'eventSource="Application"' --sd-param 'eventID="1011"' \
            "An application event log entry"
        logger "${transport[@]}" --rfc5424 -t zoo --sd-id zoo@123 --sd-param 'tiger="hungry"' \
            --sd-param 'zebra="running"' --sd-id manager@123 --sd-param 'onMeeting="yes"' "animals"
        logger "${transport[@]}" --rfc5424 -t esc --sd-id esc@1 --sd-param 'note="say \"hi\" [ok\] back\\slash"' \
            "escaped structured data"
        logger "${transport[@]}" --rfc5424=notq -t myapp -i "no time quality"
        logger "${transport[@]}" --rfc5424=notime -t myapp "no timestamp"
        logger "${transport[@]}" --rfc5424=nohost -t myapp "no hostname"
        logger "${transport[@]}" --rfc5424=notq,notime,nohost -t myapp "nothing but the message"
    fi
}
log "syslog: $(logger --version), $(rsyslogd -v | head -1)"
# logger straight to listeners: UDP (the remote format) and a Unix datagram socket (/dev/log's).
for fmt in rfc5424 rfc3164; do
    p="$(free_port)"
    listen udp "$p" "$out/syslog/logger-udp-$fmt.log"
    via=(--server 127.0.0.1 --port "$p" --udp)
    send_variants via "--$fmt"
    sleep 0.3
    kill "${pids[-1]}"
    sock="$work/log-$fmt.sock"
    listen unix "$sock" "$out/syslog/logger-unix-$fmt.log"
    via=(--socket "$sock")
    send_variants via "--$fmt"
    sleep 0.3
    kill "${pids[-1]}"
done
# rsyslogd receiving from logger over UDP, forwarding over TCP in RFC 5424 and in the
# traditional format, and writing files in Debian's default (high-precision) and traditional
# file formats.
r="$work/rsyslog"
mkdir -p "$r"
in_port="$(free_port)"
fwd5424="$(free_port)"
fwd3164="$(free_port)"
listen tcp "$fwd5424" "$out/syslog/rsyslog-forward-rfc5424.log"
listen tcp "$fwd3164" "$out/syslog/rsyslog-forward-traditional.log"
cat >"$r/rsyslog.conf" <<EOF
global(workDirectory="$r" maxMessageSize="64k")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="$in_port")
action(type="omfwd" target="127.0.0.1" port="$fwd5424" protocol="tcp" template="RSYSLOG_SyslogProtocol23Format")
action(type="omfwd" target="127.0.0.1" port="$fwd3164" protocol="tcp" template="RSYSLOG_TraditionalForwardFormat")
action(type="omfile" file="$r/file-format.log" template="RSYSLOG_FileFormat")
action(type="omfile" file="$r/traditional-file.log" template="RSYSLOG_TraditionalFileFormat")
EOF
rsyslogd -n -f "$r/rsyslog.conf" -i "$r/rsyslogd.pid" &
pids+=("$!")
sleep 1
via=(--server 127.0.0.1 --port "$in_port" --udp)
send_variants via --rfc5424
send_variants via --rfc3164
sleep 1
kill "$(cat "$r/rsyslogd.pid")"
sleep 1
cp "$r/file-format.log" "$out/syslog/rsyslog-file-format.log"
cp "$r/traditional-file.log" "$out/syslog/rsyslog-traditional-file.log"
for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
pids=()

# --- stack traces ----------------------------------------------------------------------------
m="$work/multiline"
mkdir -p "$m"
cat >"$m/chained.py" <<'EOF'
import json


def load_config(path):
    with open(path) as f:
        return json.load(f)


def start():
    try:
        load_config("/etc/flumen-demo/config.json")
    except FileNotFoundError as e:
        raise RuntimeError("could not load configuration") from e


start()
EOF
cat >"$m/during.py" <<'EOF'
def parse_port(text):
    return int(text)


def connect(settings):
    try:
        port = parse_port(settings["port"])
    except ValueError:
        print("retrying with", settings["fallback"])
    return port


connect({"port": "80a"})
EOF
cat >"$m/logging_demo.py" <<'EOF'
import logging

logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.DEBUG)
log = logging.getLogger("orders")
log.info("worker started, pid=%d", 4242)
log.debug("polling queue %s", "orders")
for order in ({"id": 7, "qty": "3"}, {"id": 8}):
    try:
        total = int(order["qty"]) * 9.5
        log.info("order %d total %.2f", order["id"], total)
    except Exception:
        log.exception("failed to process order %d", order["id"])
log.warning("queue empty, sleeping 5s")
try:
    {"a": 1}["b"]
except KeyError:
    log.error("lookup failed", exc_info=True)
log.critical("shutting down")
EOF
python3 "$m/chained.py" 2>"$out/multiline/python-chained.log" || true
python3 "$m/during.py" 2>"$out/multiline/python-during-handling.log" >/dev/null || true
python3 "$m/logging_demo.py" 2>"$out/multiline/python-logging.log"
cat >"$m/Main.java" <<'EOF'
import java.util.logging.Level;
import java.util.logging.Logger;

public class Main {
    private static final Logger LOG = Logger.getLogger(Main.class.getName());

    static int parsePort(String text) {
        return Integer.parseInt(text);
    }

    static int loadPort(String text) {
        try {
            return parsePort(text);
        } catch (NumberFormatException e) {
            throw new IllegalStateException("bad port in config: " + text, e);
        }
    }

    static void start(String text) {
        try {
            loadPort(text);
        } catch (IllegalStateException e) {
            throw new RuntimeException("server failed to start", e);
        }
    }

    public static void main(String[] args) {
        LOG.info("starting");
        try {
            start("80a");
        } catch (RuntimeException e) {
            LOG.log(Level.SEVERE, "start attempt failed, retrying once", e);
        }
        start("8o8o");
    }
}
EOF
(cd "$m" && javac Main.java && java -cp . Main) 2>"$out/multiline/java-exception.log" || true
log "java: $(java -version 2>&1 | head -1)"
if command -v go >/dev/null; then
    cat >"$m/panic.go" <<'EOF'
package main

import "fmt"

type store struct{ shards []string }

func (s *store) lookup(i int) string { return s.shards[i] }

func handle(s *store, id int) string {
	return fmt.Sprintf("shard %s", s.lookup(id%5))
}

func main() {
	s := &store{shards: []string{"a", "b", "c"}}
	for id := 0; id < 10; id++ {
		fmt.Println(handle(s, id))
	}
}
EOF
    (cd "$m" && GOFLAGS=-mod=mod GO111MODULE=off go build -trimpath -o panic panic.go)
    "$m/panic" 2>"$out/multiline/go-panic.log" >/dev/null || true
    cat >"$m/goroutine.go" <<'EOF'
package main

import (
	"errors"
	"sync"
)

var errClosed = errors.New("connection closed by peer")

func worker(id int, wg *sync.WaitGroup) {
	defer wg.Done()
	if id == 2 {
		panic(errClosed)
	}
	select {}
}

func main() {
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go worker(i, &wg)
	}
	wg.Wait()
}
EOF
    (cd "$m" && GOFLAGS=-mod=mod GO111MODULE=off go build -trimpath -o goroutine goroutine.go)
    GOTRACEBACK=all "$m/goroutine" 2>"$out/multiline/go-goroutine-panic.log" || true
    log "go: $(go version)"
fi

# --- provenance ------------------------------------------------------------------------------
{
    echo "Captured $(date -u +%Y-%m-%dT%H:%M:%SZ) by scripts/capture-test-data.sh on $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //') ($(dpkg-query -W -f='${Package} ${Version}' nginx 2>/dev/null || true))"
    echo "rsyslog: $(rsyslogd -v | head -1 | sed 's/^rsyslogd *//; s/ compiled with://')"
    echo "logger: $(logger --version)"
    echo "curl: $(curl --version | head -1)"
    echo "python: $(python3 --version 2>&1)"
    echo "java: $(java -version 2>&1 | head -1)"
    if command -v go >/dev/null; then echo "go: $(go version)"; fi
} >"$out/CAPTURED.txt"
du -sh "$out" >&2
