"""Live streams end to end: `GET /api/v1/stream` (Server-Sent Events) read with the PyPI
`sseclient-py` client while the PyPI fluent-logger sends. Backfill then live, resume with
`Last-Event-ID` after a dropped connection and after a restart (no line missing, none twice),
a catch-up from the store, the query's filter, a bad query, the close message when flumen
stops; the npm `eventsource` client reconnecting by itself across a restart; and `flumen tail`
following across a restart."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import requests

from conftest import FLUMEN_BIN, forward_source
from helpers import (node_client_across_restart, FAST_STORE, SseReader, SERVICES, metric_sum, parse_metrics, send_numbered, wait_for,
                     wait_stored)


class Stream(SseReader):
    """One SSE connection of `query`."""

    def __init__(self, flumen, query: str, last_event_id: str | None = None, **params):
        super().__init__(flumen, {"query": query, **params}, last_event_id)

    def numbers(self) -> list[int]:
        return [e["record"]["n"] for e in self.events()]

    def wait_numbers(self, count: int, timeout: float = 20) -> list[int]:
        return wait_for(lambda: self.numbers() if len(self.numbers()) >= count else None,
                        timeout, f"{count} events on the stream")

    def last_id(self) -> str:
        return [i for kind, i, _ in self.messages if kind == "message"][-1]



def test_a_stream_sends_the_stored_events_then_the_new_ones_each_with_its_position(
        flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)
    send_numbered(flumen, range(40))
    wait_stored(flumen, 40)
    stream = Stream(flumen, "{}", limit=1000)
    assert sorted(stream.wait_numbers(40)) == list(range(40))
    send_numbered(flumen, range(40, 70))
    got = stream.wait_numbers(70)
    # The live part comes in the order it was sent, after the backfill; nothing twice.
    assert got[40:] == list(range(40, 70)), got
    assert len(got) == 70
    events = stream.events()
    ids = [i for kind, i, _ in stream.messages if kind == "message"]
    assert ids == [e["position"] for e in events]
    assert events[-1]["labels"]["service"] == SERVICES[69 % 3]
    assert events[-1]["tag"] == "app.logs"
    stream.close()


def test_a_stream_selects_what_its_query_asks_for(flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)
    stream = Stream(flumen, '{service="api"} |= "timeout"', limit=0)
    time.sleep(0.3)
    send_numbered(flumen, range(60))
    expected = [i for i in range(60) if i % 3 == 0 and i % 4 == 0]
    assert stream.wait_numbers(len(expected)) == expected
    time.sleep(0.5)
    assert stream.numbers() == expected, "nothing else arrives"
    stream.close()


def _listen_then_send(flumen, count: int) -> tuple[Stream, list[int], str]:
    """A stream of new events only, and the first `count` events sent and received on it:
    the stream, their numbers and the last id."""
    stream = Stream(flumen, "{}", limit=0)
    time.sleep(0.3)
    send_numbered(flumen, range(count))
    return stream, stream.wait_numbers(count), stream.last_id()


def test_a_client_that_reconnects_with_last_event_id_misses_nothing_and_gets_nothing_twice(
        flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)
    stream, first, last = _listen_then_send(flumen, 30)
    stream.close()
    # Sent while no one listens; then the client comes back where it was.
    send_numbered(flumen, range(30, 80))
    again = Stream(flumen, "{}", last_event_id=last)
    rest = again.wait_numbers(50)
    assert first + rest == list(range(80)), (first, rest)
    time.sleep(0.5)
    assert len(again.numbers()) == 50
    again.close()


def test_a_stream_resumes_across_a_restart_and_is_told_to_reconnect_when_flumen_stops(
        flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)
    stream, first, last = _listen_then_send(flumen, 25)
    flumen.stop()
    closes = wait_for(lambda: [d for kind, _, d in stream.messages if kind == "close"] or None,
                      10, "the close message")
    assert json.loads(closes[0]) == {"reason": "shutting down", "reconnect": True}
    stream.close()
    flumen.start()
    send_numbered(flumen, range(25, 60))
    # `?after=` does what Last-Event-ID does, for a client that cannot set the header.
    again = Stream(flumen, "{}", after=last)
    rest = again.wait_numbers(35)
    assert first + rest == list(range(60)), (first, rest)
    again.close()


def test_a_bad_query_or_position_is_refused_before_the_stream_starts(flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)
    r = requests.get(f"{flumen.api}/api/v1/stream", params={"query": '{service="api"'}, timeout=10)
    assert r.status_code == 400 and "query" in r.text
    r = requests.get(f"{flumen.api}/api/v1/stream", params={"query": "{}"},
                     headers={"Last-Event-ID": "not-a-position"}, timeout=10)
    assert r.status_code == 400 and "after" in r.text


def test_a_client_back_after_the_log_dropped_its_records_catches_up_from_the_store(
        flumen_factory):
    # Small log segments, removed as soon as the store has stored them.
    small_log = '[log]\nsegment_size = "16KiB"\nmax_size = "4MiB"\n'
    flumen = flumen_factory(small_log + forward_source(extra='max_frame_size = "64KiB"')
                            + FAST_STORE)
    stream, first, last = _listen_then_send(flumen, 10)
    stream.close()
    assert first == list(range(10))
    send_numbered(flumen, range(10, 600))
    wait_stored(flumen, 600)
    # The record of the last event seen is gone from the log by now.
    wait_for(lambda: int(last.split(".")[0]) < _first_record(flumen.metrics_text()) or None, 20,
             "the log's oldest segments removed")
    again = Stream(flumen, '{service="web"}', last_event_id=last)
    expected = [i for i in range(10, 600) if i % 3 == 1]
    assert again.wait_numbers(len(expected)) == expected
    send_numbered(flumen, range(600, 606))
    assert again.wait_numbers(len(expected) + 2)[len(expected):] == [601, 604]
    again.close()


def _first_record(metrics_text: str) -> int:
    """The oldest record the log still holds."""
    return int(metric_sum(parse_metrics(metrics_text), "flumen_log_first_sequence") or 0)


def test_flumen_tail_follows_reconnects_after_a_restart_and_prints_every_line_once(
        flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)
    send_numbered(flumen, range(20))
    wait_stored(flumen, 20)
    # The last 5 past events of one service, then stop.
    past = subprocess.run([FLUMEN_BIN, "tail", "--server", flumen.api, "--service", "api",
                           "-n", "5", "--no-follow", "-o", "json"],
                          capture_output=True, text=True, timeout=20)
    assert past.returncode == 0, past.stderr
    numbers = [json.loads(line)["record"]["n"] for line in past.stdout.splitlines()]
    assert sorted(numbers) == [i for i in range(20) if i % 3 == 0][-5:]

    tail = subprocess.Popen([FLUMEN_BIN, "tail", "--server", flumen.api, "-n", "20",
                             "-o", "json", "--level", "error"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines: list[int] = []
        reader = threading.Thread(target=lambda: lines.extend(
            json.loads(line)["record"]["n"] for line in tail.stdout), daemon=True)
        reader.start()
        errors = [i for i in range(20) if i % 5 == 0]
        wait_for(lambda: len(lines) >= len(errors) or None, 20, "the past error events")
        flumen.stop()
        flumen.start()
        send_numbered(flumen, range(20, 60))
        errors += [i for i in range(20, 60) if i % 5 == 0]
        wait_for(lambda: len(lines) >= len(errors) or None, 30, "the new error events")
        time.sleep(0.5)
        assert sorted(lines[:4]) == errors[:4] and lines[4:] == errors[4:], lines
    finally:
        tail.terminate()
        _, stderr = tail.communicate(timeout=10)
    assert "reconnecting" in stderr and "resuming after" in stderr, stderr


def test_the_npm_eventsource_client_reconnects_by_itself_and_misses_nothing(flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)
    url = f"{flumen.api}/api/v1/stream?query=" + requests.utils.quote('{service="web"}') + "&limit=0"
    # EventSource reconnects after the stream's `retry`, sending the last id it saw.
    got, stderr = node_client_across_restart(flumen, "stream.js", url)
    assert [e["n"] for e in got] == [i for i in range(60) if i % 3 == 1], (got, stderr)
    assert all(e["id"].count(".") == 1 for e in got)
    assert "close:" in stderr, stderr
