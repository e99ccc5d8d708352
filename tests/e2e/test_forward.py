"""The forward input spoken by hand on raw sockets: every mode, acks, the UDP heartbeat, bad
frames that must close only their own connection; and the forward output to a second
flumen."""

from __future__ import annotations

import gzip
import re
import socket
import threading

from fluent import sender as fluent_sender

from conftest import file_output, forward_source, route
from helpers import (check_delivered, entries_blob, event_time, metric_sum, packb, parse_metrics,
                     read_msgpack_reply, rfc3339_ns, send_all_tolerant, varied_record,
                     wait_closed, wait_for, wait_for_events)


def _connect(flumen) -> socket.socket:
    return socket.create_connection(("127.0.0.1", flumen.ports["fwd"]), timeout=10)


def test_every_mode_with_ack(catch_all):
    f = catch_all
    expected = []

    def ev(i, tag, sec, nsec):
        rec = {"id": i, "mode": tag}
        expected.append({"tag": tag, "time": rfc3339_ns(sec, nsec), "record": rec})
        return rec

    with _connect(f) as s:
        # Message with chunk
        s.sendall(packb(["m.message", event_time(1700000000, 1), ev(0, "m.message", 1700000000, 1), {"chunk": "c-msg"}]))
        assert read_msgpack_reply(s) == {"ack": "c-msg"}
        # Message with an integer time and no options
        s.sendall(packb(["m.message", 1700000001, ev(1, "m.message", 1700000001, 0)]))
        # Forward
        entries = [[event_time(1700000002, i), ev(10 + i, "m.forward", 1700000002, i)] for i in range(5)]
        s.sendall(packb(["m.forward", entries, {"chunk": "c-fwd", "size": 5}]))
        assert read_msgpack_reply(s) == {"ack": "c-fwd"}
        # PackedForward
        blob = entries_blob((event_time(1700000003, 999_999_999 - i), ev(20 + i, "m.packed", 1700000003, 999_999_999 - i))
                            for i in range(5))
        s.sendall(packb(["m.packed", blob, {"chunk": "c-packed", "size": 5}]))
        assert read_msgpack_reply(s) == {"ack": "c-packed"}
        # CompressedPackedForward: several gzip members concatenated, as Fluentd sends them.
        blob1 = entries_blob((event_time(1700000004, i), ev(30 + i, "m.gz", 1700000004, i)) for i in range(3))
        blob2 = entries_blob((1700000005, ev(40 + i, "m.gz", 1700000005, 0)) for i in range(3))
        s.sendall(packb(["m.gz", gzip.compress(blob1) + gzip.compress(blob2),
                         {"chunk": "c-gz", "size": 6, "compressed": "gzip"}]))
        assert read_msgpack_reply(s) == {"ack": "c-gz"}
    got = wait_for_events(f.dir("out"), len(expected))
    check_delivered(expected, got)


def test_packed_forward_ack_is_the_chunk_id(catch_all):
    """Raw PackedForward with `chunk`: the answer is {"ack": <same id>}, and once it came the
    events are durable and delivered."""
    f = catch_all
    chunk = "p8n9gmxTQVC8/nh2wlKKeQ=="
    records = [varied_record(i) for i in range(100)]
    blob = entries_blob((event_time(1763723821, i), r) for i, r in enumerate(records))
    with _connect(f) as s:
        s.sendall(packb(["raw.packed", blob, {"chunk": chunk, "size": len(records)}]))
        reply = read_msgpack_reply(s)
    assert reply == {"ack": chunk}
    got = wait_for_events(f.dir("out"), len(records))
    check_delivered([{"tag": "raw.packed", "time": rfc3339_ns(1763723821, i), "record": r}
                     for i, r in enumerate(records)], got)


def test_udp_heartbeat_is_answered(catch_all):
    """Fluentd's out_forward (heartbeat_type udp) sends a datagram to the forward port and
    expects one back."""
    f = catch_all
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(5)
        u.sendto(b"\x00", ("127.0.0.1", f.ports["fwd"]))
        data, addr = u.recvfrom(64)
    assert addr[1] == f.ports["fwd"]


BAD_INPUT_CONFIG = (
    forward_source("fwd", 'max_frame_size = "64KiB"')
    + file_output("all")
    + route(["**"], ["all"])
)


def _rejections(flumen) -> dict[str, float]:
    """Samples that look like counters of rejected/invalid input for the forward source."""
    out = {}
    for name, labels, value in parse_metrics(flumen.metrics_text()):
        if re.search(r"reject|invalid|malformed|decode_err|error|oversize|too_large|drop", name) \
                and labels.get("source") == "fwd":
            key = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
            out[key] = value
    return out


