"""Routing by tag, as in the seed's fluent.conf: a labelled forward source whose events only
see the label's routes, an unlabelled HTTP source whose health checks go to a null output,
first matching route wins, several outputs copy."""

from __future__ import annotations

import time
from collections import Counter

import requests
from fluent import sender as fluent_sender

from conftest import file_output, forward_source, http_source, route
from helpers import metric_sum, parse_metrics, read_events, wait_for_events

SEED_CONFIG = (
    forward_source("fwd", 'label = "mainstream"')
    + http_source("web")
    + file_output("frontend", "front")
    + file_output("backend", "back")
    + file_output("unlabelled", "plain")
    + file_output("special", "special")
    + """
[outputs.discard]
type = "null"
"""
    + route(["health*"], ["discard"])
    + route(["app.**"], ["unlabelled"])
    + route(["frontend.special"], ["special"], label="mainstream")
    + route(["frontend*", "frontend.**"], ["frontend"], label="mainstream")
    + route(["backend*", "svc.{api,worker}.**"], ["backend"], label="mainstream")
)

HEALTHCHECK = "/healthcheck?json=%7B%22log%22%3A+%22health+check%22%7D"


def _send_forward(port: int, tags: list[str], per_tag: int = 5):
    s = fluent_sender.FluentSender("", host="127.0.0.1", port=port, timeout=10)
    try:
        for tag in tags:
            for i in range(per_tag):
                assert s.emit_with_time(tag, 1700000000 + i, {"tag_sent": tag, "n": i}), s.last_error
    finally:
        s.close()


def _tags(root) -> Counter:
    return Counter(e["tag"] for e in read_events(root))


def test_seed_routing(flumen_factory):
    flumen = flumen_factory(SEED_CONFIG)
    # The seed's container health check, against the unlabelled HTTP source.
    r = requests.get(f"http://127.0.0.1:{flumen.ports['web']}{HEALTHCHECK}", timeout=10)
    assert r.status_code == 200, (r.status_code, r.text)

    to_front = ["frontend", "frontend-apache", "frontend.web", "frontend.web.v2"]
    to_back = ["backend", "backend-api", "svc.api.x", "svc.worker.a.b"]
    to_special = ["frontend.special"]
    unrouted = ["other", "svc.db.x", "healthcheck", "app.web", "front"]
    _send_forward(flumen.ports["fwd"], to_front + to_back + to_special + unrouted)

    # Unlabelled HTTP events: health* goes to null, app.** to its file, and a frontend tag
    # must NOT reach the labelled routes.
    web = f"http://127.0.0.1:{flumen.ports['web']}"
    for path in ("/app.web", "/frontend-apache", "/health-extra"):
        r = requests.post(web + path, json={"via": "http", "path": path}, timeout=10)
        assert r.status_code == 200, (path, r.status_code, r.text)

    wait_for_events(flumen.dir("front"), 5 * len(to_front))
    wait_for_events(flumen.dir("back"), 5 * len(to_back))
    wait_for_events(flumen.dir("special"), 5)
    wait_for_events(flumen.dir("plain"), 1)
    time.sleep(0.5)  # let anything misrouted show up too

    assert _tags(flumen.dir("front")) == Counter({t: 5 for t in to_front})
    assert _tags(flumen.dir("back")) == Counter({t: 5 for t in to_back})
    assert _tags(flumen.dir("special")) == Counter({"frontend.special": 5})
    plain = read_events(flumen.dir("plain"))
    assert [(e["tag"], e["record"]) for e in plain] == [("app.web", {"via": "http", "path": "/app.web"})]
    everything = [e for d in ("front", "back", "special", "plain") for e in read_events(flumen.dir(d))]
    assert not [e for e in everything if "health" in e["tag"] or "log" in e["record"]], \
        "health check records must go to the null output only"

    # The null output consumed the health checks.
    samples = parse_metrics(flumen.metrics_text())
    discarded = metric_sum(samples, "flumen_output_events_total", output="discard")
    assert discarded is not None, "flumen_output_events_total{output=\"discard\"} not exposed"
    assert discarded == 2, f"null output counted {discarded} events, expected 2 (GET health check + POST /health-extra)"


def test_copy_to_several_outputs(flumen_factory):
    flumen = flumen_factory(
        forward_source()
        + file_output("a", "a")
        + file_output("b", "b", extra='compression = "gzip"')
        + """
[outputs.out]
type = "stdout"
"""
        + route(["copy.**"], ["a", "b", "out"])
    )
    _send_forward(flumen.ports["fwd"], ["copy.x", "copy.y"], per_tag=20)
    a = wait_for_events(flumen.dir("a"), 40)
    assert sorted((e["tag"], e["record"]["n"]) for e in a) == sorted(
        (t, i) for t in ("copy.x", "copy.y") for i in range(20))
    # gzip output: the file is complete once flumen closes it; stop to flush and close.
    assert flumen.stop() == 0
    b = read_events(flumen.dir("b"))
    assert sorted((e["tag"], e["time"], e["record"]["n"]) for e in b) == sorted(
        (e["tag"], e["time"], e["record"]["n"]) for e in a)
    files = [p for p in flumen.dir("b").rglob("*") if p.is_file()]
    assert files and all(p.read_bytes()[:2] == b"\x1f\x8b" for p in files), f"not all gzip: {files}"
    stdout_events = [line for line in flumen.stdout_text().splitlines() if '"copy.' in line]
    assert len(stdout_events) == 40, f"stdout output wrote {len(stdout_events)} event lines:\n{flumen.stdout_text()[-2000:]}"
