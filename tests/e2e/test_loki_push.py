"""The Loki source with the client libraries that ship to Grafana Loki, unchanged but for the
URL: npm `winston-loki` (snappy-compressed protobuf), npm `pino-loki` (JSON with structured
metadata) and PyPI `python-logging-loki` (JSON, both its legacy `labels`/`entries` form and
`stream`/`values`); and, with `requests`, a bad body refused with 400 while the next is stored."""

from __future__ import annotations

import json
import logging
import subprocess
import time

import pytest
import requests

from conftest import NODE_DIR, file_output, route
from helpers import rfc3339_ns, wait_for_events


def loki_source(name: str = "loki", extra: str = "") -> str:
    return f"""
[sources.{name}]
type = "loki"
address = "127.0.0.1:@port:{name}@"
tag = "loki.{{job}}"
{extra}
"""


@pytest.fixture
def loki(flumen_factory):
    """flumen with a Loki source (tag `loki.<job>`), every event to a file output."""
    return flumen_factory(loki_source() + file_output("all") + route(["**"], ["all"]))


def _url(flumen) -> str:
    return f"http://127.0.0.1:{flumen.ports['loki']}"


# Lines each client sends: (level as the library names it, message, level flumen writes).
LINES = [
    ("debug", "cache warmed", "DEBUG"),
    ("info", "order 42 placed", "INFO"),
    ("warn", "card about to expire", "WARN"),
    ("error", "payment failed", "ERROR"),
]
BASE_MS = 1_763_723_821_000


