"""Deployments end to end (issue 13's contract: API, marker events, streams, CLI): the catalogue
over HTTP with `requests`, on SQLite (the default, `<data_dir>/deployments.db`) and on
PostgreSQL (Debian's, a cluster of the test's own: the `postgres` fixture, pg.py); events sent
with the PyPI fluent-logger and by `flumen run --server`; deployment-scoped live streams read with
the PyPI `websockets` (`/api/v1/tail?deployment=`) and `sseclient-py` (`/api/v1/stream?deployment=`).

What each test checks ([sqlite, postgres]: run on both catalogues):

- test_create_show_and_finish [sqlite, postgres]: POST creates a deployment (201, every field
  of the Deployment JSON as sent, status running, times RFC 3339 with nanoseconds, no events);
  an id is generated (`d-` + 16 hex) when absent; the same id again is 409 and changes nothing;
  finish (200) sets status, message, finished_at and duration_ms; GET shows the same.
- test_events_are_counted_by_level_once [sqlite, postgres]: events naming the deployment
  (`deployment_id`) are counted, by normalised level (`INFO`/`info` -> info, `warning` ->
  warn, `ERR` -> error), `errors` = error + fatal, first/last event = the events' own times;
  other deployments' events, events of no deployment or of an unknown one do not count and
  create nothing; the start/finish markers (tag `flumen.deployment`) are not counted.
- test_list_filters_order_and_pagination [sqlite, postgres]: newest started first; filters
  service, environment, status, since, start/end; `limit` pages with `next_cursor` (null on
  the last page) covering every deployment once, also with a filter, and stable while a newer
  deployment is created between two pages.
- test_bad_input_is_refused_and_changes_nothing [sqlite, postgres]: finish unknown -> 404,
  finished twice -> 409 (first status kept), bad status -> 400, 1 MB metadata -> 413 (40 KB
  kept intact, 200 KB kept or 413), metadata not an object / wrong types / bad JSON / bad
  retention -> 400, ids with `../`, `/`, `' OR 1=1 --`, `a;DROP TABLE deployments`, 129
  characters, a leading `.` -> 400 on create and 400 or 404 on show and finish, filters with
  SQL in them match nothing, a bad cursor, limit, since or start -> 400; the listing afterwards
  is exactly what it was; quotes and unicode in metadata and messages are kept verbatim.
- test_marker_events_are_appended_to_the_log: starting and finishing append
  `deployment_started` / `deployment_finished` events (tag `flumen.deployment`, level info,
  error for a failure) with the deployment's fields, found by the query API.
- test_a_deploy_script_under_flumen_run_is_tailed_to_its_end [sqlite, postgres]:
  `flumen run --server --deployment ID` registers the deployment before the command starts; a
  WebSocket client of `/api/v1/tail?deployment=ID` gets every stdout and stderr line in
  order, only this deployment's events, in log order, no gap, then the end frame (status
  succeeded) as the last frame and close 1000 `{"reason":"deployment finished",
  "reconnect":false}`; the catalogue has the service/env/version of the flags and the count.
- test_a_failing_script_ends_the_deployment_failed: exit 3 -> flumen run exits 3, the
  deployment is failed; an SSE client (`/api/v1/stream?deployment=`) gets the lines, then
  `event: end` with status failed, and the response ends; a WebSocket client opened after the
  end gets the lines and the end at once.
- test_a_script_killed_by_sigterm_ends_the_deployment_cancelled: SIGTERM -> cancelled.
- test_flumen_run_registers_only_with_server_or_flumen_server_set: no --server and no FLUMEN_SERVER ->
  nothing registered (404); FLUMEN_SERVER alone -> registered.
- test_concurrent_deployments_do_not_mix [sqlite, postgres]: four `flumen run`s of four
  services at once (threads), their output interleaved in time: each tail gets its own lines
  only, all, in order, and its own end (one failed, three succeeded); each count is its own
  lines plus the two lifecycle events, as the store holds them.
- test_a_restart_during_a_deployment_loses_nothing [sqlite, postgres]: flumen stops (the
  tail closes 1012) and starts on the same data dir during a deployment: the catalogue is
  kept (running and finished deployments as they were); the tail resumed with `after=` sees
  every event once, in order, no gap, and the end after the finish; counted once.
- test_a_deployment_stream_with_a_query_and_unknown_deployments: `query` narrows a
  deployment's stream (SSE, backfill then end); an unknown deployment's stream is 404 (SSE:
  HTTP 404; WebSocket: HTTP 404 or close 4404, not to reconnect).
- test_postgresql_down_ingest_goes_on_and_the_api_says_503_until_it_is_back: PostgreSQL
  stops: forward chunks are still acknowledged and stored (query API), the four deployment
  endpoints answer 503 (saying the catalogue is unavailable) promptly; PostgreSQL starts again: the API works within
  30 s, and the events sent meanwhile were counted.
- test_flumen_starts_while_postgresql_is_down: flumen becomes ready and ingests with
  PostgreSQL down (API 503), and the catalogue works once PostgreSQL is up.
- test_the_deploy_cli: `flumen deploy start/finish/list/show` against the API (`--server` and
  FLUMEN_SERVER), explicit `database = "sqlite"`.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import os
import re
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
import requests
from fluent import sender as fluent_sender
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import FLUMEN_BIN, forward_source
from helpers import (FAST_STORE, TIME_RE, SseReader, async_wait_for, entries_blob, event_time,
                     metric_sum, packb, parse_metrics, read_msgpack_reply, rfc3339_ns, send_records,
                     wait_for)

DEPLOYMENT_KEYS = {"id", "service", "environment", "version", "commit", "started_by", "metadata",
                   "retention", "status", "message", "started_at", "finished_at", "duration_ms",
                   "events"}
EVENTS_KEYS = {"total", "by_level", "errors", "first_event", "last_event"}
GENERATED_ID = re.compile(r"^d-[0-9a-f]{16}$")
MARKER_TAG = "flumen.deployment"
END_CLOSE = (1000, {"reason": "deployment finished", "reconnect": False})
# How `flumen run` and `flumen deploy` are told the API (`--server URL`, or
# FLUMEN_SERVER in the environment).
API_FLAG = "--server"
API_ENV = "FLUMEN_SERVER"
# The counter writes about once a second; this is the bound for a count to show.
COUNT_TIMEOUT = 20
RUN_TIMEOUT = 60


# ---------------------------------------------------------------------------------------
# Catalogues and the API


@pytest.fixture(params=["sqlite", "postgres"])
def catalogue(request) -> str:
    """The configuration's `[deployments]` part: none for SQLite (the default), the URL of a
    PostgreSQL cluster of the test's own otherwise. (Tests name it before `flumen_factory`,
    so that PostgreSQL stops after flumen.)"""
    if request.param == "sqlite":
        return ""
    pg = request.getfixturevalue("postgres")
    return f'\n[deployments]\ndatabase = "{pg.url}"\n'


def config(catalogue: str = "") -> str:
    return forward_source() + FAST_STORE + catalogue


class Api:
    """The deployments API of one flumen."""

    def __init__(self, flumen, timeout: float = 10):
        self.flumen = flumen
        self.timeout = timeout

    @property
    def base(self) -> str:
        return f"{self.flumen.api}/api/v1/deployments"

    def path(self, id: str) -> str:
        return f"{self.base}/{quote(id, safe='')}"

    # -- raw answers -------------------------------------------------------------------
    def create(self, **body) -> requests.Response:
        return requests.post(self.base, json=body, timeout=self.timeout)

    def finish(self, id: str, status: str | None = "succeeded", **body) -> requests.Response:
        if status is not None:
            body["status"] = status
        return requests.post(self.path(id) + "/finish", json=body, timeout=self.timeout)

    def show(self, id: str) -> requests.Response:
        return requests.get(self.path(id), timeout=self.timeout)

    def list(self, **params) -> requests.Response:
        return requests.get(self.base, params=params, timeout=self.timeout)

    # -- checked -----------------------------------------------------------------------
    def created(self, **body) -> dict:
        r = self.create(**body)
        assert r.status_code == 201, (r.status_code, r.text)
        return check_deployment(r.json())

    def finished(self, id: str, status: str = "succeeded", **body) -> dict:
        r = self.finish(id, status, **body)
        assert r.status_code == 200, (r.status_code, r.text)
        return check_deployment(r.json())

    def shown(self, id: str) -> dict:
        r = self.show(id)
        assert r.status_code == 200, (r.status_code, r.text)
        return check_deployment(r.json())

    def page(self, **params) -> tuple[list[dict], str | None]:
        r = self.list(**params)
        assert r.status_code == 200, (params, r.status_code, r.text)
        body = r.json()
        assert set(body) == {"deployments", "next_cursor"}, body
        return [check_deployment(d) for d in body["deployments"]], body["next_cursor"]

    def ids(self, **params) -> list[str]:
        deployments, cursor = self.page(**params)
        assert cursor is None, f"{params}: one page expected, next_cursor {cursor!r}"
        return [d["id"] for d in deployments]

    def everything(self, **params) -> list[dict]:
        """Every deployment the listing has, following next_cursor."""
        out: list[dict] = []
        cursor = None
        for _ in range(1000):
            deployments, cursor = self.page(**params, **({"cursor": cursor} if cursor else {}))
            out += deployments
            if cursor is None:
                return out
        raise AssertionError("next_cursor never ends")

    def counted(self, id: str, total: int, settle: float = 1.5) -> dict:
        """The deployment once `total` events were counted towards it, and `settle` s more
        (so that a count too high shows)."""
        wait_for(lambda: self.shown(id)["events"]["total"] >= total or None, COUNT_TIMEOUT,
                 f"{total} events counted towards {id}")
        time.sleep(settle)
        return self.shown(id)


def check_deployment(d: dict) -> dict:
    """Checks the shape of a Deployment (every documented key, types, time formats)."""
    assert isinstance(d, dict), d
    missing = DEPLOYMENT_KEYS - set(d)
    assert not missing, f"deployment lacks {sorted(missing)}: {d}"
    assert isinstance(d["id"], str) and d["id"]
    for key in ("service", "environment", "version", "commit", "started_by", "retention", "message"):
        assert d[key] is None or isinstance(d[key], str), (key, d)
    assert isinstance(d["metadata"], dict), d
    assert d["status"] in ("running", "succeeded", "failed", "cancelled"), d
    assert isinstance(d["started_at"], str) and TIME_RE.match(d["started_at"]), d["started_at"]
    if d["status"] == "running":
        assert d["finished_at"] is None, d
        assert d["duration_ms"] is None or (isinstance(d["duration_ms"], int) and d["duration_ms"] >= 0), d
    else:
        assert isinstance(d["finished_at"], str) and TIME_RE.match(d["finished_at"]), d
        assert ns(d["finished_at"]) >= ns(d["started_at"]), d
        assert isinstance(d["duration_ms"], int) and not isinstance(d["duration_ms"], bool), d
        expected = (ns(d["finished_at"]) - ns(d["started_at"])) / 1e6
        assert abs(d["duration_ms"] - expected) <= 1, (d["duration_ms"], expected)
    events = d["events"]
    assert isinstance(events, dict) and not EVENTS_KEYS - set(events), events
    assert isinstance(events["total"], int) and isinstance(events["errors"], int), events
    assert isinstance(events["by_level"], dict), events
    assert all(isinstance(v, int) and v > 0 for v in events["by_level"].values()), events
    assert sum(events["by_level"].values()) == events["total"], events
    if events["total"] == 0:
        assert events["first_event"] is None and events["last_event"] is None, events
    else:
        assert TIME_RE.match(events["first_event"]) and TIME_RE.match(events["last_event"]), events
        assert events["first_event"] <= events["last_event"], events
    return d


def ns(text: str) -> int:
    """An RFC 3339 UTC time with 9 fractional digits, as Unix nanoseconds."""
    assert TIME_RE.match(text), text
    whole = _dt.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_dt.timezone.utc)
    return int(whole.timestamp()) * 1_000_000_000 + int(text[20:29])


def rfc3339(nanos: int) -> str:
    return rfc3339_ns(nanos // 1_000_000_000, nanos % 1_000_000_000)


def stored(flumen, query: str) -> list[dict]:
    """The events of the last hour the query API finds (oldest first)."""
    r = requests.get(f"{flumen.api}/api/v1/query",
                     params={"query": query, "since": "1h", "limit": 5000, "direction": "forward"},
                     timeout=10)
    assert r.status_code == 200, (r.status_code, r.text)
    lines = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    assert lines and lines[-1].get("done") is True, lines[-1:]
    return [line for line in lines if "record" in line]


def of_deployment(id: str) -> str:
    return '{deployment_id="%s"}' % id


def send_acked(flumen, tag: str, records: list[dict], chunk: str, timeout: float = 10) -> None:
    """One PackedForward chunk with `chunk` as its id; returns once acknowledged."""
    now = int(time.time())
    with socket.create_connection(("127.0.0.1", flumen.ports["fwd"]), timeout=timeout) as s:
        s.sendall(packb([tag, entries_blob((event_time(now, i), r) for i, r in enumerate(records)),
                         {"chunk": chunk, "size": len(records)}]))
        assert read_msgpack_reply(s, timeout) == {"ack": chunk}


# ---------------------------------------------------------------------------------------
# Live streams of a deployment


class Tail:
    """A WebSocket client of `/api/v1/tail?deployment=…`: a task reads every text frame
    (JSON) into `frames`, then keeps the close code and its JSON reason (1006: no close)."""

    def __init__(self, ws):
        self.ws = ws
        self.frames: list[dict] = []
        self.code: int | None = None
        self.reason: dict | None = None
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, flumen, deployment: str, **params) -> "Tail":
        url = (f"ws://127.0.0.1:{flumen.ports['api']}/api/v1/tail?"
               + urlencode({"deployment": deployment, **params}))
        return cls(await connect(url, proxy=None, open_timeout=20, ping_interval=None,
                                 close_timeout=5, max_size=None))

    async def _read(self) -> None:
        try:
            while True:
                self.frames.append(json.loads(await self.ws.recv()))
        except ConnectionClosed as closed:
            if closed.rcvd is not None:
                self.code = closed.rcvd.code
                self.reason = json.loads(closed.rcvd.reason) if closed.rcvd.reason else None
            else:
                self.code = 1006

    def events(self) -> list[dict]:
        return [f for f in self.frames if "type" not in f]

    def records(self) -> list[dict]:
        return [e["record"] for e in self.events()]

    def numbers(self) -> list[int]:
        return [r["n"] for r in self.records() if "n" in r]

    def lines(self, source: str) -> list[str]:
        return [r["message"] for r in self.records() if r.get("source") == source]

    def last_position(self) -> str:
        return self.events()[-1]["position"]

    async def wait_numbers(self, count: int, timeout: float = 20) -> list[int]:
        return await async_wait_for(lambda: self.numbers() if len(self.numbers()) >= count
                                    else None, timeout, f"{count} events on the stream")

    async def wait_closed(self, timeout: float = 30) -> tuple[int | None, dict | None]:
        await asyncio.wait_for(asyncio.shield(self.task), timeout)
        return self.code, self.reason

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(self.task, 10)


def assert_ended(tail: Tail, id: str, status: str, message: str | None = None) -> dict:
    """The stream ended as a finished deployment's does: no gap, the end frame last, then
    close 1000 telling the client not to reconnect."""
    controls = [f for f in tail.frames if "type" in f]
    assert [f["type"] for f in controls] == ["end"], controls
    end = tail.frames[-1]
    assert end["type"] == "end", f"the end frame is not the last: {tail.frames[-3:]}"
    assert end["deployment_id"] == id and end["status"] == status, end
    if message is not None:
        assert end["message"] == message, end
    assert (tail.code, tail.reason) == END_CLOSE, (tail.code, tail.reason)
    for record in tail.records():
        assert record.get("deployment_id") == id, f"another deployment's event on {id}'s stream: {record}"
    positions = [tuple(map(int, e["position"].split("."))) for e in tail.events()]
    assert positions == sorted(set(positions)), "events not in log order, or twice"
    return end


async def ws_refused(flumen, deployment: str) -> int:
    """How a WebSocket tail of `deployment` is refused: the HTTP status of a refused upgrade,
    or the close code when the upgrade is accepted and the stream closed at once."""
    try:
        tail = await Tail.open(flumen, deployment)
    except InvalidStatus as e:
        return e.response.status_code
    code, reason = await tail.wait_closed(10)
    assert tail.frames == [], tail.frames
    assert reason is not None and reason.get("reconnect") is False, (code, reason)
    return code


class Stream(SseReader):
    """An SSE client of `/api/v1/stream?deployment=…`; `ended` is set when the response ends."""

    def __init__(self, flumen, deployment: str, **params):
        super().__init__(flumen, {"deployment": deployment, **params})

    def records(self) -> list[dict]:
        return [json.loads(d)["record"] for kind, _, d in list(self.messages) if kind == "message"]

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.messages]

    def wait_ended(self, timeout: float = 30) -> None:
        assert self.ended.wait(timeout), (
            f"the stream did not end within {timeout}s; last messages {self.messages[-3:]}")


# ---------------------------------------------------------------------------------------
# flumen run


def _env(**extra: str) -> dict:
    """The environment of a `flumen run` or `flumen deploy`: none of the caller's flumen
    settings (FLUMEN_SERVER too: what `flumen tail` and `flumen query` read)."""
    env = {k: v for k, v in os.environ.items()
           if k not in (API_ENV, "FLUMEN_LOG", "FLUMEN_LOG_FORMAT",
                        "FLUMEN_RUN_TO", "FLUMEN_RUN_BUFFER_DIR")}
    env["RUST_BACKTRACE"] = "1"
    env.update(extra)
    return env


def run_args(flumen, buffer_dir: Path, *args: str, api: bool = True) -> list[str]:
    return [str(FLUMEN_BIN), "run", *([API_FLAG, flumen.api] if api else []),
            "--to", f"127.0.0.1:{flumen.ports['fwd']}", "--buffer-dir", str(buffer_dir), *args]


def gated_script(gate: Path, name: str, lines: int, exit_code: int = 0) -> str:
    """Waits for the file `gate`, then prints `lines` lines "NAME line I" on stdout and every
    tenth also "NAME warn I" on stderr, and exits with `exit_code`."""
    return (f'while [ ! -e "{gate}" ]; do sleep 0.02; done; i=1; '
            f'while [ $i -le {lines} ]; do echo "{name} line $i"; '
            f'if [ $((i % 10)) -eq 0 ]; then echo "{name} warn $i" >&2; fi; i=$((i+1)); done; '
            f'exit {exit_code}')


def expected_output(name: str, lines: int) -> tuple[list[str], list[str]]:
    return ([f"{name} line {i}" for i in range(1, lines + 1)],
            [f"{name} warn {i}" for i in range(1, lines + 1) if i % 10 == 0])


def spawn_run(flumen, buffer_dir: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(run_args(flumen, buffer_dir, *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env or _env(),
                            start_new_session=True)


def wait_registered(api: Api, id: str, proc: subprocess.Popen | None = None) -> dict:
    def registered():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"flumen run exited with {proc.returncode} before {id} was "
                                 f"registered: {proc.stderr.read()!r}")
        r = api.show(id)
        return r.json() if r.status_code == 200 else None
    return wait_for(registered, 20, f"{id} registered by flumen run")


def finish_run(proc: subprocess.Popen) -> tuple[int, bytes, bytes]:
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return proc.returncode, out, err


# ---------------------------------------------------------------------------------------
# The catalogue over HTTP


def test_create_show_and_finish(catalogue, flumen_factory):
    flumen = flumen_factory(config(catalogue))
    api = Api(flumen)
    before = time.time_ns()
    d = api.created(id="d-42", service="api", environment="staging", version="1.4.2",
                    commit="abc123", started_by="alice",
                    metadata={"ticket": "OPS-7", "canary": True, "hosts": [1, 2], "nested": {"a": None}},
                    retention="30d")
    after = time.time_ns()
    assert {k: d[k] for k in DEPLOYMENT_KEYS - {"started_at", "duration_ms", "retention"}} == {
        "id": "d-42", "service": "api", "environment": "staging", "version": "1.4.2",
        "commit": "abc123", "started_by": "alice",
        "metadata": {"ticket": "OPS-7", "canary": True, "hosts": [1, 2], "nested": {"a": None}},
        "status": "running", "message": None, "finished_at": None,
        "events": {"total": 0, "by_level": {}, "errors": 0, "first_event": None, "last_event": None},
    }
    assert before - 1_000_000 <= ns(d["started_at"]) <= after + 1_000_000, (before, d["started_at"], after)
    shown = api.shown("d-42")
    assert {k: v for k, v in shown.items() if k != "duration_ms"} == {
        k: v for k, v in d.items() if k != "duration_ms"}
    if not catalogue:
        assert (flumen.data_dir / "deployments.db").is_file(), sorted(os.listdir(flumen.data_dir))

    # No id: one is generated; the rest is empty.
    g = api.created()
    assert GENERATED_ID.match(g["id"]), g["id"]
    assert {k: g[k] for k in ("service", "environment", "version", "commit", "started_by",
                              "retention", "message")} == dict.fromkeys(
        ("service", "environment", "version", "commit", "started_by", "retention", "message"))
    assert g["metadata"] == {} and g["status"] == "running"
    assert GENERATED_ID.match(api.created(service="web")["id"])

    # The same id again: 409, and the first stays as it was.
    r = api.create(id="d-42", service="other")
    assert r.status_code == 409, (r.status_code, r.text)
    assert r.text.strip(), "a refusal says why"
    assert api.shown("d-42")["service"] == "api"

    time.sleep(0.05)
    f = api.finished("d-42", "succeeded", message="deployed 1.4.2")
    assert f["status"] == "succeeded" and f["message"] == "deployed 1.4.2"
    assert f["duration_ms"] >= 50, f
    assert {k: f[k] for k in ("id", "service", "started_at", "metadata", "retention")} == {
        k: d[k] for k in ("id", "service", "started_at", "metadata", "retention")}
    assert api.shown("d-42") == f
    for status in ("failed", "cancelled"):
        x = api.created(service="web")
        y = api.finished(x["id"], status)
        assert y["status"] == status and y["message"] is None, y
    # The retention as it was given, and the store told of it (the tenant's is 7 days).
    assert d["retention"] == "30d", d["retention"]
    assert metric_sum(parse_metrics(flumen.metrics_text()),
                      "flumen_store_deployment_retentions") == 1


LEVELS = [("info", "info"), ("INFO", "info"), ("warning", "warn"), ("error", "error"),
          ("ERR", "error"), ("fatal", "fatal"), ("debug", "debug")]


def test_events_are_counted_by_level_once(catalogue, flumen_factory):
    flumen = flumen_factory(config(catalogue))
    api = Api(flumen)
    api.created(id="count-1", service="api")
    api.created(id="count-2", service="web")
    base = int(time.time()) - 120
    mine = [{"deployment_id": "count-1", "level": LEVELS[i % len(LEVELS)][0], "n": i,
             "message": f"step {i}"} for i in range(42)]
    # Sent with times of their own (a second apart), interleaved with events of another
    # deployment, of an unknown one and of none.
    records = []
    for i, record in enumerate(mine):
        records.append((base + i, record))
        if i % 3 == 0:
            records.append((base + i, {"deployment_id": "count-2", "level": "error", "n": 1000 + i,
                                       "message": "other"}))
            records.append((base + i, {"deployment_id": "ghost", "level": "error", "message": "ghost"}))
            records.append((base + i, {"level": "error", "message": "no deployment"}))
    s = fluent_sender.FluentSender("app", host="127.0.0.1", port=flumen.ports["fwd"], timeout=10)
    try:
        for t, record in records:
            assert s.emit_with_time("deploy", t, record), s.last_error
    finally:
        s.close()

    d = api.counted("count-1", 42)
    expected_levels: dict[str, int] = {}
    for i in range(42):
        level = LEVELS[i % len(LEVELS)][1]
        expected_levels[level] = expected_levels.get(level, 0) + 1
    assert {k: d["events"][k] for k in ("total", "first_event", "last_event")} == {
        "total": 42, "first_event": rfc3339_ns(base, 0), "last_event": rfc3339_ns(base + 41, 0),
    }, d["events"]
    other = api.counted("count-2", 14)
    assert other["events"]["total"] == 14, other
    # The unknown deployment named by events was not created.
    r = api.show("ghost")
    assert r.status_code == 404, (r.status_code, r.text)
    assert sorted(d["id"] for d in api.everything()) == ["count-1", "count-2"]

    # Finishing (its marker is an event naming the deployment, level error) counts nothing.
    api.finished("count-1", "failed", message="smoke tests failed")
    time.sleep(2.5)
    assert api.shown("count-1")["events"]["total"] == 42

    # By level, as levels are named in the contract (lower case), one name for each level.
    assert {k: d["events"][k] for k in ("by_level", "errors")} == {
        "by_level": expected_levels, "errors": expected_levels["error"] + expected_levels["fatal"],
    }, d["events"]
    assert other["events"]["by_level"] == {"error": 14} and other["events"]["errors"] == 14, other
    assert api.shown("count-1")["events"]["errors"] == expected_levels["error"] + expected_levels["fatal"]


def test_list_filters_order_and_pagination(catalogue, flumen_factory):
    flumen = flumen_factory(config(catalogue))
    api = Api(flumen)
    specs = [("api", "staging", "succeeded"), ("web", "prod", "failed"), ("api", "prod", "running"),
             ("billing", "staging", "cancelled"), ("api", "staging", "failed"),
             ("web", "staging", "running"), ("api", "prod", "succeeded")]
    started = []
    for i, (service, environment, status) in enumerate(specs):
        d = api.created(id=f"list-{i}", service=service, environment=environment, version=f"1.{i}")
        started.append(ns(d["started_at"]))
        if status != "running":
            api.finished(d["id"], status)
        time.sleep(0.03)
    assert started == sorted(started) and len(set(started)) == len(started)

    def ids(numbers):
        return [f"list-{i}" for i in numbers]

    newest_first = ids(reversed(range(7)))
    assert api.ids() == newest_first
    listed = {d["id"]: d for d in api.page()[0]}
    assert [listed[f"list-{i}"]["status"] for i in range(7)] == [s for _, _, s in specs]
    assert listed["list-3"] == api.shown("list-3")

    def where(pred):
        return ids(i for i in reversed(range(7)) if pred(*specs[i]))

    assert api.ids(service="api") == where(lambda s, e, st: s == "api")
    assert api.ids(environment="staging") == where(lambda s, e, st: e == "staging")
    for status in ("running", "succeeded", "failed", "cancelled"):
        assert api.ids(status=status) == where(lambda s, e, st: st == status), status
    assert api.ids(service="api", environment="prod") == ["list-6", "list-2"]
    assert api.ids(service="api", environment="prod", status="running") == ["list-2"]
    assert api.ids(service="nobody") == []
    # Time: since, start and end (between two starts, so that bounds being inclusive or not
    # does not matter).
    assert api.ids(since="1h") == newest_first

    def between(a, b):
        return rfc3339((started[a] + started[b]) // 2)

    assert api.ids(start=between(2, 3), end=between(5, 6)) == ["list-5", "list-4", "list-3"]
    assert api.ids(start=between(4, 5)) == ["list-6", "list-5"]
    assert api.ids(end=between(1, 2)) == ["list-1", "list-0"]
    assert api.ids(start=rfc3339(started[-1] + 1_000_000)) == []  # after the last start
    assert api.ids(since="1h", service="web") == ["list-5", "list-1"]

    # Pages of 3: 3, 3 and 1, the last one saying there is no more.
    pages = []
    cursor = None
    while True:
        page, cursor = api.page(limit=3, **({"cursor": cursor} if cursor else {}))
        pages.append([d["id"] for d in page])
        if cursor is None:
            break
        assert isinstance(cursor, str) and cursor, cursor
        assert len(pages) < 10
    assert pages == [newest_first[0:3], newest_first[3:6], newest_first[6:7]], pages
    # With a filter.
    first, cursor = api.page(service="api", limit=3)
    assert [d["id"] for d in first] == ["list-6", "list-4", "list-2"] and cursor
    rest, cursor = api.page(service="api", limit=3, cursor=cursor)
    assert [d["id"] for d in rest] == ["list-0"] and cursor is None
    # A deployment started between two pages: the pages go on where they were.
    first, cursor = api.page(limit=3)
    api.created(id="list-7", service="api")
    second, cursor = api.page(limit=3, cursor=cursor)
    third, cursor = api.page(limit=3, cursor=cursor)
    assert [d["id"] for d in first + second + third] == newest_first and cursor is None
    assert api.ids()[0] == "list-7"
    assert len(api.ids(limit=50)) == 8


BAD_IDS = ["../etc", "../../healthz", "a/b", "/", "' OR 1=1 --", "a;DROP TABLE deployments",
           "x" * 129, ".hidden", "-dash", "", "a b", "ünï"]


def test_bad_input_is_refused_and_changes_nothing(catalogue, flumen_factory):
    flumen = flumen_factory(config(catalogue))
    api = Api(flumen)
    tricky = {"note": "'; DROP TABLE deployments; --", "quote": 'a "b" \\ c', "ünï": "✓ 日本語",
              "sql": "' OR 1=1 --"}
    a = api.created(id="good-1", service="api", metadata=tricky)
    assert a["metadata"] == tricky
    b = api.created(id="good-2", service="web")
    api.finished("good-2", "succeeded", message="it's \"done\"; DROP TABLE x; -- ✓")
    assert api.shown("good-2")["message"] == "it's \"done\"; DROP TABLE x; -- ✓"
    assert api.created(id="x" * 128)["id"] == "x" * 128
    assert api.created(id="A1._-z")["id"] == "A1._-z"
    listing = api.everything()
    assert {d["id"] for d in listing} == {"good-1", "good-2", "x" * 128, "A1._-z"}

    def status_of(r: requests.Response) -> int:
        if r.status_code >= 400:
            assert r.text.strip(), f"a {r.status_code} that does not say why"
        return r.status_code

    # Finishing: unknown, twice, a bad status.
    assert status_of(api.finish("no-such-deployment")) == 404
    assert status_of(api.finish("good-2", "failed")) == 409
    assert api.shown("good-2")["status"] == "succeeded"
    for status in ("done", "SUCCEEDED", "running", "", None):
        assert status_of(api.finish("good-1", status)) == 400, status
    assert status_of(requests.post(api.path("good-1") + "/finish", json={"status": 1}, timeout=10)) == 400
    assert api.shown("good-1")["status"] == "running"

    # Sizes: 1 MB of metadata is too much; 40 KB is kept intact.
    big = {"blob": "x" * 1_000_000}
    assert status_of(api.create(id="too-big", metadata=big)) == 413
    assert api.show("too-big").status_code == 404
    fine = {"blob": "y" * 40_000, "list": list(range(1000))}
    assert api.created(id="big-enough", metadata=fine)["metadata"] == fine
    assert api.shown("big-enough")["metadata"] == fine

    # Shapes and types.
    for body in ({"id": "m-1", "metadata": [1, 2]}, {"id": "m-2", "metadata": "text"},
                 {"id": "m-3", "metadata": 5}, {"id": "m-4", "service": 5},
                 {"id": "m-5", "version": {"a": 1}}, {"id": 7}, {"id": "m-6", "retention": "forever"},
                 {"id": "m-7", "retention": 30}):
        r = requests.post(api.base, json=body, timeout=10)
        assert status_of(r) == 400, (body, r.status_code, r.text)
    for raw in (b"{not json", b"[]", b"\"text\"", b"{\"id\": \"m-8\""):
        r = requests.post(api.base, data=raw, headers={"Content-Type": "application/json"}, timeout=10)
        assert status_of(r) == 400, (raw, r.status_code, r.text)

    # Ids that are not ids: refused on create, not found (or refused) on show and finish.
    for bad in BAD_IDS:
        r = api.create(id=bad, service="evil")
        assert status_of(r) == 400, (bad, r.status_code, r.text)
        if bad:
            assert status_of(api.show(bad)) in (400, 404), bad
            assert status_of(api.finish(bad)) in (400, 404), bad
    # Raw (not encoded) path segments.
    for path in ("/..%2F..%2Fhealthz", "/a%2Fb", "/%27%20OR%201%3D1%20--", "/a;DROP%20TABLE%20deployments"):
        r = requests.get(api.base + path, timeout=10)
        assert r.status_code in (400, 404), (path, r.status_code, r.text)

    # Filters with SQL in them match nothing, and break nothing.
    for params in ({"service": "' OR 1=1 --"}, {"environment": "a;DROP TABLE deployments"},
                   {"service": "api' OR '1'='1"}, {"service": "%"}, {"service": "*"}):
        assert api.ids(**params) == [], params
    for params in ({"status": "running' OR '1'='1"}, {"status": "bogus"}):
        r = api.list(**params)
        assert r.status_code == 400 or (r.status_code == 200 and r.json()["deployments"] == []), (
            params, r.status_code, r.text)
    # Bad paging and time parameters.
    for params in ({"cursor": "not-a-cursor"}, {"cursor": "' OR 1=1 --"}, {"limit": "ten"},
                   {"limit": "-1"}, {"since": "yesterday"}, {"start": "not-a-time"}):
        assert status_of(api.list(**params)) == 400, params

    # Nothing changed, apart from what was created on purpose.
    after = {d["id"]: d for d in api.everything()}
    assert set(after) == {d["id"] for d in listing} | {"big-enough"}
    def fixed(d):  # a running deployment's duration_ms grows
        return {k: v for k, v in d.items() if k != "duration_ms" or d["status"] != "running"}

    for d in listing:
        assert fixed(after[d["id"]]) == fixed(api.shown(d["id"])) == fixed(d), d["id"]
    assert a["metadata"] == after["good-1"]["metadata"] and b["id"] in after

    # 200 KB of metadata: under the body's limit (256 KiB), the only size the contract names.
    # Kept, or refused as too large (413) if the server caps metadata below that.
    r = api.create(id="bigger", metadata={"blob": "z" * 200_000})
    assert r.status_code in (201, 413), (r.status_code, r.text[:300])


def test_marker_events_are_appended_to_the_log(flumen_factory):
    flumen = flumen_factory(config())
    api = Api(flumen)
    api.created(id="mark-1", service="api", environment="prod", version="2.0.0")
    api.finished("mark-1", "failed", message="migration failed")
    api.created(id="mark-2", service="web", environment="staging", version="0.1")
    api.finished("mark-2", "succeeded")

    def markers(id):
        return [e for e in stored(flumen, of_deployment(id)) if e["tag"] == MARKER_TAG]

    one = wait_for(lambda: markers("mark-1") if len(markers("mark-1")) >= 2 else None, 20,
                   "the markers of mark-1")
    assert len(one) == 2, one
    started, finished = (e["record"] for e in one)
    assert {k: started.get(k) for k in ("event", "deployment_id", "service", "environment", "version",
                                        "level")} == {
        "event": "deployment_started", "deployment_id": "mark-1", "service": "api",
        "environment": "prod", "version": "2.0.0", "level": "info"}, started
    assert {k: finished.get(k) for k in ("event", "deployment_id", "service", "environment",
                                         "version", "status", "level")} == {
        "event": "deployment_finished", "deployment_id": "mark-1", "service": "api",
        "environment": "prod", "version": "2.0.0", "status": "failed", "level": "error"}, finished
    # The event's line: the contract leaves its wording open; it carries the finish message.
    assert "migration failed" in finished["message"], finished
    two = wait_for(lambda: markers("mark-2") if len(markers("mark-2")) >= 2 else None, 20,
                   "the markers of mark-2")
    assert [(e["record"]["event"], e["record"]["level"]) for e in two] == [
        ("deployment_started", "info"), ("deployment_finished", "info")]
    assert two[1]["record"]["status"] == "succeeded"


# ---------------------------------------------------------------------------------------
# flumen run and the deployment's live stream


def test_a_deploy_script_under_flumen_run_is_tailed_to_its_end(catalogue, flumen_factory, tmp_path):
    flumen = flumen_factory(config(catalogue))
    api = Api(flumen)
    gate = tmp_path / "go"
    proc = spawn_run(flumen, tmp_path / "buf", "--deployment", "rel-1", "--service", "api",
                     "--env", "staging", "--version", "1.4.2",
                     "--", "sh", "-c", gated_script(gate, "api", 200))
    out_lines, err_lines = expected_output("api", 200)

    async def main():
        d = await asyncio.to_thread(wait_registered, api, "rel-1", proc)
        assert d["status"] == "running" and d["service"] == "api", d
        assert d["environment"] == "staging" and d["version"] == "1.4.2", d
        tail = await Tail.open(flumen, "rel-1")
        await asyncio.sleep(0.3)
        gate.touch()
        code, out, err = await asyncio.to_thread(finish_run, proc)
        assert code == 0, err
        assert out.decode().splitlines() == out_lines
        assert err.decode().splitlines() == err_lines
        await tail.wait_closed(30)
        assert tail.lines("stdout") == out_lines
        assert tail.lines("stderr") == err_lines
        kinds = [r["event"] for r in tail.records() if r.get("event") in ("command_started", "command_finished")]
        assert kinds[-1:] == ["command_finished"], kinds
        assert_ended(tail, "rel-1", "succeeded")

    asyncio.run(main())
    d = api.counted("rel-1", 200 + 20 + 2)  # every line and the two lifecycle events
    assert d["status"] == "succeeded" and d["events"]["total"] == 222, d
    assert d["finished_at"] is not None


def test_a_failing_script_ends_the_deployment_failed(flumen_factory, tmp_path):
    flumen = flumen_factory(config())
    api = Api(flumen)
    gate = tmp_path / "go"
    proc = spawn_run(flumen, tmp_path / "buf", "--deployment", "rel-bad", "--service", "db",
                     "--", "sh", "-c", gated_script(gate, "db", 30, exit_code=3))
    out_lines, err_lines = expected_output("db", 30)
    wait_registered(api, "rel-bad", proc)
    stream = Stream(flumen, "rel-bad")
    try:
        time.sleep(0.3)
        gate.touch()
        code, out, err = finish_run(proc)
        assert code == 3, err
        stream.wait_ended(30)
        lines = [r["message"] for r in stream.records() if r.get("source") == "stdout"]
        assert lines == out_lines
        assert all(r.get("deployment_id") == "rel-bad" for r in stream.records())
        # The end, last: then the response ended.
        assert stream.kinds().count("end") == 1 and stream.kinds()[-1] == "end", stream.messages[-3:]
        end = json.loads(stream.messages[-1][2])
        assert end["deployment_id"] == "rel-bad" and end["status"] == "failed", end
        assert "finished_at" in end and "message" in end, end
        assert "gap" not in stream.kinds(), stream.kinds()
    finally:
        stream.close()
    d = api.shown("rel-bad")
    assert d["status"] == "failed" and d["service"] == "db", d

    async def after_the_end():
        tail = await Tail.open(flumen, "rel-bad")
        await tail.wait_closed(20)
        assert tail.lines("stdout") == out_lines
        assert tail.lines("stderr") == err_lines
        assert_ended(tail, "rel-bad", "failed")

    asyncio.run(after_the_end())


def test_a_script_killed_by_sigterm_ends_the_deployment_cancelled(flumen_factory, tmp_path):
    flumen = flumen_factory(config())
    api = Api(flumen)
    proc = spawn_run(flumen, tmp_path / "buf", "--deployment", "rel-stop", "--service", "api",
                     "--", "sh", "-c", "echo ready; exec sleep 20")
    try:
        wait_registered(api, "rel-stop", proc)
        assert proc.stdout.readline() == b"ready\n"
        os.killpg(proc.pid, signal.SIGTERM)
        code, _, err = finish_run(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 128 + signal.SIGTERM, err
    d = wait_for(lambda: (lambda d: d if d["status"] != "running" else None)(api.shown("rel-stop")),
                 20, "rel-stop finished")
    assert d["status"] == "cancelled", d


def test_flumen_run_registers_only_with_server_or_flumen_server_set(flumen_factory, tmp_path):
    flumen = flumen_factory(config())
    api = Api(flumen)
    p = subprocess.run(run_args(flumen, tmp_path / "buf", "--deployment", "unregistered", "--",
                                "echo", "hi", api=False),
                       capture_output=True, timeout=RUN_TIMEOUT, env=_env(), stdin=subprocess.DEVNULL)
    assert p.returncode == 0 and p.stdout == b"hi\n", p.stderr
    wait_for(lambda: stored(flumen, of_deployment("unregistered")) or None, 20, "the line stored")
    assert api.show("unregistered").status_code == 404
    assert api.everything() == []

    p = subprocess.run(run_args(flumen, tmp_path / "buf", "--deployment", "by-env", "--service", "web",
                                "--", "echo", "hi", api=False),
                       capture_output=True, timeout=RUN_TIMEOUT, env=_env(**{API_ENV: flumen.api}),
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0 and p.stdout == b"hi\n", p.stderr
    d = api.shown("by-env")
    assert d["status"] == "succeeded" and d["service"] == "web", d


def test_concurrent_deployments_do_not_mix(catalogue, flumen_factory, tmp_path):
    flumen = flumen_factory(config(catalogue))
    api = Api(flumen)
    gate = tmp_path / "go"
    services = {"api": 0, "web": 0, "billing": 5, "search": 0}  # service: exit code
    n = 300
    procs = {s: spawn_run(flumen, tmp_path / f"buf-{s}", "--deployment", f"conc-{s}", "--service", s,
                          "--env", "prod", "--", "sh", "-c", gated_script(gate, s, n, exit_code=code))
             for s, code in services.items()}
    try:
        async def main():
            for s, proc in procs.items():
                await asyncio.to_thread(wait_registered, api, f"conc-{s}", proc)
            tails = {s: await Tail.open(flumen, f"conc-{s}") for s in services}
            await asyncio.sleep(0.3)
            gate.touch()
            # Each run waited for on a thread of its own.
            with ThreadPoolExecutor(len(procs)) as pool:
                results = dict(zip(procs, await asyncio.gather(*(
                    asyncio.get_running_loop().run_in_executor(pool, finish_run, proc)
                    for proc in procs.values()))))
            for s, (code, out, err) in results.items():
                assert code == services[s], (s, code, err)
                assert out.decode().splitlines() == expected_output(s, n)[0], s
            for s, tail in tails.items():
                await tail.wait_closed(30)
                out_lines, err_lines = expected_output(s, n)
                assert tail.lines("stdout") == out_lines, s
                assert tail.lines("stderr") == err_lines, s
                assert {r.get("service") for r in tail.records() if "source" in r} == {s}
                assert_ended(tail, f"conc-{s}", "failed" if services[s] else "succeeded")

        asyncio.run(main())
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    for s, code in services.items():
        id = f"conc-{s}"
        d = api.counted(id, n + n // 10 + 2)
        in_store = [e for e in stored(flumen, of_deployment(id)) if e["tag"] != MARKER_TAG]
        assert d["events"]["total"] == len(in_store) == n + n // 10 + 2, (id, d["events"], len(in_store))
        assert d["status"] == ("failed" if code else "succeeded") and d["service"] == s, d
    assert sorted(d["id"] for d in api.everything(environment="prod")) == sorted(
        f"conc-{s}" for s in services)


def deployment_record(id: str, i: int) -> dict:
    return {"deployment_id": id, "level": ["info", "info", "warn", "error"][i % 4], "n": i,
            "message": f"{id} step {i}"}


def test_a_restart_during_a_deployment_loses_nothing(catalogue, flumen_factory):
    flumen = flumen_factory(config(catalogue))
    api = Api(flumen)
    api.created(id="before", service="web")
    done = api.finished("before", "failed", message="rolled back")
    running = api.created(id="d-restart", service="api", environment="prod", version="3.1",
                          metadata={"ticket": "OPS-9"})

    def send(numbers):
        records = []
        for i in numbers:
            records.append(deployment_record("d-restart", i))
            if i % 10 == 0:
                records.append({"level": "info", "n": i, "message": "not a deployment's"})
        send_records(flumen, records, tag="app.deploy")

    async def main():
        tail = await Tail.open(flumen, "d-restart")
        await asyncio.sleep(0.3)
        await asyncio.to_thread(send, range(100))
        assert await tail.wait_numbers(100) == list(range(100))
        await asyncio.to_thread(flumen.stop)
        assert await tail.wait_closed(20) == (1012, {"reason": "shutting down", "reconnect": True})
        await asyncio.to_thread(flumen.start)

        # The catalogue is as it was.
        again = await asyncio.to_thread(api.shown, "d-restart")
        assert {k: again[k] for k in ("status", "started_at", "metadata", "service", "version")} == {
            k: running[k] for k in ("status", "started_at", "metadata", "service", "version")}
        was = await asyncio.to_thread(api.shown, "before")
        assert {k: v for k, v in was.items() if k != "events"} == {
            k: v for k, v in done.items() if k != "events"}

        await asyncio.to_thread(send, range(100, 200))  # before the client is back
        resumed = await Tail.open(flumen, "d-restart", after=tail.last_position())
        await resumed.wait_numbers(100)
        await asyncio.to_thread(send, range(200, 250))  # while it is back
        await resumed.wait_numbers(150)
        await asyncio.to_thread(api.finished, "d-restart", "succeeded")
        await resumed.wait_closed(30)
        assert tail.numbers() + resumed.numbers() == list(range(250))
        positions = [e["position"] for e in tail.events() + resumed.events()]
        assert len(positions) == len(set(positions))
        assert_ended(resumed, "d-restart", "succeeded")

    asyncio.run(main())
    d = api.counted("d-restart", 250)
    assert d["events"]["total"] == 250, d["events"]
    levels = [deployment_record("d-restart", i)["level"] for i in range(250)]
    assert d["events"]["by_level"] == {level: levels.count(level) for level in set(levels)}, d["events"]


def test_a_deployment_stream_with_a_query_and_unknown_deployments(flumen_factory):
    flumen = flumen_factory(config())
    api = Api(flumen)
    api.created(id="q-1", service="api")
    api.created(id="q-2", service="api")
    send_records(flumen, [deployment_record(id, i) for i in range(40) for id in ("q-1", "q-2")],
                 tag="app.deploy")
    wait_for(lambda: len(stored(flumen, '{deployment_id=~"q-.*"}')) >= 80 or None, 20, "stored")
    stream = Stream(flumen, "q-1", query='{level="error"}')
    try:
        time.sleep(0.5)
        api.finished("q-1", "succeeded")
        stream.wait_ended(30)
        assert [r["n"] for r in stream.records()] == [i for i in range(40) if i % 4 == 3]
        assert all(r["deployment_id"] == "q-1" for r in stream.records())
        assert stream.kinds()[-1] == "end", stream.kinds()[-3:]
    finally:
        stream.close()

    r = requests.get(f"{flumen.api}/api/v1/stream", params={"deployment": "no-such"}, timeout=10)
    assert r.status_code == 404, (r.status_code, r.text)
    r = requests.get(f"{flumen.api}/api/v1/stream", params={"deployment": "../etc"}, timeout=10)
    assert r.status_code in (400, 404), (r.status_code, r.text)
    assert asyncio.run(ws_refused(flumen, "no-such")) in (404, 4404)


# ---------------------------------------------------------------------------------------
# PostgreSQL going away


def wait_api_back(api: Api, timeout: float = 30) -> None:
    def back():
        try:
            return api.list().status_code == 200
        except requests.RequestException:
            return False
    wait_for(back, timeout, "the deployments API answering 200 again", interval=0.5)


def assert_unavailable(r: requests.Response, what: str, bodies: list) -> None:
    """A 503; its body (the API's errors are plain text, as the rest of flumen's API) is kept
    in `bodies` to be checked at the end of the test (so that the rest of the scenario runs
    whatever it is)."""
    assert r.status_code == 503, (what, r.status_code, r.text)
    bodies.append((what, r.text))


def assert_error_bodies(bodies: list) -> None:
    for what, text in bodies:
        assert "unavailable" in text, f"{what}: the 503 does not say the catalogue is unavailable: {text!r}"


def test_postgresql_down_ingest_goes_on_and_the_api_says_503_until_it_is_back(
        postgres, flumen_factory):
    flumen = flumen_factory(config(f'\n[deployments]\ndatabase = "{postgres.url}"\n'))
    api = Api(flumen)
    api.created(id="pg-1", service="api")
    send_acked(flumen, "app.deploy", [deployment_record("pg-1", i) for i in range(20)], "before")
    api.counted("pg-1", 20, settle=0)

    postgres.stop()
    # Ingest goes on: acknowledged and stored.
    started = time.monotonic()
    send_acked(flumen, "app.deploy", [deployment_record("pg-1", i) for i in range(20, 60)], "during")
    assert time.monotonic() - started < 5, "the ack took long"
    wait_for(lambda: len(stored(flumen, of_deployment("pg-1"))) >= 61 or None, 20,
             "the events sent while PostgreSQL is down stored")
    assert sorted(e["record"]["n"] for e in stored(flumen, of_deployment("pg-1"))
                  if "n" in e["record"]) == list(range(60))
    # The catalogue says it is unavailable, promptly.
    quick = Api(flumen, timeout=10)
    bodies: list = []
    for what, call in (("list", lambda: quick.list()), ("show", lambda: quick.show("pg-1")),
                       ("create", lambda: quick.create(id="pg-2")),
                       ("finish", lambda: quick.finish("pg-1"))):
        began = time.monotonic()
        assert_unavailable(call(), what, bodies)
        assert time.monotonic() - began < 10, what
    assert flumen.get("/healthz").status_code == 200

    postgres.start()
    wait_api_back(api)
    d = api.counted("pg-1", 60)  # counted meanwhile, written once it was back
    assert d["events"]["total"] == 60 and d["status"] == "running", d
    api.created(id="pg-2", service="web")
    api.finished("pg-1", "succeeded")
    assert [x["id"] for x in api.everything()] == ["pg-2", "pg-1"]
    assert api.shown("pg-1")["status"] == "succeeded"
    assert_error_bodies(bodies)


def test_flumen_starts_while_postgresql_is_down(postgres, flumen_factory):
    postgres.stop()
    flumen = flumen_factory(config(f'\n[deployments]\ndatabase = "{postgres.url}"\n'))
    api = Api(flumen)
    send_acked(flumen, "app.deploy", [{"level": "info", "n": i, "message": "m"} for i in range(5)], "c")
    wait_for(lambda: len(stored(flumen, "{}")) >= 5 or None, 20, "the events stored")
    bodies: list = []
    assert_unavailable(api.list(), "list", bodies)
    assert_unavailable(api.create(id="late"), "create", bodies)
    postgres.start()
    wait_api_back(api)
    api.created(id="late", service="api")
    assert api.ids() == ["late"]
    assert_error_bodies(bodies)


# ---------------------------------------------------------------------------------------
# The CLI


def test_the_deploy_cli(flumen_factory):
    flumen = flumen_factory(config('\n[deployments]\ndatabase = "sqlite"\n'))
    api = Api(flumen)

    def deploy(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(FLUMEN_BIN), "deploy", *args], capture_output=True, text=True,
                              timeout=30, env=env or _env(), stdin=subprocess.DEVNULL)

    p = deploy("start", "--id", "cli-1", "--service", "api", "--env", "prod", "--version", "2.0",
               "--commit", "abc", "--by", "alice", "--meta", "team=payments", "--meta", "ticket=OPS-1",
               "--retention", "30d", API_FLAG, flumen.api)
    assert p.returncode == 0 and p.stdout == "cli-1\n", (p.returncode, p.stdout, p.stderr)
    d = api.shown("cli-1")
    assert {k: d[k] for k in ("service", "environment", "version", "commit", "started_by",
                              "metadata", "retention", "status")} == {
        "service": "api", "environment": "prod", "version": "2.0", "commit": "abc",
        "started_by": "alice", "metadata": {"team": "payments", "ticket": "OPS-1"},
        "retention": "30d", "status": "running"}

    # FLUMEN_SERVER instead of --server; a generated id.
    p = deploy("start", "--service", "web", env=_env(**{API_ENV: flumen.api}))
    assert p.returncode == 0, p.stderr
    generated = p.stdout.strip()
    assert GENERATED_ID.match(generated) and p.stdout == generated + "\n", p.stdout
    assert api.shown(generated)["service"] == "web"

    p = deploy("finish", "cli-1", "--exit-code", "2", "--message", "smoke failed", API_FLAG, flumen.api)
    assert p.returncode == 0, p.stderr
    assert {k: api.shown("cli-1")[k] for k in ("status", "message")} == {
        "status": "failed", "message": "smoke failed"}
    p = deploy("finish", generated, "--exit-code", "0", env=_env(**{API_ENV: flumen.api}))
    assert p.returncode == 0, p.stderr
    assert api.shown(generated)["status"] == "succeeded"
    p = deploy("start", "--id", "cli-3", API_FLAG, flumen.api)
    assert p.returncode == 0, p.stderr
    p = deploy("finish", "cli-3", "--status", "cancelled", API_FLAG, flumen.api)
    assert p.returncode == 0, p.stderr
    assert api.shown("cli-3")["status"] == "cancelled"

    # Refusals are errors with a message.
    p = deploy("finish", "cli-1", "--status", "succeeded", API_FLAG, flumen.api)
    assert p.returncode != 0 and p.stderr.strip(), (p.returncode, p.stderr)
    p = deploy("finish", "nope", "--status", "succeeded", API_FLAG, flumen.api)
    assert p.returncode != 0 and p.stderr.strip(), (p.returncode, p.stderr)
    p = deploy("start", "--id", "../x", API_FLAG, flumen.api)
    assert p.returncode != 0 and p.stderr.strip(), (p.returncode, p.stderr)

    def listed(*args: str) -> list[dict]:
        p = deploy("list", *args, "-o", "json", API_FLAG, flumen.api)
        assert p.returncode == 0, p.stderr
        text = p.stdout.strip()
        try:
            body = json.loads(text)
        except json.JSONDecodeError:  # one JSON object a line
            body = [json.loads(line) for line in text.splitlines() if line.strip()]
        return body["deployments"] if isinstance(body, dict) else body

    assert [d["id"] for d in listed()] == ["cli-3", generated, "cli-1"]
    assert [d["id"] for d in listed("--service", "api")] == ["cli-1"]
    assert [d["id"] for d in listed("--status", "succeeded")] == [generated]
    assert [d["id"] for d in listed("--env", "prod", "--since", "1d")] == ["cli-1"]
    assert [d["id"] for d in listed("--limit", "2")][:2] == ["cli-3", generated]
    p = deploy("list", API_FLAG, flumen.api)
    assert p.returncode == 0 and "cli-1" in p.stdout and generated in p.stdout, p.stdout

    p = deploy("show", "cli-1", "-o", "json", API_FLAG, flumen.api)
    assert p.returncode == 0, p.stderr
    shown = json.loads(p.stdout)
    assert {k: v for k, v in shown.items() if k != "events"} == {
        k: v for k, v in api.shown("cli-1").items() if k != "events"}
    p = deploy("show", "cli-1", API_FLAG, flumen.api)
    assert p.returncode == 0 and "cli-1" in p.stdout and "failed" in p.stdout, p.stdout
    p = deploy("show", "nope", API_FLAG, flumen.api)
    assert p.returncode != 0 and p.stderr.strip(), (p.returncode, p.stderr)
