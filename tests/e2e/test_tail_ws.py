"""Live streams over WebSocket end to end: `GET /api/v1/tail` and Loki's `GET /loki/api/v1/tail`
read with the PyPI `websockets` client (and the npm `ws` client, `node/tail_ws.js`) while the
PyPI fluent-logger sends. Backfill then live with a query's filter; resuming with `after=` after
a dropped connection and after a restart (close 1012); the close codes of a bad request (4400)
and of too many streams (4429, and HTTP 429 on the SSE endpoint); Loki's frames; a slow reader
during a burst, let go by the hub, still getting every line in order; 1,000 subscribers with
mixed queries; and `curl -N` on the SSE endpoint."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import time
from urllib.parse import quote, urlencode

import pytest
import requests
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from conftest import forward_source
from helpers import (node_client_across_restart, FAST_STORE, async_wait_for, metric_sum, numbered_record,
                     parse_metrics, send_numbered, send_records, wait_for, wait_stored)


def position(text: str) -> tuple[int, int]:
    """A log position, "RECORD.INDEX", as a pair that sorts as positions do."""
    record, index = text.split(".")
    return int(record), int(index)


def ws_url(flumen, path: str, **params) -> str:
    return f"ws://127.0.0.1:{flumen.ports['api']}{path}?{urlencode(params)}"


class Tail:
    """One WebSocket client of a live stream. A task reads every text frame (JSON) into
    `frames` until the stream ends, and then keeps the close code and its JSON reason (code
    1006 when the connection ended with no close frame). Clearing `reading` stops the reading
    until it is set again; `pause_every` frames, the reader sleeps `pause_for` seconds."""

    def __init__(self, ws):
        self.ws = ws
        self.frames: list[dict] = []
        self.code: int | None = None
        self.reason: dict | None = None
        self.reading = asyncio.Event()
        self.reading.set()
        self.pause_every: int | None = None  # frames read between two pauses
        self.pause_for = 0.0
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, flumen, query: str, path: str = "/api/v1/tail", *,
                   receive_buffer: int | None = None, **params) -> "Tail":
        """Connects to `path` with `query` and `params`. `receive_buffer` sets the socket's
        SO_RCVBUF (before it connects, so the TCP window stays that small)."""
        url = ws_url(flumen, path, query=query, **params)
        options = dict(proxy=None, open_timeout=20, ping_interval=None, close_timeout=5,
                       max_size=None)
        if receive_buffer is not None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", flumen.ports["api"]))
            options["sock"] = sock
        return cls(await connect(url, **options))

    async def _read(self) -> None:
        try:
            while True:
                await self.reading.wait()
                self.frames.append(json.loads(await self.ws.recv()))
                if self.pause_every and len(self.frames) % self.pause_every == 0:
                    await asyncio.sleep(self.pause_for)
        except ConnectionClosed as closed:
            if closed.rcvd is not None:
                self.code = closed.rcvd.code
                self.reason = json.loads(closed.rcvd.reason) if closed.rcvd.reason else None
            else:
                self.code = 1006  # no close frame: the connection dropped

    def events(self) -> list[dict]:
        return [f for f in self.frames if "type" not in f]

    def numbers(self) -> list[int]:
        return [e["record"]["n"] for e in self.events()]

    def last_position(self) -> str:
        return self.events()[-1]["position"]

    async def wait_numbers(self, count: int, timeout: float = 20) -> list[int]:
        return await async_wait_for(lambda: self.numbers() if len(self.numbers()) >= count
                                    else None, timeout, f"{count} events on the stream")

    async def wait_closed(self, timeout: float = 20) -> tuple[int, dict | None]:
        await asyncio.wait_for(asyncio.shield(self.task), timeout)
        return self.code, self.reason

    async def settled(self, count: int, settle: float = 0.5) -> list[int]:
        """The numbers once `count` arrived and `settle` seconds more passed (for extras)."""
        await self.wait_numbers(count)
        await asyncio.sleep(settle)
        return self.numbers()

    def kill(self) -> None:
        """Drops the TCP connection, with no close handshake (a client that died)."""
        self.ws.transport.abort()

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(self.task, 10)


async def send(flumen, numbers) -> None:
    await asyncio.to_thread(send_numbered, flumen, numbers)


def padded(numbers):
    """`numbered_record(i)` with 4 KiB more, for each of `numbers`."""
    return ({**numbered_record(i), "pad": "x" * 4096} for i in numbers)


def paced(items, every: int, pause: float):
    """`items`, with a pause after every `every`: events that flow for a while, all on one
    connection (events sent on successive connections may be taken in another order)."""
    for i, item in enumerate(items, 1):
        yield item
        if i % every == 0:
            time.sleep(pause)


def assert_in_log_order(events: list[dict]) -> None:
    positions = [position(e["position"]) for e in events]
    assert positions == sorted(set(positions)), "positions not strictly increasing"


async def refused(flumen, query: str, path: str = "/api/v1/tail", **params) -> tuple[int, dict]:
    """The close code and reason of a stream that is refused at once."""
    tail = await Tail.open(flumen, query, path, **params)
    code, reason = await tail.wait_closed(10)
    assert tail.frames == [], tail.frames
    return code, reason


def live_streams(flumen) -> float:
    return metric_sum(parse_metrics(flumen.metrics_text()), "flumen_live_streams") or 0


# ---------------------------------------------------------------------------------------


def test_backfill_then_live_events_each_stream_sees_only_what_its_query_selects(
        flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)
    send_numbered(flumen, range(60))
    wait_stored(flumen, 60)

    async def main():
        api = await Tail.open(flumen, '{service="api"}', limit=5)
        everything = await Tail.open(flumen, "{}", limit=0)
        # The newest 5 stored api events, oldest first.
        assert await api.wait_numbers(5) == [45, 48, 51, 54, 57]
        await asyncio.sleep(0.3)
        await send(flumen, range(60, 120))
        api_live = [i for i in range(60, 120) if i % 3 == 0]
        assert await api.settled(5 + len(api_live)) == [45, 48, 51, 54, 57] + api_live
        assert await everything.settled(60) == list(range(60, 120))
        for tail in (api, everything):
            assert all("type" not in f for f in tail.frames), tail.frames
            assert_in_log_order(tail.events())
        for event in api.events():
            n = event["record"]["n"]
            assert event["record"] == numbered_record(n)
            assert event["line"] == numbered_record(n)["message"]
            assert event["tag"] == "app.logs"
            assert event["labels"] == {"service": "api", "level": numbered_record(n)["level"],
                                       "tag": "app.logs"}
            assert event["time_ns"] % 1_000_000_000 == 0  # sent with whole seconds
            assert event["time"].endswith(".000000000Z")
        await api.close()
        await everything.close()

    asyncio.run(main())


def test_a_client_killed_mid_stream_resumes_after_its_last_position_with_no_gap_or_duplicate(
        flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)

    async def main():
        first = await Tail.open(flumen, "{}", limit=0)
        await asyncio.sleep(0.3)

        sending = asyncio.create_task(send(flumen, paced(range(600), 20, 0.01)))
        await first.wait_numbers(150)
        first.kill()
        await first.wait_closed(5)
        seen = first.events()
        await asyncio.sleep(0.2)  # events go on meanwhile
        again = await Tail.open(flumen, "{}", after=seen[-1]["position"])
        await sending
        rest = await again.settled(600 - len(seen))
        numbers = [e["record"]["n"] for e in seen] + rest
        assert numbers == list(range(600)), (len(seen), numbers)
        assert_in_log_order(seen + again.events())
        assert not [f for f in again.frames if "type" in f], "no gap"
        print(f"killed after {len(seen)} events, {len(rest)} after resuming")
        await again.close()

    asyncio.run(main())


def test_a_restart_closes_the_stream_with_1012_and_resuming_after_gets_every_line_once(
        flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)

    async def main():
        client = await Tail.open(flumen, '{service="web"}', limit=0)
        witness = await Tail.open(flumen, '{service="api"}', limit=0)
        await asyncio.sleep(0.3)
        await send(flumen, range(3000))
        await witness.wait_numbers(1000)  # the last event sent is durable, so all are
        stopping = asyncio.create_task(asyncio.to_thread(flumen.stop))
        for tail in (witness, client):
            assert await tail.wait_closed() == (
                1012, {"reason": "shutting down", "reconnect": True})
        assert await stopping == 0
        before = client.events()
        print(f"{len(before)} of 1000 web events read before the restart")

        await asyncio.to_thread(flumen.start)
        await send(flumen, range(3000, 3300))
        again = await Tail.open(flumen, '{service="web"}', after=client.last_position())
        expected = [i for i in range(3300) if i % 3 == 1]
        rest = await again.settled(len(expected) - len(before))
        assert [e["record"]["n"] for e in before] + rest == expected
        assert_in_log_order(before + again.events())
        await again.close()

    asyncio.run(main())


async def stopped_while_behind(flumen) -> Tail:
    """A `{service="web"}` client that stops reading while 6,000 events of 4 KiB are sent,
    more than the socket buffers hold, and is still behind when flumen is told to stop. It
    reads again once flumen has exited, or after 2 s (well within the shutdown timeout, 10 s)
    if flumen waits for its stream. Returned once its stream has ended and flumen stopped."""
    client = await Tail.open(flumen, '{service="web"}', limit=0, receive_buffer=8192)
    client.reading.clear()
    witness = await Tail.open(flumen, '{service="api"}', limit=0)
    await asyncio.sleep(0.3)
    await asyncio.to_thread(send_records, flumen, padded(range(6000)))
    await witness.wait_numbers(2000)  # the last event sent is durable, so all are
    stopping = asyncio.create_task(asyncio.to_thread(flumen.stop))
    await asyncio.wait({stopping}, timeout=2)
    client.reading.set()
    await client.wait_closed()
    assert await stopping == 0
    await witness.wait_closed()
    # flumen had not sent all of the client's stream when it was told to stop.
    assert len(client.events()) < 2000, "the socket buffers held the whole stream"
    return client


def test_a_client_behind_when_flumen_restarts_resumes_after_its_last_position(
        flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)

    async def main():
        client = await stopped_while_behind(flumen)
        before = client.events()
        print(f"{len(before)} of 2000 web events read before the restart "
              f"(close code {client.code})")
        await asyncio.to_thread(flumen.start)
        await asyncio.to_thread(send_records, flumen, padded(range(6000, 6300)))
        again = await Tail.open(flumen, '{service="web"}', after=client.last_position())
        expected = [i for i in range(6300) if i % 3 == 1]
        rest = await again.settled(len(expected) - len(before))
        assert [e["record"]["n"] for e in before] + rest == expected
        assert_in_log_order(before + again.events())
        assert [e["line"] for e in again.events()] == [numbered_record(i)["message"]
                                                       for i in rest]
        await again.close()

    asyncio.run(main())


def test_a_client_behind_when_flumen_stops_still_gets_1012(flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)

    async def main():
        try:
            client = await stopped_while_behind(flumen)
        except AssertionError as e:  # not the failure expected
            pytest.fail(f"the client was not behind when flumen stopped: {e}")
        assert (client.code, client.reason) == (
            1012, {"reason": "shutting down", "reconnect": True})

    asyncio.run(main())


def test_a_bad_request_is_closed_with_4400_and_told_not_to_reconnect(flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)

    async def main():
        code, reason = await refused(flumen, '{service="api"')
        assert code == 4400 and reason["reconnect"] is False, (code, reason)
        assert reason["reason"].startswith("query: at column"), reason
        code, reason = await refused(flumen, "{}", after="not-a-position")
        assert code == 4400 and reason["reconnect"] is False, (code, reason)
        assert reason["reason"].startswith("after:"), reason
        # The refused streams are not counted as open.
        await async_wait_for(lambda: live_streams(flumen) == 0, 5, "no live stream open")

    asyncio.run(main())


def test_too_many_live_streams_are_refused_with_4429_and_http_429_until_one_closes(
        flumen_factory):
    api = '\n[api]\naddress = "127.0.0.1:@port:api@"\nmax_live_streams = 2\n'
    flumen = flumen_factory(forward_source() + FAST_STORE + api)

    async def main():
        first = await Tail.open(flumen, "{}", limit=0)
        second = await Tail.open(flumen, '{service="api"}', "/loki/api/v1/tail", limit=0)
        assert live_streams(flumen) == 2
        for path in ("/api/v1/tail", "/loki/api/v1/tail"):
            code, reason = await refused(flumen, "{}", path, limit=0)
            assert code == 4429 and reason["reconnect"] is True, (path, code, reason)
            assert "too many live streams" in reason["reason"], reason
        r = await asyncio.to_thread(requests.get, f"{flumen.api}/api/v1/stream",
                                    params={"query": "{}"}, timeout=10)
        assert r.status_code == 429 and "too many live streams" in r.text, (r.status_code, r.text)
        # The two open streams go on.
        await asyncio.sleep(0.2)
        await send(flumen, range(3))
        assert await first.settled(3) == [0, 1, 2]
        # Once one closes, a new stream is served.
        await second.close()
        await async_wait_for(lambda: live_streams(flumen) == 1, 10, "the closed stream gone")
        third = await Tail.open(flumen, "{}", limit=0)
        await asyncio.sleep(0.2)
        await send(flumen, range(3, 6))
        assert await third.settled(3) == [3, 4, 5]
        assert third.code is None, (third.code, third.reason)
        await first.close()
        await third.close()

    asyncio.run(main())


def test_loki_tail_sends_loki_frames_with_the_lines_and_refuses_delay_for_above_5(
        flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)
    send_numbered(flumen, range(30))
    wait_stored(flumen, 30)

    async def main():
        loki = await Tail.open(flumen, '{service="api"} |= "timeout"', "/loki/api/v1/tail",
                               limit=3, delay_for=5)
        # The same stream in flumen's shape, for each event's time.
        ours = await Tail.open(flumen, '{service="api"} |= "timeout"', limit=3)
        backfill = [0, 12, 24]  # api events (every third) with a timeout (every fourth)
        await ours.wait_numbers(3)
        await asyncio.sleep(0.3)
        await send(flumen, range(30, 90))
        expected = backfill + [i for i in range(30, 90) if i % 12 == 0]
        assert await ours.settled(len(expected)) == expected

        def entries():
            return [(labels, value) for frame in loki.frames for labels, value in
                    ((s["stream"], v) for s in frame["streams"] for v in s["values"])]
        await async_wait_for(lambda: len(entries()) >= len(expected), 10, "the Loki entries")
        await asyncio.sleep(0.3)
        for frame in loki.frames:
            assert set(frame) == {"streams"}, frame
            for stream in frame["streams"]:
                assert set(stream) == {"stream", "values"}, stream
                assert all(len(v) == 2 and all(isinstance(x, str) for x in v)
                           for v in stream["values"]), stream
        got = entries()
        assert [line for _, (_, line) in got] == [numbered_record(i)["message"] for i in expected]
        assert [ns for _, (ns, _) in got] == [str(e["time_ns"]) for e in ours.events()]
        assert [labels for labels, _ in got] == [
            {"service": "api", "level": numbered_record(i)["level"], "tag": "app.logs"}
            for i in expected]
        await loki.close()
        await ours.close()

        code, reason = await refused(flumen, "{}", "/loki/api/v1/tail", delay_for=6)
        assert code == 4400 and reason["reconnect"] is False, (code, reason)
        assert reason["reason"] == "delay_for can't be greater than 5", reason

    asyncio.run(main())


def test_a_slow_reader_during_a_burst_gets_every_line_in_order_and_so_does_a_fast_one(
        flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)
    total = 20_000

    async def main():
        fast = await Tail.open(flumen, "{}", limit=0)
        # A small TCP window, and a reader that reads nothing until the fast one has every
        # event, then stops for a while every 2,000 frames: its queue in flumen (64 batches,
        # one per read of the log that found events for it) fills, and the hub lets it go to
        # read the log by itself.
        slow = await Tail.open(flumen, "{}", limit=0, receive_buffer=8192)
        slow.pause_every, slow.pause_for = 2000, 0.3
        slow.reading.clear()
        await asyncio.sleep(0.3)

        def let_go() -> float:
            return metric_sum(parse_metrics(flumen.metrics_text()),
                              "flumen_live_subscribers_behind_total") or 0
        before = let_go()
        started = time.monotonic()
        # In small steps, so that the hub reads the log (and queues a batch) many times.
        await send(flumen, paced(range(total), 100, 0.005))
        sent = time.monotonic()
        await fast.wait_numbers(total, timeout=60)
        fast_done = time.monotonic()
        await async_wait_for(lambda: let_go() > before, 10, "a subscriber let go by the hub")
        slow.reading.set()
        await slow.wait_numbers(total, timeout=60)
        slow_done = time.monotonic()
        await asyncio.sleep(0.5)
        for tail in (fast, slow):
            assert tail.numbers() == list(range(total))
            assert not [f for f in tail.frames if "type" in f]
            assert_in_log_order(tail.events())
        print(f"{total} events sent in {sent - started:.2f}s; the fast reader had them all "
              f"{fast_done - sent:.2f}s after, the slow one {slow_done - sent:.2f}s after")
        await fast.close()
        await slow.close()

    asyncio.run(main())


def test_a_thousand_subscribers_with_mixed_queries_each_get_exactly_their_events(
        flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)
    subscribers, total = 1000, 1000

    def record(i: int) -> dict:
        return {"service": f"s{i % 50}", "level": "error" if i % 7 == 0 else "info", "n": i,
                "message": f"event {i}" + (" needle" if i % 11 == 0 else "")}

    def query(k: int) -> tuple[str, list[int]]:
        """Subscriber k's query and the numbers it selects."""
        if k % 10 < 7:
            s = k % 50
            return f'{{service="s{s}"}}', [i for i in range(total) if i % 50 == s]
        if k % 10 == 7:
            s = k % 50
            return (f'{{service="s{s}", level="error"}}',
                    [i for i in range(total) if i % 50 == s and i % 7 == 0])
        if k % 10 == 8:
            return '{level="error"}', [i for i in range(total) if i % 7 == 0]
        return '{} |= "needle"', [i for i in range(total) if i % 11 == 0]

    async def main():
        # Every subscriber resumes after a first event, so that it gets the same events
        # whether it connects before, while or after they are sent.
        probe = await Tail.open(flumen, "{}", limit=0)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(send_records, flumen, [{"n": -1, "message": "start"}])
        await probe.wait_numbers(1)
        start = probe.last_position()
        await probe.close()

        began = time.monotonic()
        sending = asyncio.create_task(asyncio.to_thread(
            send_records, flumen, paced(map(record, range(total)), 25, 0.2)))
        tails: list[Tail] = []
        for batch in range(0, subscribers, 100):
            tails += await asyncio.gather(*(Tail.open(flumen, query(k)[0], after=start)
                                            for k in range(batch, batch + 100)))
        opened = time.monotonic()
        await sending
        expected = [query(k)[1] for k in range(subscribers)]
        await async_wait_for(
            lambda: all(len(t.numbers()) >= len(e) for t, e in zip(tails, expected)), 30,
            "every subscriber's events")
        done = time.monotonic()
        await asyncio.sleep(0.5)
        wrong = [(k, query(k)[0], sorted(set(t.numbers()) ^ set(e)), len(t.numbers()), len(e))
                 for k, (t, e) in enumerate(zip(tails, expected)) if t.numbers() != e]
        assert not wrong, (f"{len(wrong)} subscribers got other events (subscriber, query, "
                           f"missing or extra, got, expected), e.g. {wrong[:3]}")
        assert all(t.code is None for t in tails)
        print(f"{subscribers} subscribers opened in {opened - began:.2f}s while events flowed; "
              f"{sum(map(len, expected))} events delivered {done - began:.2f}s after the first")
        await asyncio.gather(*(t.close() for t in tails))

    asyncio.run(main())


