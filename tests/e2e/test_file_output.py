"""The file output's path template (tag and strftime of the event time) and size rotation."""

from __future__ import annotations

import socket

from conftest import forward_source, route
from helpers import (check_delivered, entries_blob, event_time, packb, read_msgpack_reply,
                     read_output_lines, rfc3339_ns, wait_for_events)


def _send(flumen, tag, events):
    with socket.create_connection(("127.0.0.1", flumen.ports["fwd"]), timeout=10) as s:
        s.sendall(packb([tag, entries_blob((event_time(sec, nsec), r) for sec, nsec, r in events), {"chunk": "c"}]))
        assert read_msgpack_reply(s) == {"ack": "c"}


def test_path_uses_tag_and_event_time(flumen_factory):
    f = flumen_factory(forward_source() + """
[outputs.dated]
type = "file"
path = "@dir:out@/%Y/%m/%d/{{tag}}-%H.log"
batch = { max_events = 1000, max_bytes = "1MiB", timeout = "50ms" }
""" + route(["**"], ["dated"]))
    # 2026-11-21T23:59:59.999999999Z, one nanosecond later (the next day), 2024-02-29T12:00Z.
    day1 = 1795305599
    events = [(day1, 999_999_999, {"id": 1}), (day1 + 1, 0, {"id": 2}), (1709208000, 5, {"id": 3})]
    _send(f, "dated.app", events)
    got = wait_for_events(f.dir("out"), 3)
    check_delivered([{"tag": "dated.app", "time": rfc3339_ns(s, n), "record": r} for s, n, r in events], got)
    where = {e["record"]["id"]: str(p.relative_to(f.dir("out"))) for p, e in read_output_lines(f.dir("out"))}
    assert where == {
        1: "2026/11/21/dated.app-23.log",
        2: "2026/11/22/dated.app-00.log",
        3: "2024/02/29/dated.app-12.log",
    }, where


def test_rotate_size_splits_files_and_keeps_every_event(flumen_factory):
    f = flumen_factory(forward_source() + """
[outputs.rotated]
type = "file"
path = "@dir:out@/{{tag}}.log"
rotate_size = "16KiB"
batch = { max_events = 50, max_bytes = "1MiB", timeout = "50ms" }
""" + route(["**"], ["rotated"]))
    n = 600
    events = [(1763723821 + i, i, {"id": i, "pad": "p" * 200}) for i in range(n)]
    for k in range(0, n, 100):
        _send(f, "rot.app", events[k:k + 100])
    got = wait_for_events(f.dir("out"), n)
    check_delivered([{"tag": "rot.app", "time": rfc3339_ns(s, ns), "record": r} for s, ns, r in events], got)
    files = sorted(p for p in f.dir("out").rglob("*") if p.is_file())
    assert len(files) >= 5, f"600 events of ~300 bytes with rotate_size 16KiB gave {len(files)} files: {files}"
    too_big = [(p.name, p.stat().st_size) for p in files if p.stat().st_size > 2 * 16 * 1024]
    assert not too_big, f"files far over rotate_size: {too_big}"
