"""The Firehose output end to end, against moto in server mode (PyPI `moto[server]`), a mock of
AWS: it is the only Firehose there is to test against here. moto answers `PutRecordBatch` as
Firehose does, and delivers each call's records, concatenated, into one object of its S3 mock
(or posts them to an HTTP endpoint destination); the tests read them back with boto3, as a
user of the bucket would. Events go in over Forward (the PyPI fluent-logger).

What moto does not do: check SigV4 signatures (the unit tests check the signing), enforce the
500 records / 4 MB / 1,000 KiB limits (the unit tests check the splitting), or fail single
records (`FailedPutCount` is always 0: the per-record retry is covered by the unit tests,
against an in-process stand-in). Its state lives in memory, so a restarted moto has lost its
streams and buckets: the test that stops it makes them again.

Checked: every event arrives complete and in order, one JSON line each; aggregation packs
several events into one record; moto down for a while, then back: nothing lost (Firehose has no
idempotence, so a call whose answer was lost may double: counted, not failed); a missing stream
is retried, not dead-lettered, and the events go through once it exists; an event larger than a
record is dead-lettered at once with its reason; `kill -9` of flumen mid-delivery: nothing lost.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
import requests
from botocore.config import Config
from fluent import sender as fluent_sender

from conftest import forward_source, free_port
from helpers import metric_sum, parse_metrics, wait_for

ACCESS_KEY = "AKIDFLUMENTEST"
SECRET_KEY = "flumen/test+secret"
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/firehose"
_names = itertools.count()


class Moto:
    """A `python3 -m moto.server` process on a port of its own; `restart` keeps the port."""

    def __init__(self):
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        kw = dict(endpoint_url=self.url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                  aws_secret_access_key=SECRET_KEY,
                  config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10))
        self.s3 = boto3.client("s3", **kw)
        self.firehose = boto3.client("firehose", **kw)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, 20, "moto to answer")

    def _answers(self) -> bool:
        try:
            return requests.get(self.url + "/moto-api/", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def create_stream(self, stream: str, bucket: str | None = None,
                      http_url: str | None = None) -> None:
        """A DirectPut stream into `bucket` (made here) of moto's S3, or to `http_url`."""
        if http_url:
            self.firehose.create_delivery_stream(
                DeliveryStreamName=stream, DeliveryStreamType="DirectPut",
                HttpEndpointDestinationConfiguration={
                    "EndpointConfiguration": {"Url": http_url},
                    "S3Configuration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::unused"}})
            return
        self.s3.create_bucket(Bucket=bucket)
        self.firehose.create_delivery_stream(
            DeliveryStreamName=stream, DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={"RoleARN": ROLE,
                                                "BucketARN": f"arn:aws:s3:::{bucket}"})

    def objects(self, bucket: str) -> list[bytes]:
        """The bodies of the bucket's objects: one per PutRecordBatch call."""
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return [self.s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys]


@pytest.fixture(scope="module")
def moto():
    server = Moto()
    server.start()
    yield server
    server.stop()


def names() -> tuple[str, str]:
    """A stream and a bucket of the test's own (moto is shared by the module)."""
    n = next(_names)
    return f"logs-{n}", f"firehose-logs-{n}"


def firehose_output(moto: Moto, stream: str, extra: str = "", max_events: int = 2000) -> str:
    return f"""
[outputs.firehose]
type = "firehose"
delivery_stream = "{stream}"
endpoint = "{moto.url}"
region = "{REGION}"
auth = {{ access_key_id = "{ACCESS_KEY}", secret_access_key = "{SECRET_KEY}" }}
timeout = "5s"
batch = {{ max_events = {max_events}, timeout = "100ms" }}
retry = {{ initial_backoff = "50ms", max_backoff = "500ms" }}
{extra}

[[routes]]
match = ["app.**"]
outputs = ["firehose"]
"""


