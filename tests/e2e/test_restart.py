"""Stopping and restarting on the same data directory: what was acknowledged before the stop
reaches the output after the restart, exactly once after SIGTERM, at least once after
kill -9; an output that could not write resumes where it stopped."""

from __future__ import annotations

import socket
import time

from conftest import file_output, forward_source, route
from helpers import (check_delivered, entries_blob, event_time, packb, read_events,
                     read_msgpack_reply, rfc3339_ns, wait_for, wait_for_events)

CONFIG = forward_source() + file_output("all") + route(["**"], ["all"])


def _send_acked(flumen, first_id: int, n: int, chunk_size: int = 50) -> list[dict]:
    """Sends n events as PackedForward chunks with acks; returns them once all are acked."""
    expected = []
    with socket.create_connection(("127.0.0.1", flumen.ports["fwd"]), timeout=10) as s:
        for start in range(first_id, first_id + n, chunk_size):
            evs = []
            for i in range(start, min(start + chunk_size, first_id + n)):
                rec = {"id": i, "payload": f"event {i} " + "x" * 100}
                sec, nsec = 1763723821 + i, (i * 987654321) % 1_000_000_000
                evs.append((event_time(sec, nsec), rec))
                expected.append({"tag": "restart.test", "time": rfc3339_ns(sec, nsec), "record": rec})
            s.sendall(packb(["restart.test", entries_blob(evs), {"chunk": f"c{start}"}]))
            assert read_msgpack_reply(s) == {"ack": f"c{start}"}
    return expected


def test_sigterm_and_restart_delivers_everything_exactly_once(flumen_factory):
    f = flumen_factory(CONFIG)
    expected = _send_acked(f, 0, 200)
    wait_for_events(f.dir("out"), 200, settle=0)
    # These are acknowledged but very likely not yet written when the stop comes.
    expected += _send_acked(f, 200, 2000, chunk_size=500)
    code = f.stop()
    assert code == 0, f"flumen exited with {code} after SIGTERM"
    f.start()
    expected += _send_acked(f, 2200, 100)
    got = wait_for_events(f.dir("out"), len(expected), timeout=30, settle=1.0)
    check_delivered(expected, got)


def test_output_that_cannot_write_resumes_after_restart(flumen_factory):
    # The output directory's place is taken by a regular file, so every write fails.
    f = flumen_factory(forward_source() + """
[outputs.all]
type = "file"
path = "@dir:blocked@/sub/{{tag}}.log"
batch = { max_events = 1000, max_bytes = "1MiB", timeout = "50ms" }
""" + route(["**"], ["all"]), start=False)
    blocker = f.dir("blocked") / "sub"
    blocker.write_text("not a directory\n")
    f.start()
    expected = _send_acked(f, 0, 300)
    time.sleep(1.0)
    assert f.alive(), "flumen exited while its output was failing"
    assert f.get("/healthz").status_code == 200
    t0 = time.monotonic()
    f.stop()
    assert time.monotonic() - t0 < 20
    blocker.unlink()
    f.start()
    got = wait_for_events(f.dir("blocked"), len(expected), timeout=30, settle=1.0)
    check_delivered(expected, got)


def test_kill_9_loses_nothing_acknowledged(flumen_factory):
    f = flumen_factory(CONFIG)
    expected = _send_acked(f, 0, 1000, chunk_size=100)
    f.kill()
    f.start()
    want = {e["record"]["id"] for e in expected}

    def missing():
        return sorted(want - {e["record"]["id"] for e in read_events(f.dir("out"))})

    try:
        wait_for(lambda: not missing(), 30, "every acknowledged event")
    except AssertionError:
        m = missing()
        raise AssertionError(f"{len(m)} of {len(want)} acknowledged events lost after kill -9, e.g. {m[:10]}") from None


def test_sigterm_with_idle_connections_exits_promptly(flumen_factory):
    """Long-lived sender connections (the Docker driver keeps one open for ever) must not hold
    up shutdown."""
    f = flumen_factory(CONFIG)
    _send_acked(f, 0, 10)
    idle = [socket.create_connection(("127.0.0.1", f.ports["fwd"]), timeout=10) for _ in range(3)]
    partial = socket.create_connection(("127.0.0.1", f.ports["fwd"]), timeout=10)
    partial.sendall(packb(["half", 1700000000, {"x": 1}])[:5])  # a frame that never completes
    t0 = time.monotonic()
    code = f.stop(timeout=15)
    took = time.monotonic() - t0
    assert code == 0, f"exit code {code} after SIGTERM"
    assert took < 10, f"shutdown took {took:.1f}s with idle connections open"
    for s in idle + [partial]:
        s.close()
    f.start()
    got = wait_for_events(f.dir("out"), 10)
    assert sorted(e["record"]["id"] for e in got) == list(range(10))
