"""The Loki output end to end: flumen A takes events over Forward (the PyPI fluent-logger) and
pushes them to flumen B's own Loki push input; they are read back from B's search API
(`GET /api/v1/query`). Every event arrives once, complete, in order, with its labels and its
structured metadata where configured; B stopped for a while and started again loses and doubles
nothing. flumen's input never answers 429 or refuses entries for being out of order, so those
answers come from a small `http.server` stand-in that replies in Loki's documented shapes
(429 with Retry-After; 400 with Loki's "entry out of order" text) and otherwise passes each
request on to B unchanged."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time

import requests
from fluent import sender as fluent_sender

from conftest import FLUMEN_BIN, forward_source
from helpers import wait_for

# B's tag names the stream labels `service` and `trace_id`: a label shows up in the tag, a
# structured metadata pair (or a missing label) as `unknown`.
B_CONFIG = """
[sources.loki]
type = "loki"
address = "127.0.0.1:@port:loki@"
tag = "loki.{service}.{trace_id}"

[store]
flush_interval = "100ms"
"""


def loki_output(url: str, extra: str = "") -> str:
    return f"""
[outputs.loki]
type = "loki"
url = "{url}"
labels = {{ service = "{{{{service}}}}", source = "{{{{tag}}}}", job = "shop" }}
structured_metadata = ["trace_id"]
batch = {{ max_events = 100, timeout = "50ms" }}
retry = {{ initial_backoff = "50ms", max_backoff = "5s", max_duration = "1h" }}
{extra}