def send(flumen, first: int, count: int, pad: int = 0) -> list[dict]:
    """Events first..first+count tagged app.<service>; returns their records."""
    s = fluent_sender.FluentSender("app", host="127.0.0.1", port=flumen.ports["fwd"],
                                   nanosecond_precision=True, timeout=10, bufmax=64 << 20)
    sent = []
    try:
        for n in range(first, first + count):
            service = ["checkout", "search"][n % 2]
            record = {"n": n, "service": service, "message": f"order {n} placed ✓" + "x" * pad}
            ts = fluent_sender.EventTime(1_796_403_600 + n // 100, (n % 100) * 10_000_000)
            assert s.emit_with_time(service, ts, record), s.last_error
            sent.append(record)
    finally:
        s.close()
    return sent


def calls_of(moto: Moto, bucket: str) -> list[list[dict]]:
    """The events of each call that reached the bucket, each object's lines parsed. Every
    record ends with its newline, so an object (the call's records concatenated) is JSON
    lines."""
    calls = []
    for body in moto.objects(bucket):
        assert body.endswith(b"\n"), "a record without its newline"
        calls.append([json.loads(line) for line in body.decode().splitlines()])
    return calls


def wait_events(moto: Moto, bucket: str, count: int, timeout: float = 30) -> list[list[dict]]:
    """The bucket's calls once they hold `count` distinct events (and a moment more, so that
    anything sent twice would show)."""
    seen: set[int] = set()

    def enough():
        seen.clear()
        seen.update(e["record"]["n"] for c in calls_of(moto, bucket) for e in c)
        return len(seen) >= count or None
    try:
        wait_for(enough, timeout, f"{count} events in {bucket}", interval=0.3)
    except AssertionError as e:
        missing = sorted(set(range(count)) - seen)
        raise AssertionError(f"{e}: {len(seen)} arrived, missing {missing[:5]}…{missing[-5:]}") from None
    time.sleep(0.4)
    return calls_of(moto, bucket)


def check_in_order(sent: list[dict], calls: list[list[dict]]) -> None:
    """Every event once, complete, and each call's events in the order sent, the calls
    following each other with no gap."""
    by_n = {r["n"]: r for r in sent}
    for events in calls:
        for e in events:
            assert e["record"] == by_n[e["record"]["n"]]
            assert e["tag"] == f"app.{e['record']['service']}"
    ns = [e["record"]["n"] for events in sorted(calls, key=lambda c: c[0]["record"]["n"])
          for e in events]
    assert ns == [r["n"] for r in sent], "events missing, doubled or out of order"


def test_events_arrive_complete_in_order_one_json_line_each(flumen_factory, moto):
    stream, bucket = names()
    moto.create_stream(stream, bucket)
    f = flumen_factory(forward_source() + firehose_output(moto, stream))
    sent = send(f, 0, 1800)
    calls = wait_events(moto, bucket, 1800)
    check_in_order(sent, calls)
    assert all(len(c) <= 500 for c in calls), "a call holds at most 500 records"
    first = next(e for c in calls for e in c if e["record"]["n"] == 0)
    assert first["time"] == "2026-12-04T17:00:00.000000000Z"
    assert not (f.data_dir / "dead-letter" / "firehose.jsonl").exists()


class Collector(BaseHTTPRequestHandler):
    """An HTTP endpoint destination: keeps each record moto posts, decoded."""

    records: list[bytes] = []

    def do_POST(self):  # noqa: N802 - the http.server name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Collector.records += [base64.b64decode(r["data"]) for r in body["records"]]
        answer = json.dumps({"requestId": body["requestId"], "timestamp": 0}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def test_aggregation_packs_several_events_per_record(flumen_factory, moto):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        Collector.records = []
        stream, _ = names()
        moto.create_stream(stream, http_url=f"http://127.0.0.1:{server.server_address[1]}/")
        f = flumen_factory(forward_source() + firehose_output(
            moto, stream, 'format = "record"\ntime_key = "time"\naggregate = true'))
        sent = send(f, 0, 3000, pad=500)
        wait_for(lambda: sum(r.count(b"\n") for r in Collector.records) >= 3000 or None, 30,
                 "3000 events in records")
        time.sleep(0.3)
        records = list(Collector.records)
    finally:
        server.shutdown()
    lines = [json.loads(line) for r in records for line in r.decode().splitlines()]
    assert [e["n"] for e in lines] == [r["n"] for r in sent]
    assert lines[0]["time"] == "2026-12-04T17:00:00.000000000Z"
    assert {k: v for k, v in lines[7].items() if k != "time"} == sent[7]
    # 3,000 events of about 560 bytes: about 1.7 MB, in records of up to 1,000 KiB each.
    assert len(records) < 3000 / 100, f"{len(records)} records for 3000 events"
    assert all(len(r) <= 1_024_000 and r.endswith(b"\n") for r in records)


def test_moto_down_for_a_while_loses_nothing(flumen_factory, moto):
    stream, bucket = names()
    moto.create_stream(stream, bucket)
    f = flumen_factory(forward_source() + firehose_output(moto, stream))
    sent = send(f, 0, 500)
    before = wait_events(moto, bucket, 500)
    moto.stop()
    try:
        sent += send(f, 500, 1500)
        time.sleep(2)  # flumen retries against a closed port meanwhile
    finally:
        moto.start()
    # moto keeps nothing across a restart: the stream and its bucket are made again (until
    # then flumen meets ResourceNotFoundException, and retries).
    moto.create_stream(stream, bucket)
    after = wait_events(moto, bucket, 1500)
    ns = [e["record"]["n"] for c in before + after for e in c]
    assert set(ns) == {r["n"] for r in sent}, "events lost"
    # Firehose has no idempotence: a call whose answer was lost is sent again.
    print(f"events put twice across the outage: {len(ns) - len(set(ns))}")
    assert not (f.data_dir / "dead-letter" / "firehose.jsonl").exists()


def test_a_missing_stream_is_retried_not_dead_lettered(flumen_factory, moto):
    stream, bucket = names()
    f = flumen_factory(forward_source() + firehose_output(moto, stream))
    sent = send(f, 0, 300)
    wait_for(lambda: "ResourceNotFoundException" in f.stderr_text() or None, 20,
             "the refusal in flumen's log")
    assert stream in f.stderr_text(), "the message names the stream"
    assert not (f.data_dir / "dead-letter" / "firehose.jsonl").exists(), \
        "a missing stream is the operator's to fix, not the data's fault"
    moto.create_stream(stream, bucket)
    check_in_order(sent, wait_events(moto, bucket, 300))


def test_an_event_too_large_for_a_record_is_dead_lettered_with_its_reason(flumen_factory, moto):
    stream, bucket = names()
    moto.create_stream(stream, bucket)
    f = flumen_factory(forward_source() + firehose_output(moto, stream))
    sent = send(f, 0, 2) + send(f, 2, 1, pad=1_100_000) + send(f, 3, 2)
    calls = wait_events(moto, bucket, 4)
    assert sorted(e["record"]["n"] for c in calls for e in c) == [0, 1, 3, 4]
    dead = f.data_dir / "dead-letter" / "firehose.jsonl"
    wait_for(lambda: dead.exists() or None, 10, "the dead-letter file")
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [d["record"] for d in letters] == [sent[2]]
    assert "larger than a Firehose record may be" in letters[0]["error"], letters[0]["error"]


def test_kill_9_mid_delivery_loses_nothing(flumen_factory, moto):
    stream, bucket = names()
    moto.create_stream(stream, bucket)
    f = flumen_factory(forward_source() + firehose_output(moto, stream, max_events=500))
    sent = send(f, 0, 20000, pad=1000)
    # fluent-logger has no acknowledgements: the events are flumen's once it has read them
    # all (and a moment to write the last to its log). Killed then, with calls on their way.
    wait_for(lambda: metric_sum(parse_metrics(f.metrics_text()), "flumen_source_events_total",
                                source="fwd") == 20000 or None, 20, "flumen to read every event")
    time.sleep(0.2)
    f.kill()
    landed = sum(body.count(b"\n") for body in moto.objects(bucket))
    assert landed < 20000, "killed after the last call: nothing was in flight"
    f.start()
    sent += send(f, 20000, 1000)
    calls = wait_events(moto, bucket, 21000, timeout=40)
    ns = [e["record"]["n"] for c in calls for e in c]
    assert set(ns) == {r["n"] for r in sent}, f"{len({r['n'] for r in sent} - set(ns))} events lost"
    # At least once: what was put but not yet committed in the log is put again.
    print(f"killed with {landed} of 20000 events put; put twice after kill -9: "
          f"{len(ns) - len(set(ns))}")
