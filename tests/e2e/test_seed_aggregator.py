"""The first seed's aggregator end to end: `examples/aggregator.toml` as shipped, with its
addresses moved to free ports on 127.0.0.1 and its outputs pointed at local servers: the two
Firehose delivery streams at moto's (PyPI `moto[server]`, a mock of AWS and the only Firehose
there is here; each stream delivers into a bucket of moto's S3), and, in the variant the example
offers in a comment, the backend's logs straight into S3 (`s3s-fs`, a real S3 server).

Events are what the Docker fluentd logging driver sends (`log`, `source`, `container_id`,
`container_name`), tagged `frontend-web` and `backend-api`, over Forward (the PyPI fluent-logger);
the container health check is the seed's own `curl` to the HTTP source. Checked: frontend events
reach the Elasticsearch stream and only it, backend events the S3 stream (or the S3 bucket) and
only it, each complete and in order; health checks reach neither, only the null output."""

from __future__ import annotations

import json
import re
import subprocess
import time

import boto3
import pytest
from botocore.config import Config
from fluent import sender as fluent_sender

from conftest import REPO_ROOT
from helpers import metric_sum, parse_metrics, wait_for
from test_firehose_output import ACCESS_KEY, ROLE, SECRET_KEY, Moto
from test_s3_output import BUCKET, S3Server, events_by_key

REGION = "us-west-2"  # the seed's
STREAMS = {"frontend": "elasticsearch-delivery-stream", "backend": "s3-delivery-stream"}
AUTH = f'auth = {{ access_key_id = "{ACCESS_KEY}", secret_access_key = "{SECRET_KEY}" }}'


@pytest.fixture
def moto():
    server = Moto()
    server.start()
    kw = dict(endpoint_url=server.url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
              aws_secret_access_key=SECRET_KEY, config=Config(retries={"max_attempts": 1}))
    server.s3 = boto3.client("s3", **kw)
    server.firehose = boto3.client("firehose", **kw)
    for bucket, stream in STREAMS.items():
        server.s3.create_bucket(Bucket=bucket,
                                CreateBucketConfiguration={"LocationConstraint": REGION})
        server.firehose.create_delivery_stream(
            DeliveryStreamName=stream, DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={"RoleARN": ROLE,
                                                "BucketARN": f"arn:aws:s3:::{bucket}"})
    yield server
    server.stop()


def example(moto: Moto, s3: S3Server | None = None) -> str:
    """examples/aggregator.toml, on local ports, its Firehose outputs at moto; with `s3`, the
    backend's table replaced by the S3 table the example gives in a comment, at `s3`."""
    text = (REPO_ROOT / "examples" / "aggregator.toml").read_text()
    text = text.replace('data_dir = "./flumen-data"', 'data_dir = "@data@"')
    for address, name in [("0.0.0.0:24224", "fwd"), ("0.0.0.0:8888", "health"),
                          ("0.0.0.0:8080", "api")]:
        assert f'"{address}"' in text, address
        text = text.replace(f'"{address}"', f'"127.0.0.1:@port:{name}@"')
    at_moto = f'region = "{REGION}"\nendpoint = "{moto.url}"\n{AUTH}\n'
    text = text.replace('type = "firehose"\nregion = "us-west-2"\n', 'type = "firehose"\n' + at_moto)
    if s3 is not None:
        firehose_backend = re.search(r'\[outputs\.backend\]\ntype = "firehose"\n.*?\n\n', text, re.S)
        commented = re.search(r'# \[outputs\.backend\]\n(# .*\n)+', text)
        assert firehose_backend and commented, "the example's backend tables moved"
        s3_backend = "".join(line[2:] + "\n" for line in commented.group(0).splitlines())
        s3_backend = s3_backend.replace(
            'bucket = "backend-logs"\n',
            f'bucket = "{BUCKET}"\nendpoint = "{s3.url}"\n'
            f'auth = {{ access_key_id = "{ACCESS_KEY}", secret_access_key = "flumen/test+secret" }}\n'
            'batch = { timeout = "300ms" }\n')
        text = text.replace(firehose_backend.group(0), s3_backend + "\n")
    return text


