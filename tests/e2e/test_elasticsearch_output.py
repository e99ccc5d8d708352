"""The Elasticsearch output end to end: flumen takes events over Forward (acknowledged chunks,
so every event is durable before the test goes on) and sends them to `POST /_bulk`.

No Elasticsearch or OpenSearch server can be installed on the machines these tests run on (no
network but the package registries, and no JVM server packages in Debian), so the destination
is a stand-in written here with `http.server`: the bulk API as Elastic documents it, strictly.
It refuses a body that does not end with a newline or has a malformed action line (400
`illegal_argument_exception`), a wrong Content-Type (406) and missing or wrong credentials
(401 `security_exception`); it gunzips a `Content-Encoding: gzip` body, refuses index names
Elasticsearch refuses, stores documents by index and `_id` (`create` of an `_id` already there:
409 `version_conflict_engine_exception`), maps `amount` as a number (a document whose `amount`
is not one: 400 `mapper_parsing_exception`, with Elasticsearch's reason), and can be told to
throttle given documents once (429 `es_rejected_execution_exception`), to answer a whole
request 429 with Retry-After or 503, to store a request and drop the connection before
answering, to hold requests, or to be down (its port closed). It counts every document line
it was sent, by the event's number, so that the tests can say how often each one came.

The official Python client (`elasticsearch` on PyPI) is not used: it sends bulk bodies, it
does not read them, so it would check nothing the stand-in does not.
"""

from __future__ import annotations

import base64
import collections
import gzip
import http.server
import json
import socket
import threading
import time

from conftest import forward_source
from helpers import entries_blob, event_time, packb, read_msgpack_reply, rfc3339_ns, wait_for

# 2025-11-21T12:00:00Z; events of the test sit on this day and the next.
BASE = 1763726400
DAY = 86_400

INVALID_INDEX_CHARS = set('\\/*?"<>| ,#:')


class BulkState:
    """What the stand-in knows, kept across its restarts."""

    def __init__(self):
        self.lock = threading.Lock()
        self.indices: dict[str, dict[str, dict]] = collections.defaultdict(dict)
        self.seen: collections.Counter = collections.Counter()  # event number -> lines sent
        self.requests: list[tuple[float, str, int]] = []  # (when, what was done, status)
        self.script: list[str] = []  # whole-request answers: "429", "503", "store_then_drop"
        self.throttle_once: set[int] = set()  # event numbers answered 429 the first time
        self.held = threading.Event()  # set while requests are let through
        self.held.set()
        self.waiting = 0  # requests being held
        self.auth: str | None = None  # the Authorization header expected
        self.next_id = 0

    def documents(self) -> list[tuple[str, dict]]:
        with self.lock:
            return [(index, doc) for index, docs in self.indices.items() for doc in docs.values()]

    def count(self) -> int:
        with self.lock:
            return sum(len(docs) for docs in self.indices.values())


def es_error(kind: str, reason: str, status: int) -> dict:
    return {"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind,
                      "reason": reason}, "status": status}


class BulkHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def answer(self, status: int, body: dict | None, headers: dict | None = None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        # One request per connection: once stopped, the stand-in is really away.
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        state: BulkState = self.server.state
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        state.waiting += 1
        state.held.wait(timeout=30)
        state.waiting -= 1
        if self.path.split("?")[0] != "/_bulk":
            return self.answer(404, es_error("no_handler_found", self.path, 404))
        if self.headers.get("Content-Type") != "application/x-ndjson":
            return self.answer(406, {"error": f"Content-Type header [{self.headers.get('Content-Type')}] is not supported", "status": 406})
        if state.auth is not None and self.headers.get("Authorization") != state.auth:
            return self.answer(401, es_error("security_exception",
                                             "missing authentication credentials for REST request [/_bulk]", 401),
                               {"WWW-Authenticate": 'Basic realm="security", ApiKey'})
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        with state.lock:
            action = state.script.pop(0) if state.script else "pass"
        if action == "429":
            self.record(state, "429", 429)
            return self.answer(429, es_error("es_rejected_execution_exception",
                                             "rejected execution of coordinating operation", 429),
                               {"Retry-After": "1"})
        if action == "503":
            self.record(state, "503", 503)
            return self.answer(503, es_error("cluster_block_exception",
                                             "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered];", 503))
        status, answer = self.bulk(state, body)
        self.record(state, action, status)
        if action == "store_then_drop":
            # Stored, but the answer never arrives: the sender cannot know and sends again.
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.answer(status, answer)

    @staticmethod
    def record(state: BulkState, what: str, status: int):
        with state.lock:
            state.requests.append((time.monotonic(), what, status))

    def bulk(self, state: BulkState, body: bytes) -> tuple[int, dict]:
        if not body.endswith(b"\n"):
            return 400, es_error("illegal_argument_exception",
                                 "The bulk request must be terminated by a newline [\\n]", 400)
        lines = body.decode("utf-8").split("\n")[:-1]
        if len(lines) % 2:
            return 400, es_error("action_request_validation_exception",
                                 "Validation Failed: 1: no requests added;", 400)
        items = []
        for i in range(0, len(lines), 2):
            try:
                action_line = json.loads(lines[i])
                doc = json.loads(lines[i + 1])
            except json.JSONDecodeError as e:
                return 400, es_error("x_content_parse_exception", str(e), 400)
            if (not isinstance(action_line, dict) or len(action_line) != 1
                    or next(iter(action_line)) not in ("index", "create")
                    or not isinstance(next(iter(action_line.values())), dict)
                    or not isinstance(doc, dict)):
                return 400, es_error("illegal_argument_exception",
                                     f"Malformed action/metadata line [{i + 1}], expected one of "
                                     f"[create, delete, index, update] but found [{lines[i][:40]}]", 400)
            op, meta = next(iter(action_line.items()))
            items.append({op: self.item(state, op, meta, doc)})
        return 200, {"took": 3, "errors": any(v["status"] >= 300 for it in items for v in it.values()),
                     "items": items}

    @staticmethod
    def item(state: BulkState, op: str, meta: dict, doc: dict) -> dict:
        index, doc_id = meta.get("_index"), meta.get("_id")
        n = doc.get("n")
        with state.lock:
            state.seen[n] += 1
            if (not index or index != index.lower() or index[0] in "-_+"
                    or INVALID_INDEX_CHARS & set(index)):
                return {"_index": index, "status": 400, "error": {
                    "type": "invalid_index_name_exception", "reason": f"Invalid index name [{index}]"}}
            if n in state.throttle_once:
                state.throttle_once.discard(n)
                return {"_index": index, "status": 429, "error": {
                    "type": "es_rejected_execution_exception",
                    "reason": "rejected execution of primary operation [coordinating_and_primary_bytes=0, max_coordinating_and_primary_bytes=0]"}}
            amount = doc.get("amount")
            if amount is not None and not isinstance(amount, (int, float)):
                return {"_index": index, "_id": doc_id, "status": 400, "error": {
                    "type": "document_parsing_exception",
                    "reason": f"[1:2] failed to parse field [amount] of type [float] in document with id '{doc_id}'. Preview of field's value: '{amount}'",
                    "caused_by": {"type": "number_format_exception",
                                  "reason": f"For input string: \"{amount}\""}}}
            docs = state.indices[index]
            if doc_id is None:
                state.next_id += 1
                doc_id = f"auto-{state.next_id}"
            elif op == "create" and doc_id in docs:
                return {"_index": index, "_id": doc_id, "status": 409, "error": {
                    "type": "version_conflict_engine_exception",
                    "reason": f"[{doc_id}]: version conflict, document already exists (current version [1])",
                    "index": index}}
            docs[doc_id] = doc
            return {"_index": index, "_id": doc_id, "_version": 1, "result": "created",
                    "_shards": {"total": 2, "successful": 1, "failed": 0}, "status": 201,
                    "_seq_no": 0, "_primary_term": 1}


class BulkStandIn:
    """The stand-in on a port of its own, which `stop()` closes and `start()` opens again."""

    def __init__(self):
        self.state = BulkState()
        self.server: http.server.ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    def start(self):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), BulkHandler)
        self.server.daemon_threads = True
        self.server.state = self.state
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def es_output(url: str, extra: str) -> str:
    return f"""
[outputs.es]
type = "elasticsearch"
url = "{url}"
batch = {{ max_events = 100, timeout = "50ms" }}
retry = {{ initial_backoff = "50ms", max_backoff = "2s", max_duration = "1h" }}
timeout = "5s"
{extra}

[[routes]]
match = ["**"]
outputs = ["es"]
"""