def _run_node(client: str, flumen, labels: dict, events: list[dict]) -> dict:
    stdin = "".join(json.dumps(e) + "\n" for e in events)
    cmd = ["node", str(NODE_DIR / "loki.js"), "--client", client, "--url", _url(flumen),
           "--labels", json.dumps(labels)]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, (f"{client} exited {proc.returncode}\nstdout: {proc.stdout[-2000:]}\n"
                                  f"stderr: {proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _node_events(meta: bool = False) -> list[dict]:
    events = []
    for n, (level, message, _) in enumerate(LINES):
        event = {"level": level, "message": message, "time_ms": BASE_MS + n * 1001}
        if meta:
            event["meta"] = {"trace_id": f"trace-{n}", "attempt": n}
        events.append(event)
    return events


def _time_of_ms(ms: int) -> str:
    return rfc3339_ns(ms // 1000, (ms % 1000) * 1_000_000)


def test_winston_loki_sends_snappy_protobuf(loki):
    summary = _run_node("winston", loki, {"job": "shop", "service_name": "checkout"}, _node_events())
    assert summary["contentType"] == "application/x-protobuf", summary
    events = wait_for_events(loki.dir("out"), len(LINES))
    assert len(events) == len(LINES), events
    by_message = {e["record"]["message"].split(" {")[0]: e for e in events}
    for n, (level, message, canonical) in enumerate(LINES):
        event = by_message[message]
        assert event["tag"] == "loki.shop"
        # winston-loki sends milliseconds; flumen keeps what it was sent, to the nanosecond.
        assert event["time"] == _time_of_ms(BASE_MS + n * 1001)
        record = event["record"]
        assert record["job"] == "shop"
        assert record["service_name"] == "checkout"
        assert record["service"] == "checkout", "the canonical field, from service_name"
        assert record["level"] == canonical
        # winston-loki appends the rest of winston's info object, as JSON, to the line.
        assert record["message"] == f'{message} {{"level":"{level}"}}'


def test_pino_loki_sends_json_with_structured_metadata(loki):
    summary = _run_node("pino", loki, {"job": "api", "env": "staging"}, _node_events(meta=True))
    assert summary["errors"] == [], summary
    events = wait_for_events(loki.dir("out"), len(LINES))
    assert len(events) == len(LINES), events
    by_message = {json.loads(e["record"]["message"])["msg"]: e for e in events}
    for n, (level, message, canonical) in enumerate(LINES):
        event = by_message[message]
        assert event["tag"] == "loki.api"
        assert event["time"] == _time_of_ms(BASE_MS + n * 1001)
        record = event["record"]
        assert record["job"] == "api"
        assert record["env"] == "staging"
        assert record["environment"] == "staging", "the canonical field, from env"
        assert record["level"] == canonical
        # Structured metadata (pino-loki's `meta`), every value a string.
        assert record["trace_id"] == f"trace-{n}"
        assert record["attempt"] == str(n)
        # The line is pino's JSON, as Loki would store it.
        line = json.loads(record["message"])
        assert line["time"] == BASE_MS + n * 1001


@pytest.mark.parametrize("version", ["0", "1"])
def test_python_logging_loki(loki, version):
    import warnings

    import logging_loki

    with warnings.catch_warnings():
        # Version 0 (the legacy JSON form) is deprecated by the library; it is still its default.
        warnings.simplefilter("ignore")
        handler = logging_loki.LokiHandler(
            url=f"{_url(loki)}/loki/api/v1/push",
            tags={"job": f"python{version}", "application": "billing"},
            version=version,
        )
    failures = []
    handler.handleError = lambda record: failures.append(record)
    logger = logging.getLogger(f"billing.v{version}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    before = time.time()
    try:
        logger.debug("cache warmed")
        logger.info("invoice %s sent", 7, extra={"tags": {"customer": "ada"}})
        logger.warning('quota at "90%"')
        logger.error("charge failed")
    finally:
        logger.removeHandler(handler)
    assert failures == [], "every push was answered 204"
    after = time.time()

    events = wait_for_events(loki.dir("out"), 4)
    assert len(events) == 4, events
    by_message = {e["record"]["message"]: e for e in events}
    expected = [("cache warmed", "DEBUG", "debug"), ("invoice 7 sent", "INFO", "info"),
                ('quota at "90%"', "WARN", "warning"), ("charge failed", "ERROR", "error")]
    for message, canonical, severity in expected:
        event = by_message[message]
        assert event["tag"] == f"loki.python{version}"
        record = event["record"]
        assert record["job"] == f"python{version}"
        assert record["application"] == "billing"
        assert record["service"] == "billing", "the canonical field, from application"
        assert record["logger"] == f"billing.v{version}"
        assert record["severity"] == severity
        assert record["level"] == canonical
        # Version 0 sends the record's time in microseconds, version 1 the time of sending in
        # nanoseconds.
        seconds = event["time"][:19]
        assert time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(before)) <= seconds
        assert seconds <= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(after + 1))
    assert by_message["invoice 7 sent"]["record"]["customer"] == "ada"


def test_a_bad_body_is_refused_and_the_next_is_stored(loki):
    push = f"{_url(loki)}/loki/api/v1/push"
    bad = {"streams": [
        {"stream": {"job": "raw"}, "values": [["1763723821000000000", "good line"]]},
        {"stream": {"job": "raw"}, "values": [["not a time", "bad line"]]},
    ]}
    answer = requests.post(push, json=bad, timeout=10)
    assert answer.status_code == 400, answer.text
    assert "not a number of Unix nanoseconds" in answer.text

    answer = requests.post(push, data=b"\x00not snappy", timeout=10,
                           headers={"Content-Type": "application/x-protobuf"})
    assert answer.status_code == 400, answer.text
    assert "snappy" in answer.text

    good = {"streams": [{"stream": {"job": "raw", "detected_level": "warn"},
                         "values": [["1763723821123456789", "stored line", {"user": "7"}]]}]}
    answer = requests.post(push, json=good, timeout=10)
    assert answer.status_code == 204, answer.text

    events = wait_for_events(loki.dir("out"), 1)
    assert len(events) == 1, "nothing of the refused bodies is stored"
    event = events[0]
    assert event["tag"] == "loki.raw"
    assert event["time"] == rfc3339_ns(1763723821, 123456789)
    assert event["record"] == {"job": "raw", "detected_level": "warn", "level": "WARN",
                               "user": "7", "message": "stored line"}
