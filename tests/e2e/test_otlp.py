"""The OTLP source with the real OpenTelemetry SDK for Python: Python `logging` through the
SDK's LoggingHandler, a BatchLogRecordProcessor and the OTLP exporters (protobuf over HTTP and
gRPC, plain and gzip), inside a span; OTLP/JSON as the specification shows it, sent with
`requests`; and a request over the attribute limit."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
import warnings

import pytest
import requests

from conftest import file_output, route
from helpers import rfc3339_ns, wait_for_events


def otlp_source(name: str = "otel", extra: str = "") -> str:
    return f"""
[sources.{name}]
type = "otlp"
http_address = "127.0.0.1:@port:otlp_http@"
grpc_address = "127.0.0.1:@port:otlp_grpc@"
{extra}
"""


@pytest.fixture
def otlp(flumen_factory):
    """flumen with an OTLP source, every event to a file output."""
    return flumen_factory(otlp_source() + file_output("all") + route(["**"], ["all"]))


RESOURCE = {
    "service.name": "checkout",
    "service.version": "1.4.2",
    "deployment.environment": "staging",
    "host.name": "e2e-host",
}


def _exporter(flumen, transport: str, compression: str):
    if transport == "http":
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        return OTLPLogExporter(
            endpoint=f"http://127.0.0.1:{flumen.ports['otlp_http']}/v1/logs",
            compression=Compression.Gzip if compression == "gzip" else Compression.NoCompression,
            timeout=10,
        )
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    return OTLPLogExporter(
        endpoint=f"127.0.0.1:{flumen.ports['otlp_grpc']}",
        insecure=True,
        compression=grpc.Compression.Gzip if compression == "gzip" else grpc.Compression.NoCompression,
        timeout=10,
    )


def _emit_with_the_sdk(exporter, logger_name: str) -> tuple[str, str]:
    """Logs through Python `logging` and the SDK's handler inside a span; returns the span's
    trace and span ids in hex."""
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create(RESOURCE)
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    with warnings.catch_warnings():
        # The SDK's handler is deprecated in favour of opentelemetry-instrumentation-logging;
        # it is still what most programs use.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    logger = logging.getLogger(logger_name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    tracer = TracerProvider(resource=resource).get_tracer("e2e")
    try:
        with tracer.start_as_current_span("checkout") as span:
            logger.info("order %s placed", 42, extra={"order.id": 42, "customer": "ada"})
            logger.warning("card about to expire")
            try:
                raise ValueError("card declined")
            except ValueError:
                logger.exception("payment failed")
            logger.info({"event": "structured", "items": 3})
            context = span.get_span_context()
        assert provider.force_flush(15_000), "the SDK could not flush"
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _by_message(events):
    return {e["record"].get("message"): e for e in events}


@pytest.mark.parametrize(
    "transport,compression",
    [("http", "none"), ("http", "gzip"), ("grpc", "none"), ("grpc", "gzip")],
)
def test_the_python_sdk_exports_logs(otlp, transport, compression):
    before = time.time()
    trace_id, span_id = _emit_with_the_sdk(_exporter(otlp, transport, compression), f"shop.{transport}")
    events = wait_for_events(otlp.dir("out"), 4)
    assert len(events) == 4, events
    assert all(e["tag"] == "otlp" for e in events)
    by = _by_message(events)

    info = by["order 42 placed"]["record"]
    assert info["level"] == "INFO"
    assert info["severity_text"] == "INFO"
    assert info["severity_number"] == 9
    # The canonical fields, from the resource.
    assert info["service"] == "checkout"
    assert info["version"] == "1.4.2"
    assert info["environment"] == "staging"
    assert info["host"] == "e2e-host"
    # The span the record was logged in.
    assert info["trace_id"] == trace_id
    assert info["span_id"] == span_id
    assert info["trace_flags"] & 1 == 1  # sampled (bit 1, "random trace id", may be set too)
    # `extra=` and the handler's code attributes, as top-level fields.
    assert info["order.id"] == 42
    assert info["customer"] == "ada"
    assert info["code.function.name"] == "_emit_with_the_sdk"
    assert info["code.file.path"].endswith("test_otlp.py")
    assert isinstance(info["code.line.number"], int)
    assert info["scope.name"] == f"shop.{transport}"
    resource = info["resource"]
    for key, value in RESOURCE.items():
        assert resource[key] == value
    assert resource["telemetry.sdk.language"] == "python"
    assert resource["telemetry.sdk.name"] == "opentelemetry"
    # The time the record was made, to the nanosecond the SDK gives.
    when = _dt.datetime.strptime(by["order 42 placed"]["time"][:26], "%Y-%m-%dT%H:%M:%S.%f")
    when = when.replace(tzinfo=_dt.timezone.utc).timestamp()
    assert before - 1 <= when <= time.time() + 1

    warning = by["card about to expire"]["record"]
    assert warning["level"] == "WARN"
    assert warning["severity_text"] == "WARN"
    assert warning["trace_id"] == trace_id

    error = by["payment failed"]["record"]
    assert error["level"] == "ERROR"
    assert error["exception.type"] == "ValueError"
    assert error["exception.message"] == "card declined"
    stack = error["exception.stacktrace"]
    assert stack.startswith("Traceback (most recent call last):")
    assert 'raise ValueError("card declined")' in stack
    assert stack.rstrip().endswith("ValueError: card declined")

    structured = [e["record"] for e in events if "body" in e["record"]]
    assert len(structured) == 1
    assert structured[0]["body"] == {"event": "structured", "items": 3}
    assert json.loads(structured[0]["message"]) == {"event": "structured", "items": 3}
    assert structured[0]["level"] == "INFO"


# https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding — the example of the
# opentelemetry-proto repository (examples/logs.json).
SPEC_EXAMPLE = {
    "resourceLogs": [
        {
            "resource": {
                "attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]
            },
            "scopeLogs": [
                {
                    "scope": {
                        "name": "my.library",
                        "version": "1.0.0",
                        "attributes": [
                            {"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}
                        ],
                    },
                    "logRecords": [
                        {
                            "timeUnixNano": "1544712660300000000",
                            "observedTimeUnixNano": "1544712660300000000",
                            "severityNumber": 10,
                            "severityText": "Information",
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "EEE19B7EC3C1B174",
                            "body": {"stringValue": "Example log record"},
                            "attributes": [
                                {"key": "string.attribute", "value": {"stringValue": "some string"}},
                                {"key": "boolean.attribute", "value": {"boolValue": True}},
                                {"key": "int.attribute", "value": {"intValue": "10"}},
                                {"key": "double.attribute", "value": {"doubleValue": 637.704}},
                                {
                                    "key": "array.attribute",
                                    "value": {
                                        "arrayValue": {
                                            "values": [{"stringValue": "many"}, {"stringValue": "values"}]
                                        }
                                    },
                                },
                                {
                                    "key": "map.attribute",
                                    "value": {
                                        "kvlistValue": {
                                            "values": [
                                                {"key": "some.map.key", "value": {"stringValue": "some value"}}
                                            ]
                                        }
                                    },
                                },
                            ],
                        }
                    ],
                }
            ],
        }
    ]
}


def test_otlp_json_as_the_specification_shows_it(otlp):
    url = f"http://127.0.0.1:{otlp.ports['otlp_http']}/v1/logs"
    r = requests.post(url, json=SPEC_EXAMPLE, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {}
    [event] = wait_for_events(otlp.dir("out"), 1)
    assert event["time"] == rfc3339_ns(1544712660, 300_000_000)
    record = event["record"]
    assert record["message"] == "Example log record"
    assert record["level"] == "INFO"
    assert record["severity_text"] == "Information"
    assert record["service"] == "my.service"
    assert record["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert record["span_id"] == "eee19b7ec3c1b174"
    assert record["string.attribute"] == "some string"
    assert record["boolean.attribute"] is True
    assert record["int.attribute"] == 10
    assert record["double.attribute"] == 637.704
    assert record["array.attribute"] == ["many", "values"]
    assert record["map.attribute"] == {"some.map.key": "some value"}
    assert record["scope.name"] == "my.library"
    assert record["scope.version"] == "1.0.0"
    assert record["scope.attributes"] == {"my.scope.attribute": "some scope attribute"}
    assert record["resource"] == {"service.name": "my.service"}

    # Not OTLP/JSON: refused with the reason, as a google.rpc.Status in JSON.
    r = requests.post(url, json={"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "xyz"}]}]}]},
                      timeout=10)
    assert r.status_code == 400
    assert r.json()["code"] == 3
    assert "logRecords[0].traceId" in r.json()["message"]
    r = requests.post(url, data="hello", headers={"Content-Type": "text/plain"}, timeout=10)
    assert r.status_code == 415


def test_a_request_with_100k_attributes_is_refused_and_the_sdk_keeps_working(otlp):
    from google.rpc import status_pb2
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

    record = LogRecord(time_unix_nano=time.time_ns(), body=AnyValue(string_value="huge"))
    record.attributes.extend(KeyValue(key=f"a{i}", value=AnyValue(int_value=i)) for i in range(100_000))
    request = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[record])])]
    )
    url = f"http://127.0.0.1:{otlp.ports['otlp_http']}/v1/logs"
    r = requests.post(url, data=request.SerializeToString(),
                      headers={"Content-Type": "application/x-protobuf"}, timeout=30)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/x-protobuf"
    status = status_pb2.Status.FromString(r.content)
    assert status.code == 3  # INVALID_ARGUMENT
    assert "100000 attributes" in status.message and "max_attributes" in status.message, status.message

    # The source goes on taking requests.
    _emit_with_the_sdk(_exporter(otlp, "http", "none"), "after.huge")
    events = wait_for_events(otlp.dir("out"), 4)
    assert len(events) == 4
    assert all(e["record"].get("message") != "huge" for e in events)
    assert otlp.alive()