def record(n: int) -> dict:
    return {"n": n, "request_id": f"req-{n}", "service": ["Checkout", "search"][n % 2],
            "message": f"order {n} placed ✓", "amount": n * 1.5}


def event_at(n: int) -> tuple[int, int]:
    """Event n's time: the first half on BASE's day, the rest on the next, to the nanosecond."""
    return BASE + (n % 100) + (DAY if n >= 100 else 0), n * 1_000_003 % 1_000_000_000


def send(flumen, numbers, make=record, chunk: int = 50) -> list[dict]:
    """Sends events `numbers` as acknowledged PackedForward chunks (tag app.<service>): once
    this returns, flumen holds them durably. Returns the records sent."""
    numbers = list(numbers)
    sent = []
    with socket.create_connection(("127.0.0.1", flumen.ports["fwd"]), timeout=10) as s:
        for start in range(0, len(numbers), chunk):
            entries = []
            for n in numbers[start:start + chunk]:
                sec, nsec = event_at(n)
                entries.append((event_time(sec, nsec), make(n)))
                sent.append(make(n))
            chunk_id = f"c{numbers[start]}-{time.monotonic_ns()}"
            s.sendall(packb(["app.shop", entries_blob(entries), {"chunk": chunk_id}]))
            assert read_msgpack_reply(s) == {"ack": chunk_id}
    return sent


def wait_documents(stand_in: BulkStandIn, count: int, timeout: float = 15) -> list[tuple[str, dict]]:
    wait_for(lambda: stand_in.state.count() >= count or None, timeout, f"{count} documents")
    time.sleep(0.3)  # anything sent twice would show up meanwhile
    return stand_in.state.documents()


def check_once(docs: list[tuple[str, dict]], numbers) -> None:
    got = sorted(doc["n"] for _, doc in docs)
    assert len(got) == len(set(got)), f"{len(got) - len(set(got))} documents stored twice"
    assert got == sorted(numbers), f"missing {sorted(set(numbers) - set(got))[:10]}"


def test_events_arrive_complete_and_in_order_in_time_partitioned_indices(flumen_factory):
    stand_in = BulkStandIn()
    stand_in.state.auth = "Basic " + base64.b64encode(b"elastic:s3cret").decode()
    try:
        f = flumen_factory(forward_source() + es_output(stand_in.url, """
index = "logs-{{service}}-%Y.%m.%d"
tag_field = "tag"
compression = "gzip"
auth = { user = "elastic", password = "s3cret" }
"""))
        sent = send(f, range(200))
        docs = wait_documents(stand_in, 200)
        check_once(docs, range(200))
        by_n = {r["n"]: r for r in sent}
        by_index = collections.defaultdict(list)
        for index, doc in docs:
            by_index[index].append(doc["n"])
            sec, nsec = event_at(doc["n"])
            assert doc == {"@timestamp": rfc3339_ns(sec, nsec), "tag": "app.shop",
                           **by_n[doc["n"]]}, doc
        # Lowercased service, the event's day; within an index, in the order sent.
        assert sorted(by_index) == ["logs-checkout-2025.11.21", "logs-checkout-2025.11.22",
                                    "logs-search-2025.11.21", "logs-search-2025.11.22"]
        assert by_index["logs-checkout-2025.11.21"] == list(range(0, 100, 2))
        assert by_index["logs-search-2025.11.22"] == list(range(101, 200, 2))
    finally:
        stand_in.stop()


