"""The HTTP input, as Fluentd's in_http users call it: tag from the path, JSON, JSON arrays,
NDJSON, msgpack, form fields, `time=` and GET with `json=`."""

from __future__ import annotations

import json
import urllib.parse

import msgpack
import requests

from helpers import rfc3339_ns, wait_for_events


def _url(flumen, path):
    return f"http://127.0.0.1:{flumen.ports['web']}{path}"


def _ok(r):
    assert r.status_code == 200, f"{r.request.method} {r.request.url}: HTTP {r.status_code}: {r.text[:500]}"


def test_every_body_kind(catch_all):
    f = catch_all
    post = lambda path, **kw: requests.post(_url(f, path), timeout=10, **kw)
    expected = []  # (tag, record)

    _ok(post("/json/object", json={"k": "object", "n": 1, "nested": {"x": [1, 2.5, None, True]}}))
    expected.append(("json.object", {"k": "object", "n": 1, "nested": {"x": [1, 2.5, None, True]}}))

    batch = [{"k": "array", "n": i} for i in range(25)]
    _ok(post("/json/array", json=batch))
    expected += [("json.array", r) for r in batch]

    ndjson = [{"k": "ndjson", "n": i, "s": "ü\n"} for i in range(10)]
    _ok(post("/nd/json", data="".join(json.dumps(r) + "\n" for r in ndjson).encode(),
             headers={"Content-Type": "application/x-ndjson"}))
    expected += [("nd.json", r) for r in ndjson]

    _ok(post("/mp/one", data=msgpack.packb({"k": "msgpack", "bin_safe": "日本"}),
             headers={"Content-Type": "application/msgpack"}))
    expected.append(("mp.one", {"k": "msgpack", "bin_safe": "日本"}))

    mp_batch = [{"k": "msgpack-array", "n": i} for i in range(5)]
    _ok(post("/mp/many", data=msgpack.packb(mp_batch), headers={"Content-Type": "application/msgpack"}))
    expected += [("mp.many", r) for r in mp_batch]

    _ok(post("/form/json", data={"json": json.dumps({"k": "form-json", "n": 7})}))
    expected.append(("form.json", {"k": "form-json", "n": 7}))

    # msgpack= form field: raw msgpack bytes, percent-encoded as Fluentd's in_http expects.
    body = "msgpack=" + urllib.parse.quote_from_bytes(msgpack.packb({"k": "form-msgpack", "n": 8}))
    _ok(post("/form/msgpack", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}))
    expected.append(("form.msgpack", {"k": "form-msgpack", "n": 8}))

    q = urllib.parse.quote(json.dumps({"k": "get", "log": "health check"}))
    _ok(requests.get(_url(f, f"/get/tag?json={q}"), timeout=10))
    expected.append(("get.tag", {"k": "get", "log": "health check"}))

    got = wait_for_events(f.dir("out"), len(expected))
    assert sorted(json.dumps([e["tag"], e["record"]], sort_keys=True) for e in got) == sorted(
        json.dumps([t, r], sort_keys=True) for t, r in expected)


def test_time_parameter(catch_all):
    f = catch_all
    _ok(requests.post(_url(f, "/t/float?time=1700000000.5"), json={"k": "float"}, timeout=10))
    _ok(requests.post(_url(f, "/t/int?time=1700000001"), json={"k": "int"}, timeout=10))
    _ok(requests.post(_url(f, "/t/array?time=1700000002.25"), json=[{"k": "a0"}, {"k": "a1"}], timeout=10))
    got = {e["record"]["k"]: e for e in wait_for_events(f.dir("out"), 4)}
    assert got["float"]["time"] == rfc3339_ns(1700000000, 500_000_000)
    assert got["int"]["time"] == rfc3339_ns(1700000001, 0)
    assert got["a0"]["time"] == got["a1"]["time"] == rfc3339_ns(1700000002, 250_000_000)
    assert got["float"]["tag"] == "t.float"


def test_bad_bodies_get_400_with_reason_and_do_not_stop_later_requests(catch_all):
    f = catch_all
    bad = [
        ("invalid JSON", dict(data=b'{"k": ', headers={"Content-Type": "application/json"})),
        ("JSON scalar", dict(data=b"42", headers={"Content-Type": "application/json"})),
        ("array of non-objects", dict(data=b'[1, 2]', headers={"Content-Type": "application/json"})),
        ("bad ndjson line", dict(data=b'{"ok": 1}\nnot json\n', headers={"Content-Type": "application/x-ndjson"})),
        ("invalid msgpack", dict(data=b"\xc1\xc1\xc1", headers={"Content-Type": "application/msgpack"})),
        ("bad json form field", dict(data={"json": "{nope"})),
    ]
    for what, kw in bad:
        r = requests.post(_url(f, "/bad/body"), timeout=10, **kw)
        assert r.status_code == 400, f"{what}: expected 400, got {r.status_code}: {r.text[:300]}"
        assert r.text.strip(), f"{what}: 400 without a reason in the body"
        _ok(requests.post(_url(f, "/good/after"), json={"after": what}, timeout=10))
    got = wait_for_events(f.dir("out"), len(bad))
    assert sorted(e["record"]["after"] for e in got) == sorted(w for w, _ in bad), \
        f"events stored: {[(e['tag'], e['record']) for e in got]}"
    assert all(e["tag"] == "good.after" for e in got)
    assert f.alive()