def test_bad_frames_close_only_their_connection(flumen_factory):
    f = flumen_factory(BAD_INPUT_CONFIG)

    # A well-behaved connection stays open throughout, sending with acks in between.
    good = _connect(f)
    good_expected = []

    def send_good(i):
        rec = {"id": i, "good": True}
        good.sendall(packb(["good.conn", event_time(1700000000, i), rec, {"chunk": f"g{i}"}]))
        assert read_msgpack_reply(good) == {"ack": f"g{i}"}, f"good connection, message {i}"
        good_expected.append({"tag": "good.conn", "time": rfc3339_ns(1700000000, i), "record": rec})

    def rejected_total():
        return sum(_rejections(f).values())

    uncounted = []

    def bad_case(what, send, expect_count=1):
        before = rejected_total()
        with _connect(f) as s:
            send(s)
            wait_closed(s)
        try:
            wait_for(lambda: rejected_total() - before >= expect_count, 3, f"rejection of {what} counted")
        except AssertionError:
            uncounted.append(what)
        send_good(len(good_expected))

    send_good(0)

    # Garbage bytes (0xc1 is never valid msgpack).
    bad_case("garbage", lambda s: s.sendall(b"\xc1GET / HTTP/1.1\r\n\r\n" + b"\xc1" * 100))
    # Valid msgpack, not a forward frame.
    bad_case("valid msgpack, not a frame", lambda s: s.sendall(packb({"not": "a frame"}) + packb(42)))

    # A truncated frame, then we close our side: the partial event must not be stored.
    def truncated(s):
        frame = packb(["bad.truncated", event_time(1700000000, 0), {"id": "truncated", "x": "y" * 100}])
        s.sendall(frame[: len(frame) // 2])
        s.shutdown(socket.SHUT_WR)
    bad_case("truncated frame", truncated)

    # A frame larger than max_frame_size (64KiB).
    bad_case("oversized frame", lambda s: send_all_tolerant(
        s, packb(["bad.oversized", event_time(1700000000, 0), {"id": "oversized", "x": "y" * 200_000}])))

    # A gzip member that is small on the wire but inflates far past the limit.
    blob = entries_blob((event_time(1700000000, i), {"id": f"bomb{i}", "x": "z" * 1_000_000}) for i in range(20))
    bomb = gzip.compress(blob, 9)
    assert len(bomb) < 64 * 1024 // 2, len(bomb)
    bad_case("gzip bomb", lambda s: send_all_tolerant(
        s, packb(["bad.gzip", bomb, {"compressed": "gzip", "chunk": "bomb"}])))

    # Many connections at once each sending garbage, while the good one keeps going.
    before = rejected_total()
    socks = [_connect(f) for _ in range(20)]
    for s in socks:
        send_all_tolerant(s, b"\xc1" * 10)
    for s in socks:
        wait_closed(s)
        s.close()
    try:
        wait_for(lambda: rejected_total() - before >= 20, 3, "20 rejections counted")
    except AssertionError:
        uncounted.append("20 concurrent garbage connections")
    send_good(len(good_expected))
    good.close()

    assert f.alive(), "flumen exited"
    assert f.get("/readyz").status_code == 200
    got = wait_for_events(f.dir("out"), len(good_expected))
    check_delivered(good_expected, got)  # nothing from the bad connections got in

    names = sorted({n for n, _, _ in parse_metrics(f.metrics_text())})
    assert not uncounted, (
        f"/metrics did not count these rejections in a counter with source=\"fwd\" named like "
        f"reject/invalid/error: {uncounted}; counters now: {_rejections(f)}; all metric names: {names}")


def test_concurrent_senders_lose_nothing(catch_all):
    """8 connections sending PackedForward chunks with acks at the same time."""
    f = catch_all
    per_conn, chunks = 5, 10
    expected, errors = [], []
    lock = threading.Lock()

    def sender(c):
        try:
            with _connect(f) as s:
                for k in range(chunks):
                    evs = []
                    for j in range(per_conn * 10):
                        rid = f"{c}-{k}-{j}"
                        evs.append((event_time(1700000000 + k, j), {"id": rid, "conn": c}))
                    s.sendall(packb([f"conc.{c}", entries_blob(evs), {"chunk": f"{c}-{k}"}]))
                    assert read_msgpack_reply(s) == {"ack": f"{c}-{k}"}
                    with lock:
                        expected.extend({"tag": f"conc.{c}", "time": rfc3339_ns(1700000000 + k, j),
                                         "record": r} for j, (t, r) in enumerate(evs))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=sender, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    got = wait_for_events(f.dir("out"), len(expected), timeout=30)
    check_delivered(expected, got)


def test_forward_output_to_second_flumen_with_ack(flumen_factory):
    receiver = flumen_factory(forward_source() + file_output("all") + route(["**"], ["all"]), name="receiver")
    relay = flumen_factory(
        forward_source()
        + f"""
[outputs.relay]
type = "forward"
servers = [{{ address = "127.0.0.1:{receiver.ports['fwd']}", weight = 1 }}]
require_ack = true
"""
        + route(["**"], ["relay"]),
        name="relay",
    )
    n = 300
    expected = []
    s = fluent_sender.FluentSender("relayed", host="127.0.0.1", port=relay.ports["fwd"],
                                   nanosecond_precision=True, timeout=10)
    try:
        for i in range(n):
            rec = varied_record(i)
            sec, nsec = 1763723821 + i, (i * 123456789) % 1_000_000_000
            assert s.emit_with_time(f"t{i % 4}", fluent_sender.EventTime(sec, nsec), rec), s.last_error
            expected.append({"tag": f"relayed.t{i % 4}", "time": rfc3339_ns(sec, nsec), "record": rec})
    finally:
        s.close()
    got = wait_for_events(receiver.dir("out"), n, timeout=30)
    check_delivered(expected, got)
    sent = lambda: metric_sum(parse_metrics(relay.metrics_text()), "flumen_output_events_total", output="relay")
    try:
        wait_for(lambda: sent() == n, 5, "relay output counter")
    except AssertionError:
        raise AssertionError(f'flumen_output_events_total{{output="relay"}} = {sent()}, expected {n}') from None
