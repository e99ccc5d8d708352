"""Processing end to end, with real senders: the Python fluent-logger sends what a container
wrote — JSON log lines, a real Python traceback line by line, a secret — and flumen parses,
joins, enriches and redacts it, stores everything in files and sends the errors to a Slack-shaped
webhook served by a real HTTP server in this test."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fluent import sender as fluent_sender

from conftest import file_output, forward_source, route
from helpers import metric_sum, parse_metrics, read_events, wait_for, wait_for_events

DATA = Path(__file__).resolve().parents[1] / "data"

FILTERS = """
[[filters]]
type = "multiline"
match = ["app.**"]
mode = "python"
flush_timeout = "500ms"

[[filters]]
type = "parse"
match = ["app.**"]
format = "json"

[[filters]]
type = "enrich"
set = { environment = "staging" }

[[filters]]
type = "redact"
"""


class Webhook:
    """A real HTTP server that records what it is sent."""

    def __init__(self):
        self.requests: list[dict] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def test_container_logs_are_joined_parsed_redacted_and_errors_alerted(flumen_factory):
    webhook = Webhook()
    try:
        config = (
            forward_source("fwd")
            + file_output("store", "store")
            + f"""
[outputs.alerts]
type = "webhook"
format = "slack"
url = "http://127.0.0.1:{webhook.port}/hooks/T000/B000"
template = "{{{{level}}}} in {{{{service}}}}: {{{{msg}}}}"
batch = {{ timeout = "50ms" }}
"""
            + FILTERS
            + route(["app.**"], ["alerts", "store"], select='{level=~"ERROR|FATAL"}')
            + route(["**"], ["store"])
        )
        flumen = flumen_factory(config)
        traceback = (DATA / "multiline" / "python-chained.log").read_text().splitlines()
        lines = (
            ['{"level":"info","msg":"worker starting","service":"billing"}']
            + traceback
            + [
                '{"level":"error","msg":"charge failed","service":"billing"}',
                '{"level":"info","msg":"retrying with token Bearer abcdef0123456789abcdef","service":"billing"}',
            ]
        )
        s = fluent_sender.FluentSender("app", host="127.0.0.1", port=flumen.ports["fwd"], timeout=10)
        try:
            for n, line in enumerate(lines):
                record = {
                    "container_id": "6d33ade920a96179205e01c3a17d6e7f3eb98f0d5bb2b494383250220e7f443c",
                    "container_name": "/ecs-billing-7-worker-d492a08f9480c2fcca01",
                    "source": "stderr",
                    "log": line + "\n",
                }
                assert s.emit_with_time("billing", 1700000000 + n, record), s.last_error
        finally:
            s.close()

        events = wait_for_events(flumen.dir("store"), 4)
        assert len(events) == 4, [e["record"] for e in events]
        records = [e["record"] for e in events]
        assert records[0]["msg"] == "worker starting"
        assert records[0]["environment"] == "staging"
        assert records[0]["service"] == "billing", "the sender's own field"
        # The traceback, every line of it, in one event; not JSON, so kept as text and marked.
        joined = records[1]["log"]
        assert joined.rstrip("\n") == "\n".join(traceback)
        assert "parse_error" in records[1]
        assert records[1]["service"] == "worker", "from the ECS container name"
        assert records[1]["version"] == "7"
        assert records[2]["level"] == "ERROR"
        assert "abcdef0123456789abcdef" not in json.dumps(records[3])

        wait_for(lambda: webhook.requests, 20, "the alert webhook to be called")
        texts = " ".join(r["text"] for r in webhook.requests)
        assert "ERROR in billing: charge failed" in texts, texts
        assert "worker starting" not in texts

        samples = parse_metrics(flumen.metrics_text())
        assert metric_sum(samples, "flumen_filter_errors_total") >= 1
        assert metric_sum(samples, "flumen_filter_redactions_total") >= 1
    finally:
        webhook.close()