def test_curl_on_the_sse_stream_prints_id_and_data_lines_for_each_event(flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)
    url = f"{flumen.api}/api/v1/stream?query=" + quote('{service="billing"}') + "&limit=0"
    curl = subprocess.Popen(["curl", "-sN", "--max-time", "30", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(l.rstrip("\n") for l in curl.stdout),
                                  daemon=True)
        reader.start()
        wait_for(lambda: "retry: 2000" in lines, 10, "the stream's first line")
        send_numbered(flumen, range(30))
        expected = [i for i in range(30) if i % 3 == 2]
        wait_for(lambda: sum(l.startswith("data: ") for l in lines) >= len(expected), 20,
                 "the events' data lines")
        time.sleep(0.3)
    finally:
        curl.terminate()
        curl.wait(10)
    events = [l for l in lines if l and l != "retry: 2000"]
    ids = [l.removeprefix("id: ") for l in events[0::2]]
    data = [json.loads(l.removeprefix("data: ")) for l in events[1::2]]
    assert all(l.startswith("id: ") for l in events[0::2]), events
    assert all(l.startswith("data: ") for l in events[1::2]), events
    assert [d["record"]["n"] for d in data] == expected
    assert ids == [d["position"] for d in data]
    assert [d["line"] for d in data] == [numbered_record(i)["message"] for i in expected]


def test_the_npm_ws_client_resumes_after_its_last_position_across_a_restart(flumen_factory):
    flumen = flumen_factory(forward_source() + FAST_STORE)
    url = ws_url(flumen, "/api/v1/tail", query='{service="web"}', limit=0)
    got, stderr = node_client_across_restart(flumen, "tail_ws.js", url)
    expected = [i for i in range(60) if i % 3 == 1]
    assert [e["n"] for e in got] == expected, (got, stderr)
    assert [e["line"] for e in got] == [numbered_record(i)["message"] for i in expected]
    assert [position(e["position"]) for e in got] == sorted({position(e["position"])
                                                             for e in got})
    assert 'close: 1012 {"reason":"shutting down","reconnect":true}' in stderr, stderr


def test_limit_0_sends_only_the_events_sent_after_the_stream_opened(flumen_factory):
    # A store that takes its time to flush (its default is 2 s): the first events are durable
    # in the log, and not yet in the store, when the stream opens.
    flumen = flumen_factory(forward_source() + '\n[store]\nflush_interval = "10s"\n')

    async def main():
        try:
            witness = await Tail.open(flumen, "{}", limit=0)
            await asyncio.sleep(0.3)
            await send(flumen, range(20))
            await witness.wait_numbers(20)  # durable before the next stream opens
            tail = await Tail.open(flumen, "{}", limit=0)
            await asyncio.sleep(0.3)
            await send(flumen, range(20, 25))
            await witness.wait_numbers(25)
            await tail.wait_numbers(5)
            await asyncio.sleep(0.3)
        except AssertionError as e:  # not the failure expected
            pytest.fail(f"the events did not arrive: {e}")
        # As `tail -n 0 -f`: only what comes next.
        assert tail.numbers() == [20, 21, 22, 23, 24]

    asyncio.run(main())
