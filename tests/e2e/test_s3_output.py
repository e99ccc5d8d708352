"""The S3 output end to end, against a real S3 server: `s3s-fs` (crates.io; it checks every
request's SigV4 signature and stores objects as files), installed by scripts/setup.sh. Events go
in over Forward (the PyPI fluent-logger); objects are listed and read back with boto3, the AWS
SDK for Python, as a user of the bucket would.

Checked: every event arrives once, complete, in log order, in the object of its tag and hour;
gzip and zstd; a large object uploaded in parts; S3 down for a while, then back: nothing lost,
nothing doubled; a wrong secret is retried (not dropped), and the events go through once the
configuration is fixed; an object S3 refuses for good (a key over 1,024 bytes) is dead-lettered
with S3's reason, the other objects delivered; `kill -9` of flumen while it uploads: nothing lost; credentials from the
AWS chain — the environment, a profile of the shared credentials file, and the EC2 instance role
(IMDSv2, through a small `http.server` stand-in of the metadata service, since there is no EC2
here)."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import http.server
import threading

import boto3
import pytest
import zstandard
from botocore.config import Config
from fluent import sender as fluent_sender

from conftest import REPO_ROOT, forward_source, free_port
from helpers import metric_sum, parse_metrics, wait_for

S3S_FS = Path(os.environ.get("S3S_FS_BIN") or REPO_ROOT / "target" / "tools" / "bin" / "s3s-fs")
ACCESS_KEY = "AKIDFLUMENTEST"
SECRET_KEY = "flumen/test+secret"
BUCKET = "logs"


class S3Server:
    """An `s3s-fs` process serving a temporary directory (each subdirectory is a bucket)."""

    def __init__(self, root: Path):
        assert S3S_FS.exists(), f"s3s-fs not found at {S3S_FS}: run scripts/setup.sh (or set S3S_FS_BIN)"
        self.root = root
        (root / BUCKET).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.client = boto3.client(
            "s3", endpoint_url=self.url, region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                          connect_timeout=2, read_timeout=10))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(S3S_FS), "--host", "127.0.0.1", "--port", str(self.port),
             "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, str(self.root)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, 10, "s3s-fs to answer")

    def _answers(self) -> bool:
        try:
            self.client.list_objects_v2(Bucket=BUCKET, MaxKeys=1)
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def objects(self) -> dict[str, bytes]:
        """Every object of the bucket: key → body (as stored, compressed)."""
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return {k: self.client.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


@pytest.fixture
def s3(tmp_path):
    server = S3Server(tmp_path / "s3")
    server.start()
    yield server
    server.stop()


def s3_output(s3: S3Server, extra: str = "", secret: str | None = SECRET_KEY) -> str:
    """The output; with `secret=None`, without keys: credentials come from the AWS chain."""
    auth = "" if secret is None else (
        f'auth = {{ access_key_id = "{ACCESS_KEY}", secret_access_key = "{secret}" }}')
    return f"""
[outputs.s3]
type = "s3"
bucket = "{BUCKET}"
endpoint = "{s3.url}"
region = "us-east-1"
{auth}
retry = {{ initial_backoff = "50ms", max_backoff = "1s" }}
{extra}

