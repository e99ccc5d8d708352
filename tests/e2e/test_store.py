"""The embedded store end to end: events sent with the PyPI fluent-logger are found by
`GET /api/v1/query`, by `flumen query` and by Loki's query API; Loki pushes to the API port
are stored; a kill -9 and a restart keep every event exactly once."""

from __future__ import annotations

import json
import subprocess
import time

import requests
from fluent import sender as fluent_sender

from conftest import FLUMEN_BIN, forward_source
from helpers import metric_sum, parse_metrics, wait_for

STORE = """
[store]
flush_interval = "100ms"
"""

SERVICES = ["api", "web", "billing"]
LEVELS = ["info", "warn", "error"]


def _send(flumen, count: int, start: int = 0) -> int:
    """Sends events start..start+count at second resolution over the last minutes; returns the
    last second used."""
    s = fluent_sender.FluentSender("app", host="127.0.0.1", port=flumen.ports["fwd"], timeout=10)
    now = int(time.time())
    try:
        for i in range(start, start + count):
            record = {
                "service": SERVICES[i % 3],
                "level": LEVELS[i % 3 if i % 7 else 2],
                "deployment_id": f"d-{i % 10}",
                "n": i,
                "message": f"request {i} " + ("upstream timeout" if i % 11 == 0 else "ok"),
            }
            assert s.emit_with_time("logs", now - 120 + i % 100, record), s.last_error
    finally:
        s.close()
    return now


def _query(flumen, query: str, **params) -> tuple[list[dict], dict]:
    r = requests.get(f"{flumen.api}/api/v1/query", params={"query": query, "since": "1h", **params},
                     timeout=10)
    assert r.status_code == 200, r.text
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert lines[-1]["done"] is True
    return lines[:-1], lines[-1]


def _wait_stored(flumen, count: int, query: str = "{}") -> list[dict]:
    def found():
        events, _ = _query(flumen, query, limit=5000)
        return events if len(events) >= count else None
    return wait_for(found, 20, f"{count} events stored for {query}")


def test_events_sent_with_fluent_logger_are_found_by_the_query_api(flumen_factory):
    flumen = flumen_factory(forward_source() + STORE)
    _send(flumen, 300)
    events = _wait_stored(flumen, 300)
    assert sorted(e["record"]["n"] for e in events) == list(range(300))

    timeouts, closing = _query(flumen, '{service="api"} |= "timeout"', limit=1000)
    expected = sorted(i for i in range(300) if i % 3 == 0 and i % 11 == 0)
    assert sorted(e["record"]["n"] for e in timeouts) == expected
    assert closing["next"] is None
    first = timeouts[0]
    assert first["tag"] == "app.logs"
    assert first["labels"]["service"] == "api"
    assert "upstream timeout" in first["line"]
    assert first["time"].endswith("Z") and first["position"].count(".") == 1

    # Newest first, page by page with the cursor: every event once.
    seen, cursor = [], None
    while True:
        params = {"limit": 70}
        if cursor:
            params["cursor"] = cursor
        page, closing = _query(flumen, "{}", **params)
        seen.extend(e["record"]["n"] for e in page)
        times = [e["time_ns"] for e in page]
        assert times == sorted(times, reverse=True)
        cursor = closing["next"]
        if cursor is None:
            break
    assert sorted(seen) == list(range(300))

    # An indexed field.
    d3, _ = _query(flumen, '{deployment_id="d-3"}', limit=1000)
    assert sorted(e["record"]["n"] for e in d3) == [i for i in range(300) if i % 10 == 3]

    # A parser stage and a field filter after it.
    parsed, _ = _query(flumen, '{service="web"} | json | n >= 290', limit=1000)
    assert sorted(e["record"]["n"] for e in parsed) == [i for i in range(290, 300) if i % 3 == 1]

    r = requests.get(f"{flumen.api}/api/v1/label/service/values", params={"since": "1h"}, timeout=5)
    assert r.json() == {"values": sorted(SERVICES)}


def test_a_malformed_query_gets_400_with_the_position(flumen_factory):
    flumen = flumen_factory(forward_source() + STORE)
    r = requests.get(f"{flumen.api}/api/v1/query", params={"query": '{service="api"'}, timeout=5)
    assert r.status_code == 400
    assert "column 15" in r.text and "expected" in r.text
    r = requests.get(f"{flumen.api}/loki/api/v1/query_range",
                     params={"query": 'count_over_time({service="api"})'}, timeout=5)
    assert r.status_code == 400, r.text
    assert "column" in r.text
    # A result over the store's limit is refused with the limit, never silently cut.
    r = requests.get(f"{flumen.api}/api/v1/query", params={"query": "{}", "limit": 999999}, timeout=5)
    assert r.status_code == 400 and "5000" in r.text, r.text


