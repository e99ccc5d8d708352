"""Shared helpers for the end-to-end suite: waiting, reading file outputs, comparing events,
building forward-protocol frames by hand, sending events with the PyPI fluent-logger (the live
stream tests) and reading Prometheus metrics."""

from __future__ import annotations

import asyncio
import datetime as _dt
import gzip
import json
import re
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import msgpack
import requests
import sseclient
from fluent import sender as fluent_sender

# The npm clients (package.json, their scripts).
NODE_DIR = Path(__file__).resolve().parent / "node"

# ---------------------------------------------------------------------------------------
# Waiting


def wait_for(predicate: Callable[[], Any], timeout: float, desc: str, interval: float = 0.05):
    """Polls `predicate` until it returns a truthy value (returned) or `timeout` seconds pass
    (AssertionError naming `desc` and the last value seen)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {desc}; last value: {last!r}")
        time.sleep(interval)


async def async_wait_for(predicate: Callable[[], Any], timeout: float, desc: str,
                         interval: float = 0.02):
    """`wait_for` inside an event loop: sleeps with asyncio, so that the loop's other tasks
    (clients reading their streams) go on meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {desc}; last value: {last!r}")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------------------------------
# File outputs

TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$")


def read_output_lines(root: Path) -> list[tuple[Path, dict]]:
    """Every complete JSON line under `root` (recursively, `.log` and `.gz` files), with the
    file it came from. A line still being written (no trailing newline) is left out."""
    found: list[tuple[Path, dict]] = []
    if not root.exists():
        return found
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            raw = path.read_bytes()
            if raw[:2] == b"\x1f\x8b":
                try:
                    raw = gzip.decompress(raw)
                except (EOFError, OSError):
                    continue  # still being written
        except FileNotFoundError:
            continue
        text = raw.decode("utf-8")
        lines = text.split("\n")
        for line in lines[:-1]:  # the last piece has no newline yet (or is empty)
            if line.strip():
                try:
                    found.append((path, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise AssertionError(f"{path}: output line is not JSON ({e}): {line[:300]!r}") from None
    return found


def read_events(root: Path) -> list[dict]:
    return [event for _, event in read_output_lines(root)]


def wait_for_events(root: Path, count: int, timeout: float = 20.0, settle: float = 0.4,
                    where: Callable[[dict], bool] = lambda e: True) -> list[dict]:
    """Waits until at least `count` matching events are in the files under `root`, then waits
    `settle` seconds more so that duplicates written late are seen too, and returns them all."""
    wait_for(lambda: len([e for e in read_events(root) if where(e)]) >= count, timeout,
             f"{count} events under {root}")
    time.sleep(settle)
    return [e for e in read_events(root) if where(e)]


# ---------------------------------------------------------------------------------------
# Comparing


def rfc3339_ns(sec: int, nsec: int) -> str:
    base = _dt.datetime.fromtimestamp(sec, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{nsec:09d}Z"


def assert_same(expected: Any, got: Any, path: str = "record") -> None:
    """Deep equality that also requires the same JSON types (1 != 1.0 != True)."""
    def kind(v):
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "bool"
        if isinstance(v, int):
            return "int"
        if isinstance(v, float):
            return "float"
        if isinstance(v, str):
            return "str"
        if isinstance(v, (list, tuple)):
            return "list"
        if isinstance(v, dict):
            return "map"
        return type(v).__name__

    assert kind(expected) == kind(got), f"{path}: expected {expected!r} ({kind(expected)}), got {got!r} ({kind(got)})"
    if isinstance(expected, dict):
        assert set(expected) == set(got), (
            f"{path}: keys differ: missing {sorted(set(expected) - set(got))}, "
            f"unexpected {sorted(set(got) - set(expected))}")
        for k in expected:
            assert_same(expected[k], got[k], f"{path}.{k}")
    elif isinstance(expected, (list, tuple)):
        assert len(expected) == len(got), f"{path}: expected {len(expected)} items, got {len(got)}: {got!r}"
        for i, (a, b) in enumerate(zip(expected, got)):
            assert_same(a, b, f"{path}[{i}]")
    else:
        assert expected == got, f"{path}: expected {expected!r}, got {got!r}"


def check_delivered(expected: list[dict], got: list[dict]) -> None:
    """`expected` and `got` are lists of {"tag", "time", "record"}; every record carries a
    unique "id" field. Checks each expected event arrived exactly once, intact, with its tag
    and time, and nothing else arrived."""
    for e in got:
        assert set(e) == {"tag", "time", "record"}, f"output line has keys {sorted(e)}: {e!r}"
        assert TIME_RE.match(e["time"]), f"time {e['time']!r} is not RFC 3339 UTC with 9 fractional digits"
    by_id: dict[Any, list[dict]] = {}
    for e in got:
        by_id.setdefault(e["record"].get("id"), []).append(e)
    dups = {k: len(v) for k, v in by_id.items() if len(v) > 1}
    assert not dups, f"{len(dups)} events delivered more than once (id: copies): {dict(list(dups.items())[:10])}"
    want_ids = {e["record"]["id"] for e in expected}
    missing = sorted(want_ids - set(by_id), key=str)
    extra = sorted(set(by_id) - want_ids, key=str)
    assert not missing, f"{len(missing)} of {len(expected)} events missing, e.g. ids {missing[:10]}"
    assert not extra, f"{len(extra)} unexpected events, e.g. ids {extra[:10]}"
    for e in expected:
        g = by_id[e["record"]["id"]][0]
        rid = e["record"]["id"]
        assert g["tag"] == e["tag"], f"id {rid}: tag {g['tag']!r}, expected {e['tag']!r}"
        assert g["time"] == e["time"], f"id {rid}: time {g['time']!r}, expected {e['time']!r}"
        assert_same(e["record"], g["record"], f"id {rid} record")


def varied_record(i: int, js_safe: bool = False) -> dict:
    """A record with every kind of field a user sends. `js_safe` keeps integers within 2^53
    and floats non-integral, for clients (Node) whose numbers are IEEE doubles."""
    rec = {
        "id": i,
        "msg": f"message {i}: ünïcødé ✓ 日本語 🚀",
        "neg": -1000003 * i,
        "float": i + 0.25,
        "pi": 3.141592653589793,
        "tiny": 1.5e-7,
        "yes": True,
        "no": False,
        "nothing": None,
        "nested": {"a": {"b": [1, "two", 3.5, {"c": None}]}, "empty": {}},
        "list": [i, str(i), [], [True, False]],
        "empty": "",
        "escapes": 'quote " backslash \\ newline \n tab \t ctrl \x01 \x1f',
        "level": ["DEBUG", "INFO", "WARN", "ERROR"][i % 4],
    }
    if not js_safe:
        rec["i64_max"] = 2**63 - 1
        rec["i64_min"] = -(2**63)
        rec["u64_max"] = 2**64 - 1
        rec["nul"] = "a\x00b"
    return rec


def event_times(n: int, base: int = 1763723821) -> list[tuple[int, int]]:
    """n (seconds, nanoseconds) pairs covering the edges: 0 ns, 1 ns, 999999999 ns, a time
    before 2001 (9-digit seconds) and arbitrary nanoseconds."""
    out = []
    for i in range(n):
        if i % 50 == 1:
            nsec = 0
        elif i % 50 == 2:
            nsec = 1
        elif i % 50 == 3:
            nsec = 999_999_999
        else:
            nsec = (i * 7919 * 104729 + 13) % 1_000_000_000
        sec = 946684799 if i % 50 == 4 else base + i
        out.append((sec, nsec))
    return out


# ---------------------------------------------------------------------------------------
# Forward protocol by hand


def event_time(sec: int, nsec: int) -> msgpack.ExtType:
    return msgpack.ExtType(0, struct.pack(">II", sec, nsec))


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def entries_blob(entries: Iterable[tuple[Any, dict]]) -> bytes:
    return b"".join(packb([t, r]) for t, r in entries)


def read_msgpack_reply(sock: socket.socket, timeout: float = 10.0) -> Any:
    """Reads one msgpack object from `sock` (e.g. an ack), or raises AssertionError."""
    sock.settimeout(timeout)
    unpacker = msgpack.Unpacker(raw=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            raise AssertionError("connection closed by flumen before a reply arrived")
        unpacker.feed(data)
        for obj in unpacker:
            return obj
    raise AssertionError("no reply within timeout")


def wait_closed(sock: socket.socket, timeout: float = 10.0) -> str:
    """Waits until the peer closes `sock`; returns how ("eof" or "reset"). Raises
    AssertionError if it stays open (data received meanwhile is ignored)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        if not data:
            return "eof"
    raise AssertionError(f"flumen did not close the connection within {timeout}s")


def send_all_tolerant(sock: socket.socket, data: bytes) -> None:
    """sendall that tolerates the server closing the connection midway (expected for frames it
    rejects while they are still arriving)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


# ---------------------------------------------------------------------------------------
# Events for the live streams, sent with the PyPI fluent-logger

# A store that flushes quickly, so that a stream's backfill finds what was just sent.
FAST_STORE = """
[store]
flush_interval = "100ms"
"""

SERVICES = ["api", "web", "billing"]


def numbered_record(i: int) -> dict:
    """Event number `i`: service `SERVICES[i % 3]`, level error for every fifth, and a
    message (the event's line) that says "upstream timeout" for every fourth."""
    return {
        "service": SERVICES[i % 3],
        "level": "error" if i % 5 == 0 else "info",
        "n": i,
        "message": f"request {i} " + ("upstream timeout" if i % 4 == 0 else "ok"),
    }


def send_records(flumen, records: Iterable[dict], tag: str = "app.logs") -> None:
    """Sends `records` timed now, in order, on one connection to the forward source `fwd`."""
    prefix, _, label = tag.partition(".")
    s = fluent_sender.FluentSender(prefix, host="127.0.0.1", port=flumen.ports["fwd"], timeout=10)
    try:
        for record in records:
            assert s.emit_with_time(label, int(time.time()), record), s.last_error
    finally:
        s.close()


def send_numbered(flumen, numbers: Iterable[int]) -> None:
    """Sends `numbered_record(i)` for each of `numbers`, tagged app.logs."""
    send_records(flumen, (numbered_record(i) for i in numbers))


def node_client_across_restart(flumen, script: str, url: str) -> tuple[list[dict], str]:
    """Runs the Node live-stream client `script` (in tests/e2e/node) on `url` until it has 20
    events, while numbered events 0..29 are sent, flumen stops and starts again once the
    client has 10, and 30..59 are sent; returns the JSON lines it printed and its stderr."""
    client = subprocess.Popen(["node", str(NODE_DIR / script), url, "20"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        got: list[dict] = []
        reader = threading.Thread(target=lambda: got.extend(json.loads(line)
                                                            for line in client.stdout),
                                  daemon=True)
        reader.start()
        wait_for(lambda: metric_sum(parse_metrics(flumen.metrics_text()),
                                    "flumen_live_streams") == 1 or None,
                 10, "the client connected")
        send_numbered(flumen, range(30))
        wait_for(lambda: len(got) >= 10 or None, 20, "the first 10 events")
        # flumen stops (the stream says close) and starts again: the client reconnects,
        # resuming after the last position it saw.
        flumen.stop()
        flumen.start()
        send_numbered(flumen, range(30, 60))
        assert client.wait(timeout=30) == 0
        reader.join(5)
    finally:
        client.kill()
        stderr = client.stderr.read()
    return got, stderr


def wait_stored(flumen, count: int) -> None:
    """Waits until the store holds `count` events (of the last hour)."""
    def stored():
        r = requests.get(f"{flumen.api}/api/v1/query",
                         params={"query": "{}", "since": "1h", "limit": 5000}, timeout=10)
        return len(r.text.splitlines()) - 1 >= count or None  # less the closing line
    wait_for(stored, 20, f"{count} events stored")


# ---------------------------------------------------------------------------------------
# Prometheus metrics

_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line.strip())
        assert m, f"line is not Prometheus text format: {line!r}"
        labels = dict(_LABEL_RE.findall(m.group(3) or ""))
        samples.append((m.group(1), labels, float(m.group(4))))
    return samples


def metric_sum(samples, name: str, **labels) -> float | None:
    """Sum of samples called `name` whose labels include `labels`; None if there are none."""
    vals = [v for n, l, v in samples if n == name and all(l.get(k) == w for k, w in labels.items())]
    return sum(vals) if vals else None


# ---------------------------------------------------------------------------------------
# Server-Sent Events


class SseReader:
    """One connection to `GET /api/v1/stream` with `params`, read on a thread into a list of
    (event, id, data) with the PyPI `sseclient-py`; `ended` is set once the response ends."""

    def __init__(self, flumen, params: dict, last_event_id: str | None = None):
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.response = requests.get(f"{flumen.api}/api/v1/stream", params=params,
                                     headers=headers, stream=True, timeout=(5, 30))
        assert self.response.status_code == 200, (self.response.status_code, self.response.text)
        assert self.response.headers["content-type"].startswith("text/event-stream")
        self.messages: list[tuple[str, str, str]] = []
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for event in sseclient.SSEClient(self.response).events():
                self.messages.append((event.event, event.id, event.data))
        except Exception:  # the connection closed under the reader
            pass
        finally:
            self.ended.set()

    def events(self) -> list[dict]:
        return [json.loads(data) for kind, _, data in list(self.messages) if kind == "message"]

    def close(self) -> None:
        # Shut the socket first: closing the response alone waits for the reader thread,
        # which waits for the next message (a heartbeat comes every 15 s).
        connection = getattr(self.response.raw, "_connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
        self.response.close()
        self.thread.join(5)