[[routes]]
match = ["app.**"]
outputs = ["s3"]
"""


def send(flumen, first: int, count: int, base: int, pad: int = 0) -> list[dict]:
    """Events first..first+count, one every 10 ms from the second `base`, alternately tagged
    app.checkout and app.search; returns what was sent."""
    s = fluent_sender.FluentSender("app", host="127.0.0.1", port=flumen.ports["fwd"],
                                   nanosecond_precision=True, timeout=10, bufmax=64 << 20)
    sent = []
    try:
        for n in range(first, first + count):
            service = ["checkout", "search"][n % 2]
            record = {"n": n, "service": service, "message": f"order {n} placed ✓" + "x" * pad}
            ts = fluent_sender.EventTime(base + n // 100, (n % 100) * 10_000_000)
            assert s.emit_with_time(service, ts, record), s.last_error
            sent.append(record)
    finally:
        s.close()
    return sent


def decompress(key: str, body: bytes) -> bytes:
    if key.endswith(".gz"):
        return gzip.decompress(body)
    if key.endswith(".zst"):
        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    return body


def events_by_key(s3: S3Server) -> dict[str, list[dict]]:
    return {key: [json.loads(line) for line in decompress(key, body).splitlines()]
            for key, body in s3.objects().items()}


def wait_objects(s3: S3Server, count: int, timeout: float = 30) -> dict[str, list[dict]]:
    """The bucket's events once it holds `count` of them (and a moment more, so that anything
    sent twice would show)."""
    wait_for(lambda: sum(map(len, events_by_key(s3).values())) >= count or None, timeout,
             f"{count} events in the bucket")
    time.sleep(0.5)
    return events_by_key(s3)


def numbers(by_key: dict[str, list[dict]]) -> list[int]:
    return [e["record"]["n"] for events in by_key.values() for e in events]


def check_objects(sent: list[dict], by_key: dict[str, list[dict]], node: str,
                  extension: str) -> None:
    """Every event once, complete, in the object of its tag and hour, in the order sent."""
    ns = numbers(by_key)
    assert len(ns) == len(set(ns)), f"{len(ns) - len(set(ns))} events arrived twice"
    assert sorted(ns) == [r["n"] for r in sent], "events missing or unexpected"
    by_n = {r["n"]: r for r in sent}
    name = re.compile(rf"^app\.(checkout|search)/dt=(\d{{4}}-\d\d-\d\d)/hour=(\d\d)/"
                      rf"{node}-s3-\d{{20}}{re.escape(extension)}$")
    for key, events in by_key.items():
        m = name.match(key)
        assert m, f"unexpected key {key!r}"
        service, day, hour = m.groups()
        order = [e["record"]["n"] for e in events]
        assert order == sorted(order), f"{key}: out of order"
        for e in events:
            assert e["record"] == by_n[e["record"]["n"]]
            assert e["tag"] == f"app.{service}"
            assert e["time"].startswith(f"{day}T{hour}:"), (key, e["time"])


def node_id(flumen) -> str:
    return (flumen.data_dir / "node-id").read_text().strip()


def one_hour_base() -> int:
    """A second from which 20,000 events (200 s) stay within one hour, in the last hour."""
    return (int(time.time()) // 3600) * 3600 - 3000


def hour_boundary_base() -> int:
    """A second 10 s before the end of the last hour: events sent from it span two hours."""
    return (int(time.time()) // 3600) * 3600 - 10


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_objects_hold_every_event_once_in_order_by_tag_and_hour(flumen_factory, s3, compression):
    f = flumen_factory(forward_source() + s3_output(
        s3, f'compression = "{compression}"\nbatch = {{ timeout = "300ms" }}'))
    sent = send(f, 0, 2000, hour_boundary_base())
    by_key = wait_objects(s3, 2000)
    extension = {"gzip": ".ndjson.gz", "zstd": ".ndjson.zst"}[compression]
    check_objects(sent, by_key, node_id(f), extension)
    hours = {re.search(r"hour=(\d\d)", k).group(1) for k in by_key}
    assert len(hours) == 2, f"events of two hours in one object? {sorted(by_key)}"
    head = s3.client.head_object(Bucket=BUCKET, Key=next(iter(by_key)))
    assert head["ContentType"] == "application/x-ndjson"
    assert head["ContentEncoding"] == compression


def test_a_large_object_is_uploaded_in_parts(flumen_factory, s3):
    f = flumen_factory(forward_source() + s3_output(
        s3, 'compression = "none"\npart_size = "5MiB"\n'
            'batch = { timeout = "3s", max_bytes = "64MiB" }'))
    sent = send(f, 0, 20000, one_hour_base(), pad=1000)
    by_key = wait_objects(s3, 20000, timeout=60)
    check_objects(sent, by_key, node_id(f), ".ndjson")
    parts = [s3.client.head_object(Bucket=BUCKET, Key=k)["ETag"] for k in by_key]
    # A multipart upload's ETag ends with -<number of parts>.
    assert any(re.search(r"-\d+\"$", etag) for etag in parts), parts


def test_s3_down_for_a_while_loses_and_doubles_nothing(flumen_factory, s3):
    f = flumen_factory(forward_source() + s3_output(s3, 'batch = { timeout = "200ms" }'))
    base = one_hour_base()
    sent = send(f, 0, 500, base)
    wait_objects(s3, 500)
    s3.stop()
    sent += send(f, 500, 1500, base)
    time.sleep(2)  # flumen retries against a closed port meanwhile
    s3.start()
    check_objects(sent, wait_objects(s3, 2000), node_id(f), ".ndjson.gz")
    assert not (f.data_dir / "dead-letter" / "s3.jsonl").exists()


def test_a_wrong_secret_is_retried_and_nothing_is_lost_once_it_is_fixed(flumen_factory, s3):
    f = flumen_factory(forward_source() + s3_output(
        s3, 'batch = { timeout = "200ms" }', secret="wrong"))
    sent = send(f, 0, 300, one_hour_base())
    wait_for(lambda: "SignatureDoesNotMatch" in f.stderr_text() or "403" in f.stderr_text()
             or None, 20, "the refusal in flumen's log")
    assert s3.objects() == {}
    assert not (f.data_dir / "dead-letter" / "s3.jsonl").exists(), "a credential error is not the data's"
    f.stop()
    f.config_path.write_text(f.config_path.read_text().replace('"wrong"', f'"{SECRET_KEY}"'))
    f.start()
    check_objects(sent, wait_objects(s3, 300), node_id(f), ".ndjson.gz")


def test_an_object_s3_refuses_for_its_key_is_dead_lettered_with_the_reason(flumen_factory, s3):
    # S3 keys are at most 1,024 bytes: a team name of 1,100 makes a key S3 refuses for good.
    f = flumen_factory(forward_source() + s3_output(
        s3, 'key_prefix = "{{team}}/"\nbatch = { timeout = "200ms" }'))
    s = fluent_sender.FluentSender("app", host="127.0.0.1", port=f.ports["fwd"], timeout=10)
    try:
        for n in range(10):
            team = "t" * 1100 if n % 5 == 0 else "shop"
            assert s.emit("checkout", {"n": n, "team": team}), s.last_error
    finally:
        s.close()
    dead = f.data_dir / "dead-letter" / "s3.jsonl"
    wait_for(lambda: dead.exists() and len(dead.read_text().splitlines()) >= 2 or None, 20,
             "the refused events in the dead-letter file")
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert sorted(e["record"]["n"] for e in letters) == [0, 5]
    assert all("KeyTooLongError" in e["error"] for e in letters), letters[0]["error"]
    by_key = wait_objects(s3, 8)
    assert sorted(numbers(by_key)) == [1, 2, 3, 4, 6, 7, 8, 9]
    assert all(k.startswith("shop/") for k in by_key)


def test_kill_9_while_uploading_loses_nothing(flumen_factory, s3):
    f = flumen_factory(forward_source() + s3_output(
        s3, 'compression = "none"\nbatch = { timeout = "100ms", max_events = 1000 }'))
    base = one_hour_base()
    sent = send(f, 0, 30000, base, pad=1000)
    # fluent-logger has no acknowledgements: the events are flumen's once it has read them all
    # (and a moment to write the last to its log). Killed then, with uploads still to come.
    wait_for(lambda: metric_sum(parse_metrics(f.metrics_text()), "flumen_source_events_total",
                                source="fwd") == 30000 or None, 30, "flumen to read every event")
    time.sleep(0.2)
    f.kill()
    landed = len(numbers(events_by_key(s3)))
    assert landed < 30000, "killed after the last upload: nothing was in flight"
    f.start()
    sent += send(f, 30000, 1000, base)
    by_key = wait_objects(s3, 31000, timeout=60)
    ns = numbers(by_key)
    assert set(ns) == {r["n"] for r in sent}, f"{len({r['n'] for r in sent} - set(ns))} events lost"
    # A re-upload replaces the object of the same first event; what the new run gathered
    # differently may be in two objects (at least once), never in none.
    print(f"killed with {landed} of 30000 events uploaded; in two objects after: "
          f"{len(ns) - len(set(ns))}")

class InstanceMetadata(http.server.ThreadingHTTPServer):
    """EC2's instance metadata service (IMDSv2) as a stand-in (no EC2 here): a session token
    for a PUT, then the role and its credentials for GETs that carry the token."""

    TOKEN = "imds-session-token"

    def __init__(self):
        self.asked: list[str] = []
        super().__init__(("127.0.0.1", 0), InstanceMetadataHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class InstanceMetadataHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        self.server.asked.append(f"PUT {self.path}")
        if self.path == "/latest/api/token" and self.headers.get("x-aws-ec2-metadata-token-ttl-seconds"):
            self.answer(200, InstanceMetadata.TOKEN)
        else:
            self.answer(400, "")

    def do_GET(self):
        self.server.asked.append(f"GET {self.path}")
        if self.headers.get("x-aws-ec2-metadata-token") != InstanceMetadata.TOKEN:
            self.answer(401, "")
        elif self.path == "/latest/meta-data/iam/security-credentials/":
            self.answer(200, "flumen-role")
        elif self.path == "/latest/meta-data/iam/security-credentials/flumen-role":
            self.answer(200, json.dumps({
                "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": ACCESS_KEY,
                "SecretAccessKey": SECRET_KEY, "Token": "session-token-from-the-role",
                "Expiration": "2099-01-01T00:00:00Z"}))
        else:
            self.answer(404, "")


@pytest.mark.parametrize("source", ["environment", "profile", "instance role"])
def test_credentials_come_from_the_aws_chain(flumen_factory, s3, tmp_path, monkeypatch, source):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "missing-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "missing-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    imds = None
    if source == "environment":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    elif source == "profile":
        credentials = tmp_path / "credentials"
        credentials.write_text(f"[default]\naws_access_key_id = WRONG\naws_secret_access_key = wrong\n\n"
                               f"[logs]\naws_access_key_id = {ACCESS_KEY}\n"
                               f"aws_secret_access_key = {SECRET_KEY}\n")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
        monkeypatch.setenv("AWS_PROFILE", "logs")
    else:
        imds = InstanceMetadata()
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url)
    f = flumen_factory(forward_source() + s3_output(s3, 'batch = { timeout = "200ms" }',
                                                    secret=None))
    sent = send(f, 0, 200, one_hour_base())
    check_objects(sent, wait_objects(s3, 200), node_id(f), ".ndjson.gz")
    if imds is not None:
        # IMDSv2: a session token first, then the role, then its credentials, once (kept
        # until near their expiry, not fetched for every upload).
        assert imds.asked[:3] == [
            "PUT /latest/api/token",
            "GET /latest/meta-data/iam/security-credentials/",
            "GET /latest/meta-data/iam/security-credentials/flumen-role",
        ], imds.asked
        assert len(imds.asked) == 3, imds.asked
        imds.shutdown()
