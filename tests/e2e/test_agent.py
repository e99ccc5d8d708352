"""Agent mode: examples/agent.toml (tail -> forward output with acks) in front of an aggregator
flumen (forward source -> file output), as two processes. While the aggregator is down the
agent keeps reading files into its durable log; once the aggregator is back, everything
arrives, once."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from conftest import FLUMEN_BIN, REPO_ROOT, file_output, forward_source, route
from helpers import metric_sum, parse_metrics, read_events, wait_for

EXAMPLE = REPO_ROOT / "examples" / "agent.toml"
AGGREGATOR = forward_source() + file_output("all") + route(["**"], ["all"])


def agent_config(logs: Path, aggregator_port: int) -> str:
    """The example with this test's directories and ports."""
    text = EXAMPLE.read_text()
    replacements = [
        (r'^data_dir = ".*"$', 'data_dir = "@data@"'),
        (r'^address = "127\.0\.0\.1:8081"$', 'address = "127.0.0.1:@port:api@"'),
        (r'^paths = \[.*\]$', f'paths = ["{logs}/*.log"]'),
        (r'address = "aggregator\.internal:24224"', f'address = "127.0.0.1:{aggregator_port}"'),
        (r'^rotate_wait = ".*"$', 'rotate_wait = "1s"\nposition_interval = "200ms"\npoll_interval = "200ms"'),
        (r'recover_wait = "1s"', 'recover_wait = "200ms"'),
        (r'max_backoff = "5s"', 'max_backoff = "500ms"'),
    ]
    for pattern, replacement in replacements:
        text, n = re.subn(pattern, replacement, text, flags=re.M)
        assert n == 1, f"examples/agent.toml no longer has {pattern!r}"
    return text


def write_lines(path: Path, first: int, count: int) -> None:
    with open(path, "a") as f:
        for i in range(first, first + count):
            f.write(f"request {i:06d} GET /api/orders/{i} 200 {i % 97}ms\n")


def numbers(out: Path) -> list[int]:
    return sorted(int(e["record"]["log"].split()[1]) for e in read_events(out))


def test_the_agent_example_is_valid():
    proc = subprocess.run([str(FLUMEN_BIN), "validate", str(EXAMPLE)], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_agent_keeps_its_backlog_while_the_aggregator_is_down(flumen_factory, tmp_path):
    logs = tmp_path / "app-logs"
    logs.mkdir()
    app = logs / "app.log"
    aggregator = flumen_factory(AGGREGATOR, name="aggregator")
    agent = flumen_factory(agent_config(logs, aggregator.ports["fwd"]), name="agent")
    out = aggregator.dir("out")

    write_lines(app, 0, 2000)
    wait_for(lambda: len(read_events(out)) >= 2000, 30, "the first 2000 lines at the aggregator")
    events = read_events(out)
    assert {e["tag"] for e in events} == {"backend.app"}
    assert events[0]["record"]["filename"] == str(app)

    # The aggregator goes away; the application goes on logging and rotates its file.
    assert aggregator.stop() == 0
    write_lines(app, 2000, 3000)
    app.rename(logs / "app.log.1")
    write_lines(app, 5000, 2000)

    def backlog():
        samples = parse_metrics(agent.metrics_text())
        read = metric_sum(samples, "flumen_source_events_total", source="app") or 0
        delivered = metric_sum(samples, "flumen_output_events_total", output="aggregator") or 0
        return read >= 7000 and delivered <= 2000 and (read, delivered)

    # Every line is read into the agent's durable log although nothing can be delivered.
    wait_for(backlog, 30, "the agent to read every line while the aggregator is down")
    # An agent restart meanwhile keeps the backlog too.
    assert agent.stop() == 0
    agent.start()
    time.sleep(1.0)
    assert len(read_events(out)) == 2000

    aggregator.start()
    wait_for(lambda: len(read_events(out)) >= 7000, 60, "the backlog at the aggregator")
    write_lines(app, 7000, 500)
    wait_for(lambda: len(read_events(out)) >= 7500, 30, "new lines after the catch-up")
    time.sleep(1.0)
    assert numbers(out) == list(range(7500))
