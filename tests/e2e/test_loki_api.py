"""Loki's read API answers in the shapes of Loki's own documentation.

The example responses of Loki's HTTP API reference (`docs/sources/reference/loki-http-api.md`
in grafana/loki; copied, with the commit, under `data/loki_api/`, see `SOURCES.md` there) are
compared with flumen's answers to the same kind of request, recursively: the same keys where
the example shows keys, the same JSON types (a stream entry is `[string ns, string line]`, a
matrix sample `[number seconds, string value]`), the same `status` and `resultType`. The
values the reference annotates (`<string: nanosecond unix epoch>`, `<number: second unix
epoch>`, the order of `values`) are checked against the events sent.

One flumen serves the whole module: events are sent once over Forward (with the PyPI
fluent-logger) with the labels `service`, `level` and `environment`, and the tests wait
(bounded) until the store has them all.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from fluent import sender as fluent_sender

from conftest import Flumen, forward_source
from helpers import wait_for

DATA = Path(__file__).resolve().parent / "data" / "loki_api"

STORE = """
[store]
flush_interval = "100ms"
"""

SERVICES = ["api", "web", "billing"]
LEVELS = ["info", "warn", "error"]
ENVIRONMENTS = ["prod", "dev"]
COUNT = 120
NS = 1_000_000_000


def example(name: str) -> Any:
    return json.loads((DATA / f"{name}.json").read_text())


# ---------------------------------------------------------------------------------------
# The shape comparison

# Objects whose keys are label names: the example's keys are only examples (`job`,
# `filename`), so only "an object of strings" is compared. Paths have their indices as `[]`.
LABEL_MAPS = {"data.result[].stream", "data.result[].metric", "data[]"}

# Arrays that are tuples (each position its own type, a fixed length); every other array is a
# list of items shaped like the example's first item.
TUPLES = {"data.result[].values[]", "data.result[].value"}

# Keys whose values must be the example's, not only of its type.
EXACT_VALUES = {"status", "resultType"}

# Keys flumen may add to an object the example shows, judged harmless (a client reading the
# documented keys is not confused by them), by path. None so far: any key the documentation
# does not show is reported.
HARMLESS_EXTRA_KEYS: dict[str, set[str]] = {}


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"  # JSON has one number type: 1588889221 and 1588889221.5 are alike
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _norm(path: str) -> str:
    return re.sub(r"\[\d+\]", "[]", path)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def shape_differences(doc: Any, ours: Any, path: str = "") -> list[str]:
    """Every way `ours` is not shaped like `doc` (the documentation's example), as
    `path: what` lines."""
    where = path or "(top)"
    if json_type(doc) != json_type(ours):
        return [f"{where}: the documentation has {json_type(doc)} ({_short(doc)}), "
                f"flumen has {json_type(ours)} ({_short(ours)})"]
    norm = _norm(path)
    diffs: list[str] = []
    if isinstance(doc, dict):
        if norm in LABEL_MAPS:
            for key, value in ours.items():
                if not isinstance(value, str):
                    diffs.append(f"{_join(path, key)}: a label value must be a string, "
                                 f"flumen has {json_type(value)} ({_short(value)})")
            return diffs
        if not doc:
            return diffs  # `{ ... }` in the documentation: an object, contents not shown
        for key in doc:
            if key not in ours:
                diffs.append(f"{_join(path, key)}: the documentation has this key "
                             f"({json_type(doc[key])}), flumen's answer lacks it")
        for key in ours:
            if key not in doc and key not in HARMLESS_EXTRA_KEYS.get(norm, set()):
                diffs.append(f"{_join(path, key)}: flumen has this key ({_short(ours[key])}), "
                             f"the documentation does not")
        for key in doc:
            if key in ours:
                diffs.extend(shape_differences(doc[key], ours[key], _join(path, key)))
        return diffs
    if isinstance(doc, list):
        if norm in TUPLES:
            if len(doc) != len(ours):
                return [f"{where}: the documentation has a {len(doc)}-tuple ({_short(doc)}), "
                        f"flumen has {len(ours)} items ({_short(ours)})"]
            for i, (d, o) in enumerate(zip(doc, ours)):
                diffs.extend(shape_differences(d, o, f"{path}[{i}]"))
            return diffs
        if doc:
            for i, item in enumerate(ours):
                diffs.extend(shape_differences(doc[0], item, f"{path}[{i}]"))
        return diffs
    key = path.rsplit(".", 1)[-1]
    if key in EXACT_VALUES and doc != ours:
        diffs.append(f"{where}: the documentation has {doc!r}, flumen has {ours!r}")
    return diffs


def assert_same_shape(doc: Any, ours: Any, path: str = "") -> None:
    diffs = shape_differences(doc, ours, path)
    assert not diffs, (f"{len(diffs)} shape difference(s) from Loki's documented example:\n  "
                       + "\n  ".join(_dedupe(diffs)) + f"\nflumen's answer: {_short(ours, 1500)}")


def _dedupe(diffs: list[str]) -> list[str]:
    """The same difference at many indices is reported once, with how often it occurred."""
    counts: dict[str, int] = {}
    for d in diffs:
        counts[_norm(d)] = counts.get(_norm(d), 0) + 1
    return [d if n == 1 else f"{d}  (x{n})" for d, n in counts.items()]


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


def test_assert_same_shape_reports_what_differs():
    """The comparison itself: what it accepts and what it reports."""
    doc = example("query_range_streams")
    ours = {"status": "success", "data": {"resultType": "streams", "stats": {"x": 1}, "result": [
        {"stream": {"service": "api"}, "values": [["1", "a"], ["2", "b"], ["3", "c"]]}]}}
    assert shape_differences(doc, ours) == []
    assert shape_differences(doc, {**ours, "data": {**ours["data"], "result": []}}) == []

    def diffs_of(change) -> list[str]:
        body = json.loads(json.dumps(ours))
        change(body)
        return shape_differences(doc, body)

    assert diffs_of(lambda b: b["data"].pop("stats")) == [
        "data.stats: the documentation has this key (object), flumen's answer lacks it"]
    assert diffs_of(lambda b: b["data"].update(extra=1)) == [
        "data.extra: flumen has this key (1), the documentation does not"]
    assert diffs_of(lambda b: b.update(status="error")) == [
        "status: the documentation has 'success', flumen has 'error'"]
    assert diffs_of(lambda b: b["data"].update(resultType="matrix")) == [
        "data.resultType: the documentation has 'streams', flumen has 'matrix'"]
    assert diffs_of(lambda b: b["data"]["result"][0]["values"][1].__setitem__(0, 2)) == [
        "data.result[0].values[1][0]: the documentation has string (\"1569266497240578000\"), "
        "flumen has number (2)"]
    assert diffs_of(lambda b: b["data"]["result"][0]["values"][0].append({})) == [
        "data.result[0].values[0]: the documentation has a 2-tuple "
        "([\"1569266497240578000\", \"foo\"]), flumen has 3 items ([\"1\", \"a\", {}])"]
    assert diffs_of(lambda b: b["data"]["result"][0]["stream"].update(n=1)) == [
        "data.result[0].stream.n: a label value must be a string, flumen has number (1)"]
    [null_result] = diffs_of(lambda b: b["data"].update(result=None))
    assert null_result.startswith("data.result: the documentation has array (")
    assert null_result.endswith("flumen has null (null)")
    # Matrix samples: a number of seconds and a string, whether the number is whole or not.
    matrix = example("query_range_matrix")
    sample = {"status": "success", "data": {"resultType": "matrix", "stats": {}, "result": [
        {"metric": {}, "values": [[1.5, "1"], [2, "2"]]}]}}
    assert shape_differences(matrix, sample) == []
    sample["data"]["result"][0]["values"][0] = ["1.5", 1]
    assert len(shape_differences(matrix, sample)) == 2
    # Labels: a list of strings of any length.
    assert shape_differences(example("labels"), {"status": "success", "data": ["a"]}) == []
    assert shape_differences(example("labels"), {"status": "success", "data": [1]}) == [
        "data[0]: the documentation has string (\"foo\"), flumen has number (1)"]


# ---------------------------------------------------------------------------------------
# One flumen with events for the whole module


class Sent:
    """What was sent: every event's time (ns), labels and line."""

    def __init__(self):
        self.events: list[dict] = []
        self.now = 0

    def matching(self, **labels) -> list[dict]:
        return [e for e in self.events if all(e[k] == v for k, v in labels.items())]


@pytest.fixture(scope="module")
def loki_flumen(tmp_path_factory):
    inst = Flumen("flumen", tmp_path_factory.mktemp("loki_api") / "flumen", forward_source() + STORE)
    inst.start()
    sent = Sent()
    try:
        now = int(time.time())
        sent.now = now
        s = fluent_sender.FluentSender("app", host="127.0.0.1", port=inst.ports["fwd"], timeout=10,
                                       nanosecond_precision=True)
        try:
            for i in range(COUNT):
                labels = {"service": SERVICES[i % 3], "level": LEVELS[(i // 3) % 3],
                          "environment": ENVIRONMENTS[i % 2]}
                line = f"request {i} {'upstream timeout' if i % 5 == 0 else 'ok'}"
                # Spread over the last ten minutes, a quarter of a second past the second
                # (fluent-logger's EventTime keeps the 250000000 ns exactly).
                t = now - 600 + 5 * i + 0.25
                record = {**labels, "message": line, "n": i, "deployment_id": f"d-{i % 4}"}
                assert s.emit_with_time("logs", t, record), s.last_error
                sent.events.append({**labels, "tag": "app.logs", "n": i, "line": line,
                                    "time_ns": (now - 600 + 5 * i) * NS + 250_000_000})
        finally:
            s.close()

        def stored():
            r = requests.get(f"{inst.api}/api/v1/query",
                             params={"query": "{}", "since": "1h", "limit": 5000}, timeout=10)
            if r.status_code != 200:
                return None
            return len(r.text.splitlines()) - 1 >= COUNT
        wait_for(stored, 30, f"{COUNT} events stored")
        yield inst, sent
    finally:
        inst.stop()


@pytest.fixture
def flumen(request, loki_flumen):
    inst, sent = loki_flumen
    request.node._flumen_instances = [inst]  # its stderr in the report of a failing test
    return inst, sent


def get(inst: Flumen, path: str, params) -> dict:
    r = requests.get(f"{inst.api}/loki/api/v1{path}", params=params, timeout=15)
    assert r.status_code == 200, f"GET /loki/api/v1{path} {params!r}: HTTP {r.status_code}: {r.text[:500]}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    return r.json()


def window(sent: Sent) -> dict:
    """start and end (nanosecond Unix epochs, as the reference describes them) around every
    event sent."""
    return {"start": (sent.now - 900) * NS, "end": (sent.now + 60) * NS}


def is_ns_epoch(text: Any) -> bool:
    return isinstance(text, str) and text.isdigit() and len(text) == 19


# ---------------------------------------------------------------------------------------
# query_range


@pytest.mark.parametrize("direction", [None, "backward", "forward"])
def test_query_range_streams_is_shaped_like_the_documented_example(flumen, direction):
    inst, sent = flumen
    params = {"query": '{service="api"}', "limit": 1000, **window(sent)}
    if direction:
        params["direction"] = direction
    body = get(inst, "/query_range", params)
    assert_same_shape(example("query_range_streams"), body)

    result = body["data"]["result"]
    want = sent.matching(service="api")
    got = [(s["stream"], v) for s in result for v in s["values"]]
    assert len(got) == len(want)
    by_line = {e["line"]: e for e in want}
    for stream, (ns, line) in got:
        assert is_ns_epoch(ns), f"<string: nanosecond unix epoch> expected, got {ns!r}"
        event = by_line[line]
        assert int(ns) == event["time_ns"], (line, ns, event["time_ns"])
        for label in ("service", "level", "environment"):
            assert stream.get(label) == event[label], (stream, event)
    # "The most recent item is first when using direction=backward. The oldest item is first
    # when using direction=forward." (the default is backward)
    for stream in result:
        times = [int(ns) for ns, _ in stream["values"]]
        assert times == sorted(times, reverse=direction != "forward"), stream


def test_query_range_matrix_is_shaped_like_the_documented_example(flumen):
    inst, sent = flumen
    # The documentation's example query, with this module's labels.
    start, end = sent.now - 900, sent.now + 60
    body = get(inst, "/query_range", {"query": 'sum(rate({service=~".+"}[10m])) by (level)',
                                      "start": start * NS, "end": end * NS, "step": "300"})
    assert_same_shape(example("query_range_matrix"), body)

    result = body["data"]["result"]
    assert sorted(s["metric"].get("level") for s in result) == sorted(LEVELS)
    for series in result:
        times = [t for t, _ in series["values"]]
        # <number: second unix epoch>, "sorted by timestamp, and the oldest item is first",
        # on the grid start + k * step.
        assert times == sorted(times) and len(set(times)) == len(times), series
        for t, v in series["values"]:
            assert start <= t <= end, f"{t} is not a second Unix epoch within [{start}, {end}]"
            assert (t - start) % 300 == 0, f"{t} is not start + k * step ({start} + k * 300)"
            assert math.isfinite(float(v)), v


# ---------------------------------------------------------------------------------------
# query


def test_query_vector_is_shaped_like_the_documented_example(flumen):
    inst, sent = flumen
    at = sent.now + 1
    body = get(inst, "/query", {"query": 'sum(rate({service=~".+"}[10m])) by (level)',
                                "time": at * NS})
    assert_same_shape(example("query_vector"), body)

    result = body["data"]["result"]
    assert sorted(s["metric"].get("level") for s in result) == sorted(LEVELS)
    for sample in result:
        t, v = sample["value"]
        assert t == at, f"<number: second unix epoch> of the query's time {at} expected, got {t!r}"
        assert float(v) > 0, sample


def test_a_log_query_at_one_instant_gets_400_as_documented(flumen):
    """The reference: "Instant queries are only used for metric type LogQL queries and will
    return a 400 (Bad Request) in case a log type query is provided"."""
    inst, sent = flumen
    r = requests.get(f"{inst.api}/loki/api/v1/query",
                     params={"query": '{service="web"}', "time": (sent.now + 1) * NS}, timeout=10)
    assert r.status_code == 400, r.text
    assert "instant" in r.text


QUERIES = {
    "query_range streams": ("/query_range", {"query": '{service="api"}'}),
    "query_range matrix": ("/query_range", {"query": 'sum(rate({service=~".+"}[10m])) by (level)',
                                            "step": "300"}),
    "query vector": ("/query", {"query": 'sum(rate({service=~".+"}[10m])) by (level)'}),
}


@pytest.mark.parametrize("kind", list(QUERIES))
def test_query_answers_carry_the_documented_statistics(flumen, kind):
    """Every example of `query` and `query_range` has `data.stats`; the "Statistics" section
    shows all of them."""
    inst, sent = flumen
    path, params = QUERIES[kind]
    params = {**params, **(window(sent) if path == "/query_range" else {"time": (sent.now + 1) * NS})}
    body = get(inst, path, params)
    data = body.get("data")
    assert isinstance(data, dict), body
    assert "stats" in data, (f"{kind}: data.stats is missing (Loki's examples have it); "
                             f"data has only {sorted(data)}")
    assert_same_shape(example("statistics")["data"]["stats"], data["stats"], "data.stats")


# ---------------------------------------------------------------------------------------
# labels, label values, series


def test_labels_are_shaped_like_the_documented_example(flumen):
    inst, sent = flumen
    body = get(inst, "/labels", window(sent))
    assert_same_shape(example("labels"), body)
    assert {"service", "level", "environment"} <= set(body["data"]), body


def test_label_values_are_shaped_like_the_documented_example(flumen):
    inst, sent = flumen
    body = get(inst, "/label/service/values", window(sent))
    assert_same_shape(example("label_values"), body)
    assert sorted(body["data"]) == sorted(SERVICES), body


def test_series_is_shaped_like_the_documented_example(flumen):
    inst, sent = flumen
    w = window(sent)
    # Two match[] as in the documentation's example.
    body = get(inst, "/series", [("match[]", '{service="api", level="error"}'),
                                 ("match[]", '{service="web"}'), ("start", w["start"]),
                                 ("end", w["end"])])
    assert_same_shape(example("series"), body)
    got = sorted((s.get("service"), s.get("level"), s.get("environment")) for s in body["data"])
    want = sorted({(e["service"], e["level"], e["environment"])
                   for e in sent.events
                   if (e["service"], e["level"]) == ("api", "error") or e["service"] == "web"})
    assert got == want, body


# ---------------------------------------------------------------------------------------
# index/stats, index/volume


def test_index_stats_are_shaped_like_the_documented_example(flumen):
    inst, sent = flumen
    body = get(inst, "/index/stats", {"query": '{service="billing"}', **window(sent)})
    assert_same_shape(example("index_stats"), body)
    billing = sent.matching(service="billing")
    assert body["entries"] == len(billing), body
    assert body["streams"] == len({(e["level"], e["environment"]) for e in billing}), body
    assert body["chunks"] >= 1 and body["bytes"] > 0, body


def test_index_volume_is_a_vector_like_the_documented_one(flumen):
    """No example in the reference: it says "a Prometheus style vector response", which
    `index_volume.json` is (the `query` vector example without `stats`)."""
    inst, sent = flumen
    body = get(inst, "/index/volume", {"query": '{service=~".+"}', **window(sent)})
    assert_same_shape(example("index_volume"), body)
    result = body["data"]["result"]
    # "aggregate into series consisting of all matches for labels included in the query"
    assert sorted(json.dumps(s["metric"]) for s in result) == sorted(
        json.dumps({"service": s}) for s in SERVICES), result
    for sample in result:
        t, v = sample["value"]
        assert isinstance(t, (int, float)) and 1e9 < t < 1e10, f"seconds expected: {t!r}"
        assert int(v) > 0, sample


# ---------------------------------------------------------------------------------------
# Nothing found: the same shapes, empty


EMPTY = {
    "query_range streams": ("/query_range", {"query": '{service="none"}'}, "query_range_streams"),
    "query_range matrix": ("/query_range", {"query": 'sum(rate({service="none"}[10m])) by (level)',
                                            "step": "300"}, "query_range_matrix"),
    "query vector": ("/query", {"query": 'sum(rate({service="none"}[10m])) by (level)'},
                     "query_vector"),
    "labels": ("/labels", {}, "labels"),
    "label values": ("/label/service/values", {}, "label_values"),
    "series": ("/series", {"match[]": '{service="none"}'}, "series"),
    "index/stats": ("/index/stats", {"query": '{service="none"}'}, "index_stats"),
    "index/volume": ("/index/volume", {"query": '{service="none"}'}, "index_volume"),
}


@pytest.mark.parametrize("kind", list(EMPTY))
def test_an_empty_answer_keeps_the_documented_shape(flumen, kind):
    """Nothing matches (or an hour long ago for labels): empty lists (never null or missing),
    zeros, with every documented key."""
    inst, sent = flumen
    path, params, name = EMPTY[kind]
    long_ago = (sent.now - 86400 * 3) * NS
    params = {**params, **({"time": long_ago} if path == "/query"
                           else {"start": long_ago, "end": long_ago + 3600 * NS})}
    body = get(inst, path, params)
    assert_same_shape(example(name), body)
    if name == "index_stats":
        assert body == {"streams": 0, "chunks": 0, "entries": 0, "bytes": 0}, body
    else:
        data = body["data"]
        assert (data if isinstance(data, list) else data["result"]) == [], body