def send_docker_logs(flumen, count: int) -> dict[str, list[dict]]:
    """`count` records from each of a frontend and a backend container, as the Docker fluentd
    driver sends them; returns them by kind."""
    # One tag part, as the driver's `tag` option gives it (`frontend*` matches one part, as
    # in Fluentd: not `frontend.web`).
    s = fluent_sender.FluentSender("frontend-web", host="127.0.0.1", port=flumen.ports["fwd"],
                                   timeout=10)
    b = fluent_sender.FluentSender("backend-api", host="127.0.0.1", port=flumen.ports["fwd"],
                                   timeout=10)
    sent: dict[str, list[dict]] = {"frontend": [], "backend": []}
    try:
        for n in range(count):
            for kind, sender, label in [("frontend", s, "web"), ("backend", b, "api")]:
                record = {
                    "source": "stdout",
                    "log": f" - Corwin{n} 264 [2026-12-04T17:00:00Z] \"POST /activate\" 200 {n}",
                    "container_id": f"{kind}-{n % 3:062x}",
                    "container_name": f"/ecs-{kind}-{label}-d492a08f9480c2fcca01",
                }
                assert sender.emit(None, record), sender.last_error
                sent[kind].append(record)
    finally:
        s.close()
        b.close()
    return sent


def stream_records(moto: Moto, bucket: str) -> list[dict]:
    """The records a stream delivered into its bucket, in call order."""
    keys = []
    for page in moto.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [(o["LastModified"], o["Key"]) for o in page.get("Contents", [])]
    records = []
    for _, key in sorted(keys):
        body = moto.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        records += [json.loads(line) for line in body.splitlines()]
    return records


def health_check(flumen) -> None:
    """The seed's container health check: `curl http://localhost:8888/healthcheck?json=...`."""
    url = (f"http://127.0.0.1:{flumen.ports['health']}/healthcheck"
           "?json=%7B%22log%22%3A+%22health+check%22%7D")
    done = subprocess.run(["curl", "-sf", url], capture_output=True, timeout=10)
    assert done.returncode == 0, done.stderr


def discarded(flumen) -> float:
    samples = parse_metrics(flumen.metrics_text())
    return metric_sum(samples, "flumen_output_events_total", output="discard") or 0


def test_the_seed_aggregator_routes_frontend_and_backend_to_their_firehose_streams(
        flumen_factory, moto):
    f = flumen_factory(example(moto))
    for _ in range(3):
        health_check(f)
    sent = send_docker_logs(f, 300)
    for kind in ("frontend", "backend"):
        wait_for(lambda: len(stream_records(moto, kind)) >= 300 or None, 30,
                 f"300 records through {STREAMS[kind]}")
    time.sleep(0.5)
    for kind in ("frontend", "backend"):
        got = stream_records(moto, kind)
        # format = "record": the Docker driver's record as it came, one JSON document each.
        assert sorted(got, key=lambda r: int(r["log"].split()[-1])) == sent[kind], kind
        assert not any("health check" in r.get("log", "") for r in got)
    wait_for(lambda: discarded(f) >= 3 or None, 10, "the health checks in the null output")


def test_the_seed_aggregator_can_write_the_backend_to_s3_itself(flumen_factory, moto, tmp_path):
    s3 = S3Server(tmp_path / "s3")
    s3.start()
    try:
        f = flumen_factory(example(moto, s3))
        health_check(f)
        sent = send_docker_logs(f, 300)
        wait_for(lambda: len(stream_records(moto, "frontend")) >= 300 or None, 30,
                 "300 frontend records through Firehose")
        wait_for(lambda: sum(map(len, events_by_key(s3).values())) >= 300 or None, 30,
                 "300 backend events in S3")
        time.sleep(0.5)
        by_key = events_by_key(s3)
        assert all(re.match(r"^backend-api/dt=\d{4}-\d\d-\d\d/hour=\d\d/.*\.ndjson\.zst$", k)
                   for k in by_key), sorted(by_key)
        records = [e["record"] for events in by_key.values() for e in events]
        assert records == sent["backend"], "backend events missing, doubled or out of order"
        frontend = stream_records(moto, "frontend")
        assert sorted(frontend, key=lambda r: int(r["log"].split()[-1])) == sent["frontend"]
        assert stream_records(moto, "backend") == [], "the backend stream is no longer used"
        wait_for(lambda: discarded(f) >= 1 or None, 10, "the health check in the null output")
    finally:
        s3.stop()