[[routes]]
match = ["**"]
outputs = ["loki"]
"""


def start_pair(flumen_factory, extra: str = ""):
    b = flumen_factory(B_CONFIG, name="b")
    a = flumen_factory(forward_source() + loki_output(f"http://127.0.0.1:{b.ports['loki']}", extra),
                       name="a")
    return a, b


def send(a, first: int, count: int, base: float) -> list[dict]:
    """Events first..first+count, about 1 ms apart from the second `base` (to the nanosecond),
    tag app.<service>; returns what was sent."""
    s = fluent_sender.FluentSender("app", host="127.0.0.1", port=a.ports["fwd"],
                                   nanosecond_precision=True, timeout=10)
    sent = []
    try:
        for n in range(first, first + count):
            service = ["checkout", "search"][n % 2]
            record = {"n": n, "service": service, "trace_id": f"t-{n}",
                      "message": f"order {n} placed ✓", "level": "info", "amount": n * 1.5}
            ts = fluent_sender.EventTime(base, n * 1_000_001)
            assert s.emit_with_time(service, ts, record), s.last_error
            sent.append(record)
    finally:
        s.close()
    return sent


def stored(b) -> list[dict]:
    """Every event B's store has, in B's log order."""
    r = requests.get(f"{b.api}/api/v1/query",
                     params={"query": "{}", "since": "1h", "limit": 5000}, timeout=10)
    assert r.status_code == 200, r.text
    events = [json.loads(line) for line in r.text.splitlines()[:-1]]
    return sorted(events, key=lambda e: [int(p) for p in e["position"].split(".")])


def wait_stored(b, count: int, timeout: float = 30) -> list[dict]:
    wait_for(lambda: len(stored(b)) >= count or None, timeout, f"{count} events in B")
    time.sleep(0.5)  # anything sent twice would show up meanwhile
    return stored(b)


def check_arrived(sent: list[dict], got: list[dict]) -> None:
    """Each sent event arrived once, complete, as the output's settings say, in the order sent
    within its service (its Loki stream)."""
    ns = [e["record"].get("n") or json.loads(e["record"]["message"])["n"] for e in got]
    assert len(ns) == len(set(ns)), f"{len(ns) - len(set(ns))} events arrived twice"
    assert sorted(ns) == sorted(r["n"] for r in sent), "events missing or unexpected"
    by_n = {r["n"]: r for r in sent}
    for event in got:
        record = event["record"]
        line = json.loads(record["message"])
        want = by_n[line["n"]]
        # The labels: B tags by them, and keeps them as fields.
        assert event["tag"] == f"loki.{want['service']}.unknown", event["tag"]
        assert record["service"] == want["service"]
        assert record["source"] == f"app.{want['service']}"
        assert record["job"] == "shop"
        # Structured metadata: a field of B's record, not a label, and out of the line.
        assert record["trace_id"] == want["trace_id"]
        assert line == {k: v for k, v in want.items() if k != "trace_id"}, line
    for service in ("checkout", "search"):
        order = [json.loads(e["record"]["message"])["n"] for e in got
                 if e["record"]["service"] == service]
        assert order == sorted(order), f"{service}: out of order: {order[:20]}"


def test_events_arrive_complete_in_order_with_labels_and_metadata(flumen_factory):
    a, b = start_pair(flumen_factory)
    base = int(time.time()) - 60
    sent = send(a, 0, 300, base)
    got = wait_stored(b, 300)
    check_arrived(sent, got)
    # The time, to the nanosecond: B stores each event at the time A got it with.
    for event in got:
        n = json.loads(event["record"]["message"])["n"]
        assert int(event["time_ns"]) == base * 10**9 + n * 1_000_001, (n, event["time_ns"])


def test_a_label_read_from_a_high_cardinality_field_is_warned_about(tmp_path):
    config = tmp_path / "flumen.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n' + loki_output(
        "http://127.0.0.1:3100", 'labels = ["service", "request_id"]').replace(
        'labels = { service = "{{service}}", source = "{{tag}}", job = "shop" }\n', ""))
    done = subprocess.run([str(FLUMEN_BIN), "validate", str(config)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "labels.request_id" in done.stderr and "structured_metadata" in done.stderr, done.stderr
    assert "labels.service" not in done.stderr


def test_loki_down_for_a_while_loses_and_doubles_nothing(flumen_factory):
    a, b = start_pair(flumen_factory)
    base = int(time.time()) - 60
    sent = send(a, 0, 200, base)
    wait_stored(b, 200)
    b.stop()
    sent += send(a, 200, 300, base)
    time.sleep(2)  # A retries against a closed port meanwhile
    b.start()
    got = wait_stored(b, 500)
    check_arrived(sent, got)


class StandIn(http.server.ThreadingHTTPServer):
    """Loki's push route as a stand-in: answers from `script` (a list of "429", "400" or
    "pass"), then with `default`, passing "pass" requests on to `upstream` as they are."""

    def __init__(self, upstream: str, script: list[str]):
        self.upstream = upstream
        self.script = list(script)
        self.default = "pass"
        self.seen: list[tuple[float, str, int]] = []  # (when, answer, status)
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), StandInHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class StandInHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        server: StandIn = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with server.lock:
            answer = server.script.pop(0) if server.script else server.default
        if answer == "429":
            # Loki's answer when a tenant is over its ingestion rate (Retry-After as a gateway or
            # Grafana Cloud adds it).
            status, text, extra = 429, ("Ingestion rate limit exceeded for user fake (limit: "
                                        "4194304 bytes/sec) while attempting to ingest '100' lines "
                                        "totaling '20000' bytes, reduce log volume or contact your "
                                        "Loki administrator to see if the limit can be increased"), {"Retry-After": "2"}
        elif answer == "400":
            # Loki's answer when it refuses entries of a stream (pkg/ingester/stream.go).
            status, text, extra = 400, (
                "entry with timestamp 2025-11-21 12:00:00.001 +0000 UTC ignored, reason: "
                "'entry out of order' for stream: {job=\"shop\"},\ntotal ignored: 1 out of 1"), {}
        else:
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() in ("content-type", "content-encoding", "x-scope-orgid")}
            r = requests.post(server.upstream + "/loki/api/v1/push", data=body, headers=headers,
                              timeout=10)
            status, text, extra = r.status_code, r.text, {}
        with server.lock:
            server.seen.append((time.monotonic(), answer, status))
        data = text.encode()
        self.send_response(status)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_a_429_waits_its_retry_after_and_a_400_is_dead_lettered_with_lokis_reason(flumen_factory):
    b = flumen_factory(B_CONFIG, name="b")
    stand_in = StandIn(f"http://127.0.0.1:{b.ports['loki']}", ["429"])
    threading.Thread(target=stand_in.serve_forever, daemon=True).start()
    try:
        a = flumen_factory(forward_source() + loki_output(stand_in.url), name="a")
        base = int(time.time()) - 60
        # 429 then through: every event once, and not sooner than Retry-After asked.
        sent = send(a, 0, 50, base)
        got = wait_stored(b, 50)
        check_arrived(sent, got)
        (t429, first, _), (tpass, second, status) = stand_in.seen[:2]
        assert (first, second, status) == ("429", "pass", 204), stand_in.seen[:2]
        assert tpass - t429 >= 1.9, f"retried {tpass - t429:.2f}s after a Retry-After: 2"

        # 400: refused for good, so dead-lettered at once with Loki's reason, never retried.
        # Every event is refused once and dead-lettered once: a retry would write it twice.
        stand_in.default = "400"
        refused = send(a, 50, 20, base)
        dead = a.data_dir / "dead-letter" / "loki.jsonl"
        wait_for(lambda: dead.exists() and len(dead.read_text().splitlines()) >= 20, 20,
                 "20 dead letters")
        time.sleep(0.5)
        stand_in.default = "pass"
        letters = [json.loads(line) for line in dead.read_text().splitlines()]
        assert sorted(e["record"]["n"] for e in letters) == [r["n"] for r in refused]
        assert all("HTTP 400" in e["error"] and "'entry out of order'" in e["error"]
                   for e in letters), letters[0]["error"]
        # The output moved on: what comes next is delivered.
        later = send(a, 70, 30, base)
        got = wait_stored(b, 80)
        check_arrived(sent + later, got)
    finally:
        stand_in.shutdown()