def test_down_for_a_while_and_an_answer_lost_lose_and_double_nothing_with_id_field(flumen_factory):
    stand_in = BulkStandIn()
    api_key = "VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw"
    stand_in.state.auth = "ApiKey " + base64.b64encode(api_key.encode()).decode()
    try:
        f = flumen_factory(forward_source() + es_output(stand_in.url, f"""
mode = "create"
index = "orders"
id_field = "request_id"
api_key = "{api_key}"
"""))
        send(f, range(50))
        check_once(wait_documents(stand_in, 50), range(50))

        # Down: the port closed while events come in.
        stand_in.stop()
        send(f, range(50, 120))
        time.sleep(1.5)  # flumen retries against a closed port meanwhile
        # Back, but the first request's answer is lost after its documents were stored:
        # flumen sends them again, and `create` with their `_id` finds them there (409).
        stand_in.state.script = ["store_then_drop"]
        stand_in.start()
        wait_documents(stand_in, 120)
        # The resend comes after the driver's backoff; until then flumen is not done.
        wait_for(lambda: [n for n, times in stand_in.state.seen.items() if times > 1] or None,
                 10, "the documents whose answer was lost sent again")
        time.sleep(0.3)
        check_once(stand_in.state.documents(), range(120))
        assert all(doc_id == doc["request_id"] for doc_id, doc in
                   stand_in.state.indices["orders"].items())
        whats = [what for _, what, _ in stand_in.state.requests]
        assert whats[:2] == ["pass", "store_then_drop"], whats
        assert not f.data_dir.joinpath("dead-letter", "es.jsonl").exists(), "409s are delivered"
    finally:
        stand_in.stop()


def test_only_throttled_items_are_resent_and_mapping_rejections_are_dead_lettered(flumen_factory):
    stand_in = BulkStandIn()
    # The whole first request: 429, Retry-After: 1. Then item by item: every n % 10 == 7 is
    # throttled once; every n % 10 == 3 has an `amount` Elasticsearch cannot map.
    stand_in.state.script = ["429"]
    stand_in.state.throttle_once = {n for n in range(60) if n % 10 == 7}
    rejected = [n for n in range(60) if n % 10 == 3]

    def make(n: int) -> dict:
        return {**record(n), "amount": "n/a"} if n in rejected else record(n)

    try:
        f = flumen_factory(forward_source() + es_output(stand_in.url, 'index = "shop"'))
        send(f, range(60), make=make)
        docs = wait_documents(stand_in, 60 - len(rejected))
        check_once(docs, [n for n in range(60) if n not in rejected])
        (t429, first, status), (t_next, _, _) = stand_in.state.requests[:2]
        assert (first, status) == ("429", 429)
        assert t_next - t429 >= 0.95, f"retried {t_next - t429:.2f}s after a Retry-After: 1"
        # Item by item: the throttled ones twice, the rejected ones once (never retried), the
        # rest once; the whole-request 429 never reached the items.
        seen = stand_in.state.seen
        assert {n: seen[n] for n in range(60) if seen[n] != 1} == {
            n: 2 for n in range(60) if n % 10 == 7}, dict(seen)

        dead = f.data_dir / "dead-letter" / "es.jsonl"
        wait_for(lambda: dead.exists() and len(dead.read_text().splitlines()) >= len(rejected),
                 10, "dead letters")
        letters = [json.loads(line) for line in dead.read_text().splitlines()]
        assert sorted(e["record"]["n"] for e in letters) == rejected
        for letter in letters:
            assert letter["error"].startswith(
                "document_parsing_exception: [1:2] failed to parse field [amount] of type [float]"), letter
            assert letter["error"].endswith(
                "(caused by number_format_exception: For input string: \"n/a\")"), letter
    finally:
        stand_in.stop()


def test_kill_9_mid_delivery_then_restart_loses_nothing(flumen_factory):
    stand_in = BulkStandIn()
    stand_in.state.held.clear()  # requests wait: deliveries stay in flight
    try:
        config = forward_source() + es_output(stand_in.url, """
mode = "create"
index = "shop-%Y.%m.%d"
id_field = "request_id"
""")
        f = flumen_factory(config)
        send(f, range(200))
        wait_for(lambda: stand_in.state.waiting or None, 10, "a bulk request in flight")
        f.kill()
        stand_in.state.held.set()  # the held request is answered to no one
        f.start()
        docs = wait_documents(stand_in, 200)
        check_once(docs, range(200))
        assert sorted({index for index, _ in docs}) == ["shop-2025.11.21", "shop-2025.11.22"]
    finally:
        stand_in.state.held.set()
        stand_in.stop()
