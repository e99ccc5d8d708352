"""The file output's path template (tag and strftime of the event time), size rotation, and what a
file that cannot be written does to the events around it."""

from __future__ import annotations

import gzip
import json
import socket

import msgpack

from conftest import forward_source, route
from helpers import (check_delivered, entries_blob, event_time, packb, read_msgpack_reply,
                     read_output_lines, rfc3339_ns, wait_for, wait_for_events)


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


def test_a_tag_too_long_for_a_file_name_is_dead_lettered_at_once_and_other_lines_written_once(flumen_factory):
    f = flumen_factory(forward_source() + """
[outputs.files]
type = "file"
path = "@dir:out@/{{tag}}.log"
compression = "gzip"
batch = { max_events = 1000, max_bytes = "1MiB", timeout = "300ms" }
""" + route(["**"], ["files"]))
    long_tag = "t" * 300  # `<tag>.log.gz` is over the 255 bytes a file name can have
    chunks = [("good", range(0, 10)), (long_tag, range(10, 20)), ("good", range(20, 30))]
    # One write, so that the output most likely takes all three in one delivery.
    with socket.create_connection(("127.0.0.1", f.ports["fwd"]), timeout=10) as s:
        s.sendall(b"".join(
            packb([tag, entries_blob((event_time(1763723821 + i, 0), {"id": i}) for i in ids), {"chunk": f"c{ids[0]}"}])
            for tag, ids in chunks))
        s.settimeout(10)
        unpacker = msgpack.Unpacker(raw=False)
        acks: list = []
        while len(acks) < len(chunks):
            data = s.recv(65536)
            assert data, f"connection closed after acks {acks}"
            unpacker.feed(data)
            acks.extend(unpacker)
    assert acks == [{"ack": f"c{ids[0]}"} for _, ids in chunks]

    # The default retry budget is an hour: only an error known to be permanent is dead-lettered
    # within this wait.
    dead_letter_file = f.data_dir / "dead-letter" / "files.jsonl"
    dead = wait_for(lambda: dead_letter_file.exists() and len(dead_letter_file.read_text().splitlines()) >= 10
                    and [json.loads(line) for line in dead_letter_file.read_text().splitlines()],
                    15, "the long tag's events in the dead letters")
    assert [e["record"]["id"] for e in dead] == list(range(10, 20))
    assert {e["tag"] for e in dead} == {long_tag}
    assert "too long" in dead[0]["error"], dead[0]["error"]

    good = wait_for_events(f.dir("out"), 20)
    assert sorted(e["record"]["id"] for e in good) == [*range(0, 10), *range(20, 30)], "each good line once"
    # Readable to its end: the failed file left nothing behind in it.
    text = gzip.decompress((f.dir("out") / "good.log.gz").read_bytes()).decode()
    assert len(text.splitlines()) == 20