def test_flumen_query_prints_what_a_user_asks_for(flumen_factory):
    flumen = flumen_factory(forward_source() + STORE)
    _send(flumen, 60)
    _wait_stored(flumen, 60)

    def run(*args):
        done = subprocess.run([str(FLUMEN_BIN), "query", *args, "--server", flumen.api],
                              capture_output=True, text=True, timeout=30)
        return done
    done = run('{service="api"} |= "timeout"', "--since", "1h")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len([i for i in range(60) if i % 3 == 0 and i % 11 == 0])
    assert all(" api " in line and "upstream timeout" in line for line in lines)
    assert "\x1b[" not in done.stdout  # no colours when not on a terminal

    done = run("{}", "--since", "1h", "--limit", "5", "-o", "json")
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 5
    assert [r["time_ns"] for r in rows] == sorted(r["time_ns"] for r in rows)  # oldest first
    assert "more match" in done.stderr

    done = run('{service="web"}', "--since", "1h", "-o", "raw", "--limit", "3")
    assert all(line.startswith("request ") for line in done.stdout.splitlines())

    done = run('{service="api"')
    assert done.returncode != 0
    assert "column 15" in done.stderr

    # A metric query prints a table: one row per series at the end of the range...
    done = run("sum by (service) (count_over_time({}[1h]))")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["service", "value"]
    counts = {row.split()[0]: float(row.split()[1]) for row in rows}
    assert counts == {service: 20.0 for service in SERVICES}
    # ... and one per step with --step, tab-separated with -o raw.
    done = run('sum(count_over_time({service="web"}[10m]))', "--since", "10m", "--step", "5m", "-o", "raw")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split("\t")[0] == "time" and header.split("\t")[-1] == "value"
    assert rows and float(rows[-1].split("\t")[-1]) == 20


def test_loki_query_api_answers_in_lokis_shapes(flumen_factory):
    flumen = flumen_factory(forward_source() + STORE)
    _send(flumen, 90)
    _wait_stored(flumen, 90)
    now = time.time()

    r = requests.get(f"{flumen.api}/loki/api/v1/query_range",
                     params={"query": '{service="billing"}', "limit": 1000, "start": int(now - 3600),
                             "end": int(now)}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success"
    assert body["data"]["resultType"] == "streams"
    values = [v for s in body["data"]["result"] for v in s["values"]]
    assert len(values) == 30
    assert all(s["stream"]["service"] == "billing" for s in body["data"]["result"])
    ns, line = values[0]
    assert isinstance(ns, str) and ns.isdigit() and line.startswith("request ")

    r = requests.get(f"{flumen.api}/loki/api/v1/query_range",
                     params={"query": 'sum by (service) (count_over_time({}[10m]))',
                             "start": int(now - 600), "end": int(now), "step": "60s"}, timeout=10)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["resultType"] == "matrix"
    by_service = {s["metric"]["service"]: s["values"] for s in data["result"]}
    assert set(by_service) == set(SERVICES)
    # The last step's ten-minute window holds every event.
    assert sum(float(v[-1][1]) for v in by_service.values()) == 90
    t, v = by_service["api"][-1]
    assert isinstance(t, (int, float)) and isinstance(v, str)

    r = requests.get(f"{flumen.api}/loki/api/v1/query",
                     params={"query": 'count_over_time({service="api"}[10m])'}, timeout=10)
    assert r.json()["data"]["resultType"] == "vector"
    assert sum(float(s["value"][1]) for s in r.json()["data"]["result"]) == 30

    r = requests.get(f"{flumen.api}/loki/api/v1/labels", timeout=5)
    assert {"service", "level", "tag"} <= set(r.json()["data"])
    r = requests.get(f"{flumen.api}/loki/api/v1/label/level/values", timeout=5)
    assert r.json() == {"status": "success", "data": sorted(LEVELS)}


def test_a_loki_push_to_the_api_port_is_stored_and_a_bad_one_refused(flumen_factory):
    flumen = flumen_factory(forward_source() + STORE)
    push = f"{flumen.api}/loki/api/v1/push"
    r = requests.post(push, data=b"{not json", headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 400
    now_ns = time.time_ns()
    body = {"streams": [{"stream": {"service_name": "checkout", "level": "error"},
                         "values": [[str(now_ns - i), f"payment failed {i}"] for i in range(5)]}]}
    r = requests.post(push, json=body, timeout=5)
    assert r.status_code == 204, r.text
    events = _wait_stored(flumen, 5, '{service="checkout"}')
    assert sorted(e["line"] for e in events) == [f"payment failed {i}" for i in range(5)]


def test_a_kill_and_a_restart_keep_every_event_exactly_once(flumen_factory):
    flumen = flumen_factory(forward_source() + '[store]\nflush_interval = "2s"\n')
    _send(flumen, 200)
    _wait_stored(flumen, 200)
    # More, durable in the log (this client sends one record per event, without acks), then
    # kill -9, most likely before the store flushed them.
    _send(flumen, 100, start=200)
    wait_for(lambda: (metric_sum(parse_metrics(flumen.metrics_text()), "flumen_log_next_sequence")
                      or 0) >= 300, 20, "300 records durable in the log")
    flumen.kill()
    flumen.start()
    _wait_stored(flumen, 300)
    events, _ = _query(flumen, "{}", limit=5000)
    assert sorted(e["record"]["n"] for e in events) == list(range(300))
