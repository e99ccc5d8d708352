"""SIGTERM ends flumen within `shutdown_timeout` whatever its senders and destinations do, and
what an output delivered before the stop is not delivered again after the restart (its cursor
was saved)."""

from __future__ import annotations

import socket
import time
from collections import Counter

from conftest import file_output, forward_source, relay_output, route
from helpers import (entries_blob, event_time, metric_sum, packb, parse_metrics,
                     read_events, read_msgpack_reply, wait_for, wait_for_events)

SHUTDOWN_TIMEOUT = 2.0
# flumen itself stops within SHUTDOWN_TIMEOUT of seeing the signal; this is for delivering the
# signal and reaping the process on a loaded CI machine.
MARGIN = 1.0
HEADER = f'data_dir = "@data@"\nshutdown_timeout = "{SHUTDOWN_TIMEOUT:g}s"\n'


def _chunk_id(i: int) -> str:
    # Long ids make long acknowledgements, which fill socket buffers after fewer frames.
    return f"chunk-{i:094d}"


def _frame(i: int, padding: int = 0) -> bytes:
    """One event with id `i` in a PackedForward frame that asks for an acknowledgement."""
    record = {"id": i, "pad": "x" * padding}
    return packb(["shutdown.test", entries_blob([(event_time(1763723821, i), record)]),
                  {"chunk": _chunk_id(i)}])


def _flood_until_stalled(sock: socket.socket, first_id: int, padding: int, limit: float = 30.0) -> int:
    """Sends frames without reading anything back until flumen stops reading (a send makes
    no progress for a second); returns the next unused id."""
    sock.settimeout(1.0)
    i = first_id
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        data = b"".join(_frame(j, padding) for j in range(i, i + 100))
        try:
            sock.sendall(data)
        except socket.timeout:
            return i + 100
        i += 100
    raise AssertionError(f"flumen kept reading for {limit}s; the test could not stall it")


def _stop_within_timeout(f) -> None:
    t0 = time.monotonic()
    code = f.stop(timeout=SHUTDOWN_TIMEOUT + MARGIN)
    took = time.monotonic() - t0
    assert code == 0, f"flumen exited with {code} after SIGTERM"
    assert took <= SHUTDOWN_TIMEOUT + MARGIN, f"shutdown took {took:.1f}s"


def _send_marker(port: int, marker_id: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(_frame(marker_id))
        assert read_msgpack_reply(s) == {"ack": _chunk_id(marker_id)}


def _assert_nothing_delivered_twice(out_dir, marker_id: int) -> None:
    """Waits for the marker sent after the restart: the output reads the log in order, so any
    redelivery of what it wrote before the stop is in its files by then."""
    wait_for(lambda: any(e["record"]["id"] == marker_id for e in read_events(out_dir)), 30,
             "the marker event sent after the restart")
    copies = Counter(e["record"]["id"] for e in read_events(out_dir))
    twice = sorted(i for i, n in copies.items() if n > 1)
    assert not twice, f"{len(twice)} events delivered again after the restart, e.g. ids {twice[:10]}"


def test_sigterm_ends_within_shutdown_timeout_when_a_sender_never_reads_its_acks(flumen_factory):
    f = flumen_factory(HEADER + forward_source()
                       + file_output("all") + route(["**"], ["all"]))
    sender = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Small buffers fill with unread acknowledgements quickly.
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sender.connect(("127.0.0.1", f.ports["fwd"]))
    try:
        next_id = _flood_until_stalled(sender, 0, padding=0)
        wait_for_events(f.dir("out"), 1, settle=0)
        _stop_within_timeout(f)
    finally:
        sender.close()
    f.start()
    _send_marker(f.ports["fwd"], next_id)
    _assert_nothing_delivered_twice(f.dir("out"), next_id)


def test_sigterm_ends_within_shutdown_timeout_when_the_log_is_full_and_a_destination_is_down(
        flumen_factory):
    sizes = '[log]\nsegment_size = "16KiB"\nmax_size = "64KiB"\npersistence = "interval"\nfsync_interval = "10ms"\n'
    outputs = forward_source(extra='max_frame_size = "8KiB"') + file_output("all")
    # The relay's destination is a port nobody listens on: it holds the log's segments.
    f = flumen_factory(HEADER + sizes + outputs
                       + relay_output("@port:down@") + route(["**"], ["all", "relay"]))
    sender = socket.create_connection(("127.0.0.1", f.ports["fwd"]), timeout=10)
    try:
        next_id = _flood_until_stalled(sender, 0, padding=200)
        wait_for(lambda: metric_sum(parse_metrics(f.metrics_text()), "flumen_log_full") == 1, 10,
                 "the log to be full")
        _stop_within_timeout(f)
    finally:
        sender.close()
    assert read_events(f.dir("out")), "the file output delivered nothing before the stop"
    # Restarted without the relay, whose cursor then no longer holds the log.
    before_relay = f.config_text.split("[outputs.relay]")[0]
    api = "[api]" + f.config_text.split("[api]")[1]
    f.config_path.write_text(before_relay + route(["**"], ["all"]) + "\n" + api)
    f.start()
    _send_marker(f.ports["fwd"], next_id)
    _assert_nothing_delivered_twice(f.dir("out"), next_id)
