"""Real client libraries from the package registries send to flumen's forward input; every
event must arrive at the file output once, intact, with its nanosecond time."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess

from fluent import sender as fluent_sender

import pytest

from conftest import GO_CLIENT, NODE_DIR, file_output, forward_source, route
from helpers import (check_delivered, event_times, rfc3339_ns, varied_record, wait_closed, wait_for,
                     wait_for_events)

OPENSSL = shutil.which("openssl")


def test_python_fluent_logger_nanosecond_times(catch_all):
    """PyPI fluent-logger 0.11 (no ack support in this library: it never sends `chunk`),
    Message mode, EventTime with nanosecond_precision=True; every 10th event uses an integer
    time, which must come out as .000000000."""
    flumen = catch_all
    n = 500
    expected = []
    s = fluent_sender.FluentSender("python", host="127.0.0.1", port=flumen.ports["fwd"],
                                   nanosecond_precision=True, timeout=10)
    try:
        for i, (sec, nsec) in enumerate(event_times(n)):
            label = "app" if i % 2 else "app.worker"
            record = varied_record(i)
            if i % 10 == 7:
                ts, nsec = sec, 0
            else:
                ts = fluent_sender.EventTime(sec, nsec)
            assert s.emit_with_time(label, ts, record), f"emit #{i} failed: {s.last_error!r}"
            expected.append({"tag": f"python.{label}", "time": rfc3339_ns(sec, nsec), "record": record})
    finally:
        s.close()
    got = wait_for_events(flumen.dir("out"), n)
    check_delivered(expected, got)
    # One file per tag ({{tag}} in the path).
    names = sorted(p.name for p in flumen.dir("out").rglob("*.log"))
    assert names == ["python.app.log", "python.app.worker.log"], names


def _client_events(n: int, tag_of, js_safe=True):
    events, expected = [], []
    for i, (sec, nsec) in enumerate(event_times(n)):
        tag = tag_of(i)
        record = varied_record(i, js_safe=js_safe)
        events.append({"tag": tag, "sec": sec, "nsec": nsec, "record": record})
        expected.append({"tag": tag, "time": rfc3339_ns(sec, nsec), "record": record})
    return events, expected


def _run_client(cmd, events, timeout=90, cwd=None):
    stdin = "".join(json.dumps(e) + "\n" for e in events)
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert proc.returncode == 0, (f"{cmd[0]} exited {proc.returncode}\nstdout: {proc.stdout[-2000:]}\n"
                                  f"stderr: {proc.stderr[-4000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["sent"] == len(events), summary
    return summary


def test_node_fluent_logger_with_acks(catch_all):
    """npm fluent-logger 3.4 with requireAckResponse: true and EventTime, in each of its
    three modes (Message, PackedForward, CompressedPackedForward/gzip). The client only
    finishes once flumen acknowledged every chunk, so the events must then be in the log."""
    flumen = catch_all
    all_expected = []
    offset = 0
    for mode, n in (("Message", 150), ("PackedForward", 200), ("CompressedPackedForward", 200)):
        events, expected = _client_events(n, lambda i, m=mode: f"node.{m.lower()}.{i % 3}")
        for e, x in zip(events, expected):  # ids unique across modes
            e["record"]["id"] += offset
        offset += n
        summary = _run_client(["node", str(NODE_DIR / "send.js"), "--port", str(flumen.ports["fwd"]),
                               "--mode", mode, "--timeout-ms", "60000"], events)
        assert summary["acked"] == n, summary
        all_expected += expected
    got = wait_for_events(flumen.dir("out"), len(all_expected))
    check_delivered(all_expected, got)


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def test_node_fluent_logger_over_tls(flumen_factory, tmp_path):
    """npm fluent-logger with `tls: true` and the server's certificate as its CA, to a Forward
    source with `tls`: every chunk is stored and acknowledged over TLS. A plaintext sender on
    the same port is refused, with a log line that says why."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    tls = f'tls = {{ cert_file = "{cert}", key_file = "{key}" }}'
    flumen = flumen_factory(forward_source(extra=tls) + file_output("all") + route(["**"], ["all"]))
    port = flumen.ports["fwd"]
    events, expected = _client_events(300, lambda i: f"node.tls.{i % 2}")
    summary = _run_client(["node", str(NODE_DIR / "send.js"), "--port", str(port),
                           "--mode", "PackedForward", "--ca", str(cert), "--timeout-ms", "60000"],
                          events)
    assert summary["acked"] == len(events), summary
    check_delivered(expected, wait_for_events(flumen.dir("out"), len(expected)))

    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
        plain.sendall(b"\x93\xa5plain\xce\x00\x00\x00\x01\x81\xa1a\xa1b")
        wait_closed(plain)
    wait_for(lambda: "sends plaintext to a TLS listener" in flumen.stderr_text(), 10,
             "the refused plaintext sender to be logged")


def test_go_fluent_logger_docker_driver_shape(catch_all):
    """fluent-logger-golang (Debian's, the library inside Docker's fluentd logging driver) with
    RequestAck and SubSecondPrecision, sending the driver's record shape with PostWithTime; once
    synchronously and once in async mode."""
    flumen = catch_all
    all_expected = []
    for run, n, extra in (("sync", 250, []), ("async", 150, ["-async"])):
        events, expected = [], []
        for i, (sec, nsec) in enumerate(event_times(n)):
            tag = ["frontend-apache", "backend-api", "docker.3f2a9c"][i % 3]
            cid = f"{run}{i:06d}" + "0" * 52
            record = {
                "container_id": cid,
                "container_name": f"/ecs-task-{run}-{i % 5}",
                "source": "stdout" if i % 4 else "stderr",
                "log": f'{run} line {i} 127.0.0.1 - - "GET /index.html HTTP/1.1" 200 ✓',
            }
            events.append({"tag": tag, "sec": sec, "nsec": nsec, "record": record})
            expected.append({"tag": tag, "time": rfc3339_ns(sec, nsec), "record": record})
        _run_client([str(GO_CLIENT), "-host", "127.0.0.1", "-port", str(flumen.ports["fwd"]), *extra], events)
        all_expected += expected
    # Docker records have no numeric id; key them by container_id.
    for e in all_expected:
        e["record"]["id"] = e["record"]["container_id"]
    got = wait_for_events(flumen.dir("out"), len(all_expected))
    for g in got:
        g["record"]["id"] = g["record"].get("container_id")
    check_delivered(all_expected, got)
