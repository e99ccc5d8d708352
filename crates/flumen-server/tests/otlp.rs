//! The OTLP source in one process: OTLP/HTTP (protobuf and JSON, plain and compressed) and
//! OTLP/gRPC (over a plain HTTP/2 client, so that the server's gRPC stack is checked against
//! the wire format rather than against itself), stored through a file output.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

mod common;
#[path = "../../flumen-sources/src/otlp/fixtures.rs"]
mod fixtures;

use common::*;
use fixtures::{int, kv, map, request, string};
use flumen_event::EventTime;
use flumen_server::Server;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// Building requests

/// The instrumentation scope of the requests here.
const SCOPE: (&str, &str) = ("checkout.payments", "0.3");

/// A one-record request whose message is `message`.
fn simple(message: &str) -> ExportLogsServiceRequest {
    request(
        SCOPE,
        vec![kv("service.name", string("simple"))],
        vec![LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000,
            severity_number: 9,
            body: Some(string(message)),
            ..Default::default()
        }],
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Servers and clients

struct Otlp {
    server: Server,
    http: SocketAddr,
    grpc: SocketAddr,
    out: std::path::PathBuf,
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An OTLP source with `options`, every event to a file output.
async fn start_otlp(dir: &Path, options: &str) -> Otlp {
    let out = dir.join("out.log");
    let grpc_port = free_port();
    let server = start(
        dir,
        &format!(
            "[sources.otel]\ntype = \"otlp\"\nhttp_address = \"127.0.0.1:0\"\n\
             grpc_address = \"127.0.0.1:{grpc_port}\"\n{options}\n{}",
            all_to_file(&out)
        ),
    )
    .await;
    Otlp {
        http: server.source_addr("otel").unwrap(),
        grpc: SocketAddr::from(([127, 0, 0, 1], grpc_port)),
        server,
        out,
    }
}

/// What an HTTP server answered.
#[derive(Debug)]
struct HttpAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `google.rpc.Status` of an error answer: (code, message).
    fn rpc_status(&self) -> (i32, String) {
        match self.header("content-type") {
            Some("application/json") => {
                let json: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
                (
                    json["code"].as_i64().unwrap() as i32,
                    json["message"].as_str().unwrap().to_owned(),
                )
            }
            Some("application/x-protobuf") => {
                let status = RpcStatus::decode(&self.body[..]).unwrap();
                (status.code, status.message)
            }
            other => panic!("no status in a {other:?} body"),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// An HTTP/1.1 request over a std socket, read to the end.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpAnswer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading all of a large body.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    parse_answer(&response)
}

/// An HTTP/1.1 response, read whole.
fn parse_answer(response: &[u8]) -> HttpAnswer {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8(response[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    HttpAnswer {
        status,
        headers,
        body: response[split + 4..].to_vec(),
    }
}

async fn post(
    addr: SocketAddr,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> HttpAnswer {
    let content_type = content_type.to_owned();
    let encoding = encoding.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut headers = vec![("Content-Type", content_type.as_str())];
        if let Some(encoding) = &encoding {
            headers.push(("Content-Encoding", encoding.as_str()));
        }
        http(addr, "POST", "/v1/logs", &headers, &body)
    })
    .await
    .unwrap()
}

/// POSTs `request` as protobuf from the local address `from`.
async fn post_protobuf_from(
    from: IpAddr,
    to: SocketAddr,
    request: &ExportLogsServiceRequest,
) -> HttpAnswer {
    let body = request.encode_to_vec();
    let mut stream = connect_from(from, to).await;
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response))
        .await
        .expect("an answer")
        .unwrap();
    parse_answer(&response)
}

async fn post_protobuf(addr: SocketAddr, request: &ExportLogsServiceRequest) -> HttpAnswer {
    post(
        addr,
        "application/x-protobuf",
        None,
        request.encode_to_vec(),
    )
    .await
}

/// What a gRPC server answered: the status code, its message, the response message.
#[derive(Debug)]
struct GrpcAnswer {
    code: u32,
    message: String,
    response: Vec<u8>,
}

/// One unary gRPC call over a fresh HTTP/2 connection (prior knowledge, as gRPC clients do).
async fn grpc_call(addr: SocketAddr, path: &str, message: &[u8], gzip_it: bool) -> GrpcAnswer {
    grpc_call_from(LOCALHOST, addr, path, message, gzip_it).await
}

/// [`grpc_call`] from the local address `from`.
async fn grpc_call_from(
    from: IpAddr,
    addr: SocketAddr,
    path: &str,
    message: &[u8],
    gzip_it: bool,
) -> GrpcAnswer {
    let tcp = connect_from(from, addr).await;
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let mut request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    let payload = if gzip_it {
        request = request.header("grpc-encoding", "gzip");
        gzip(message)
    } else {
        message.to_vec()
    };
    let mut framed = vec![u8::from(gzip_it)];
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(&payload);
    let (response, mut send) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    send.send_data(framed.into(), true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), response)
        .await
        .expect("a gRPC answer")
        .unwrap();
    assert_eq!(response.status(), 200);
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    // Errors may come "trailers-only": the status in the headers.
    let trailers = match parts.headers.get("grpc-status") {
        Some(_) => parts.headers,
        None => body.trailers().await.unwrap().expect("gRPC trailers"),
    };
    let code = trailers["grpc-status"].to_str().unwrap().parse().unwrap();
    let message = trailers
        .get("grpc-message")
        .map(|m| percent_decode(m.to_str().unwrap()))
        .unwrap_or_default();
    let response = if data.len() >= 5 {
        data[5..].to_vec()
    } else {
        Vec::new()
    };
    GrpcAnswer {
        code,
        message,
        response,
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_over_http_is_stored_with_every_field_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let otlp = start_otlp(dir.path(), "tag = \"otel.logs\"").await;
    let resource = vec![
        kv("service.name", string("checkout")),
        kv("service.version", string("1.4.2")),
        kv("deployment.environment.name", string("prod")),
        kv("host.name", string("node-7")),
        kv("container.id", string("abc123")),
        kv("container.name", string("checkout-1")),
        kv("deployment.id", string("dep-9")),
        kv("service.instance.id", string("i-1")),
    ];
    let logs = vec![
        LogRecord {
            time_unix_nano: 1_700_000_000_000_000_001,
            observed_time_unix_nano: 1_700_000_001_000_000_000,
            severity_number: 9,
            severity_text: "INFO".to_owned(),
            body: Some(string("order placed")),
            attributes: vec![
                kv("order.id", int(42)),
                kv("http.request.method", string("POST")),
                kv("user", map(vec![kv("id", string("u1"))])),
            ],
            trace_id: (1..=16).collect(),
            span_id: (1..=8).collect(),
            flags: 1,
            ..Default::default()
        },
        LogRecord {
            time_unix_nano: 1_700_000_000_500_000_000,
            severity_number: 18,
            severity_text: "ERROR2".to_owned(),
            body: Some(map(vec![
                kv("error", string("card declined")),
                kv("code", int(51)),
            ])),
            attributes: vec![
                kv("exception.type", string("CardError")),
                kv("exception.message", string("declined")),
                kv("environment", string("staging")),
                kv("message", string("an attribute called message")),
            ],
            event_name: "payment.failed".to_owned(),
            ..Default::default()
        },
        LogRecord {
            observed_time_unix_nano: 1_700_000_002_000_000_000,
            severity_text: "warning".to_owned(),
            body: Some(string("no severity number")),
            ..Default::default()
        },
        LogRecord {
            time_unix_nano: 1_700_000_003_000_000_000,
            severity_number: 24,
            body: Some(string("the end")),
            ..Default::default()
        },
    ];
    let answer = post_protobuf(otlp.http, &request(SCOPE, resource, logs)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.header("content-type"),
        Some("application/x-protobuf")
    );
    assert_eq!(
        ExportLogsServiceResponse::decode(&answer.body[..]).unwrap(),
        ExportLogsServiceResponse::default()
    );

    let lines = wait_for_lines(&otlp.out, 4).await;
    assert_eq!(lines.len(), 4);
    assert!(lines.iter().all(|l| l["tag"] == "otel.logs"));
    let resource = serde_json::json!({
        "service.name": "checkout",
        "service.version": "1.4.2",
        "deployment.environment.name": "prod",
        "host.name": "node-7",
        "container.id": "abc123",
        "container.name": "checkout-1",
        "deployment.id": "dep-9",
        "service.instance.id": "i-1"
    });
    assert_eq!(
        lines[0]["time"],
        EventTime::new(1_700_000_000, 1).to_string().as_str()
    );
    assert_eq!(
        lines[0]["record"],
        serde_json::json!({
            "message": "order placed",
            "level": "INFO",
            "service": "checkout",
            "environment": "prod",
            "version": "1.4.2",
            "host": "node-7",
            "container_id": "abc123",
            "container_name": "checkout-1",
            "deployment_id": "dep-9",
            "severity_text": "INFO",
            "severity_number": 9,
            "trace_id": "0102030405060708090a0b0c0d0e0f10",
            "span_id": "0102030405060708",
            "trace_flags": 1,
            "order.id": 42,
            "http.request.method": "POST",
            "user": {"id": "u1"},
            "scope.name": "checkout.payments",
            "scope.version": "0.3",
            "resource": resource
        })
    );
    let error = &lines[1]["record"];
    assert_eq!(error["message"], r#"{"error":"card declined","code":51}"#);
    assert_eq!(error["body"]["error"], "card declined");
    assert_eq!(error["level"], "ERROR");
    assert_eq!(error["severity_text"], "ERROR2");
    assert_eq!(error["event_name"], "payment.failed");
    assert_eq!(error["exception.type"], "CardError");
    // The sender's own `environment` wins over the resource's.
    assert_eq!(error["environment"], "staging");
    assert_eq!(error["service"], "checkout");
    // An attribute named like a field the source writes is kept aside.
    assert_eq!(
        error["attributes"]["message"],
        "an attribute called message"
    );
    assert!(error.get("trace_id").is_none());
    assert_eq!(
        lines[1]["time"],
        EventTime::new(1_700_000_000, 500_000_000)
            .to_string()
            .as_str()
    );
    // No time: the observed time; no severity number: the text.
    assert_eq!(
        lines[2]["time"],
        EventTime::new(1_700_000_002, 0).to_string().as_str()
    );
    assert_eq!(lines[2]["record"]["level"], "WARN");
    assert!(lines[2]["record"].get("severity_number").is_none());
    assert_eq!(lines[3]["record"]["level"], "FATAL");
    otlp.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_over_http_as_the_specification_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let otlp = start_otlp(dir.path(), "").await;
    // https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding (examples/logs.json).
    let body = r#"{
      "resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
        "scopeLogs": [{
          "scope": {"name": "my.library", "version": "1.0.0",
                    "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
          "logRecords": [{
            "timeUnixNano": "1544712660300000000",
            "observedTimeUnixNano": "1544712660300000000",
            "severityNumber": 10,
            "severityText": "Information",
            "traceId": "5B8EFFF798038103D269B633813FC60C",
            "spanId": "EEE19B7EC3C1B174",
            "body": {"stringValue": "Example log record"},
            "attributes": [
              {"key": "string.attribute", "value": {"stringValue": "some string"}},
              {"key": "boolean.attribute", "value": {"boolValue": true}},
              {"key": "int.attribute", "value": {"intValue": "10"}},
              {"key": "double.attribute", "value": {"doubleValue": 637.704}},
              {"key": "array.attribute", "value": {"arrayValue": {"values": [{"stringValue": "many"}, {"stringValue": "values"}]}}},
              {"key": "map.attribute", "value": {"kvlistValue": {"values": [{"key": "some.map.key", "value": {"stringValue": "some value"}}]}}}
            ]
          }]
        }]
      }]
    }"#;
    let answer = post(
        otlp.http,
        "application/json; charset=utf-8",
        None,
        body.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.text(), "{}");
    let lines = wait_for_lines(&otlp.out, 1).await;
    assert_eq!(lines[0]["tag"], "otlp");
    assert_eq!(
        lines[0]["time"],
        EventTime::new(1_544_712_660, 300_000_000)
            .to_string()
            .as_str()
    );
    let record = &lines[0]["record"];
    assert_eq!(record["message"], "Example log record");
    assert_eq!(record["level"], "INFO");
    assert_eq!(record["service"], "my.service");
    assert_eq!(record["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(record["span_id"], "eee19b7ec3c1b174");
    assert_eq!(record["string.attribute"], "some string");
    assert_eq!(record["boolean.attribute"], true);
    assert_eq!(record["int.attribute"], 10);
    assert_eq!(record["double.attribute"], 637.704);
    assert_eq!(
        record["array.attribute"],
        serde_json::json!(["many", "values"])
    );
    assert_eq!(record["map.attribute"]["some.map.key"], "some value");
    assert_eq!(record["scope.name"], "my.library");
    assert_eq!(
        record["scope.attributes"]["my.scope.attribute"],
        "some scope attribute"
    );
    otlp.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_is_stored_plain_and_gzip_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let otlp = start_otlp(dir.path(), "").await;
    let answer = grpc_call(
        otlp.grpc,
        EXPORT,
        &simple("over grpc").encode_to_vec(),
        false,
    )
    .await;
    assert_eq!(answer.code, 0, "{}", answer.message);
    assert_eq!(
        ExportLogsServiceResponse::decode(&answer.response[..]).unwrap(),
        ExportLogsServiceResponse::default()
    );
    let answer = grpc_call(
        otlp.grpc,
        EXPORT,
        &simple("over grpc, gzipped").encode_to_vec(),
        true,
    )
    .await;
    assert_eq!(answer.code, 0, "{}", answer.message);
    let lines = wait_for_lines(&otlp.out, 2).await;
    let messages: Vec<&str> = lines
        .iter()
        .map(|l| l["record"]["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["over grpc", "over grpc, gzipped"]);
    assert_eq!(lines[0]["record"]["service"], "simple");
    assert_eq!(lines[0]["record"]["level"], "INFO");
    // Another method of the service, or another service: UNIMPLEMENTED.
    let answer = grpc_call(
        otlp.grpc,
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        &[],
        false,
    )
    .await;
    assert_eq!(answer.code, 12, "{answer:?}");
    otlp.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_http_bodies_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let otlp = start_otlp(dir.path(), "").await;
    let gzipped = gzip(&simple("gzip protobuf").encode_to_vec());
    let answer = post(otlp.http, "application/x-protobuf", Some("gzip"), gzipped).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let json = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"deflate json"}}]}]}]}"#;
    let answer = post(
        otlp.http,
        "application/json",
        Some("deflate"),
        zlib(json.as_bytes()),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let lines = wait_for_lines(&otlp.out, 2).await;
    assert_eq!(lines[0]["record"]["message"], "gzip protobuf");
    assert_eq!(lines[1]["record"]["message"], "deflate json");
    otlp.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_100k_attributes_is_refused_clearly_and_the_next_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let otlp = start_otlp(dir.path(), "").await;
    let mut huge = simple("huge");
    huge.resource_logs[0].scope_logs[0].log_records[0].attributes =
        (0..100_000).map(|i| kv(&format!("a{i}"), int(i))).collect();
    let huge = huge.encode_to_vec();
    assert!(
        huge.len() < 4 << 20,
        "under max_request_size: {}",
        huge.len()
    );

    let answer = post(otlp.http, "application/x-protobuf", None, huge.clone()).await;
    assert_eq!(answer.status, 400);
    let (code, message) = answer.rpc_status();
    assert_eq!(code, 3, "INVALID_ARGUMENT");
    assert!(
        message.contains("log_records[0] has 100000 attributes")
            && message.contains("limit of 1000")
            && message.contains("max_attributes"),
        "{message}"
    );
    let answer = post_protobuf(otlp.http, &simple("after the huge one, http")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());

    let answer = grpc_call(otlp.grpc, EXPORT, &huge, false).await;
    assert_eq!(answer.code, 3, "INVALID_ARGUMENT: {}", answer.message);
    assert!(
        answer.message.contains("has 100000 attributes"),
        "{}",
        answer.message
    );
    let answer = grpc_call(
        otlp.grpc,
        EXPORT,
        &simple("after the huge one, grpc").encode_to_vec(),
        false,
    )
    .await;
    assert_eq!(answer.code, 0, "{}", answer.message);

    let lines = wait_for_lines(&otlp.out, 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines_again = wait_for_lines(&otlp.out, 2).await;
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines_again.len(),
        2,
        "nothing of the huge requests is stored"
    );
    assert_eq!(lines[0]["record"]["message"], "after the huge one, http");
    assert_eq!(lines[1]["record"]["message"], "after the huge one, grpc");
    otlp.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let otlp = start_otlp(dir.path(), "max_request_size = \"64KiB\"").await;
    let addr = otlp.http;

    // Not a protobuf message (a field whose length runs past the end).
    let malformed = vec![0x0a, 0xff, 0xff, 0x01, 0x00];
    let answer = post(addr, "application/x-protobuf", None, malformed.clone()).await;
    assert_eq!(answer.status, 400);
    let (code, message) = answer.rpc_status();
    assert_eq!(code, 3);
    assert!(
        message.contains("not a protobuf ExportLogsServiceRequest"),
        "{message}"
    );

    let answer = post(
        addr,
        "application/json",
        None,
        b"{\"resourceLogs\": 5}".to_vec(),
    )
    .await;
    assert_eq!(answer.status, 400);
    let (code, message) = answer.rpc_status();
    assert_eq!(code, 3);
    assert!(
        message.contains("resourceLogs: expected an array"),
        "{message}"
    );

    let answer = post(addr, "text/plain", None, b"hello".to_vec()).await;
    assert_eq!(answer.status, 415);
    assert!(
        answer.text().contains("application/x-protobuf"),
        "{}",
        answer.text()
    );
    let answer = post(addr, "application/x-protobuf", Some("br"), vec![1, 2, 3]).await;
    assert_eq!(answer.status, 415);
    assert!(
        answer.text().contains("Content-Encoding"),
        "{}",
        answer.text()
    );
    let answer = post(
        addr,
        "application/x-protobuf",
        Some("gzip"),
        b"not gzip".to_vec(),
    )
    .await;
    assert_eq!(answer.status, 400);

    // Over max_request_size, as sent and once decompressed.
    let answer = post(addr, "application/x-protobuf", None, vec![0; 100_000]).await;
    assert_eq!(answer.status, 413);
    assert!(answer.rpc_status().1.contains("max_request_size"));
    let bomb = gzip(&simple(&"x".repeat(200_000)).encode_to_vec());
    assert!(bomb.len() < 64 * 1024);
    let answer = post(addr, "application/x-protobuf", Some("gzip"), bomb.clone()).await;
    assert_eq!(answer.status, 413);

    let answer = tokio::task::spawn_blocking(move || http(addr, "GET", "/v1/logs", &[], b""))
        .await
        .unwrap();
    assert_eq!(answer.status, 405);
    let answer = tokio::task::spawn_blocking(move || {
        http(
            addr,
            "POST",
            "/v1/traces",
            &[("Content-Type", "application/x-protobuf")],
            b"",
        )
    })
    .await
    .unwrap();
    assert_eq!(answer.status, 404);
    assert!(answer.text().contains("/v1/logs"));

    // The same over gRPC.
    let answer = grpc_call(otlp.grpc, EXPORT, &malformed, false).await;
    assert_eq!(answer.code, 3, "INVALID_ARGUMENT: {}", answer.message);
    assert!(
        answer.message.contains("not a protobuf"),
        "{}",
        answer.message
    );
    let big = simple(&"x".repeat(100_000)).encode_to_vec();
    let answer = grpc_call(otlp.grpc, EXPORT, &big, false).await;
    assert_eq!(answer.code, 8, "RESOURCE_EXHAUSTED: {}", answer.message);
    let answer = grpc_call(
        otlp.grpc,
        EXPORT,
        &simple(&"x".repeat(200_000)).encode_to_vec(),
        true,
    )
    .await;
    assert_eq!(
        answer.code, 8,
        "RESOURCE_EXHAUSTED once decompressed: {}",
        answer.message
    );

    // And the source still works.
    let answer = post_protobuf(addr, &simple("still here")).await;
    assert_eq!(answer.status, 200);
    let answer = grpc_call(
        otlp.grpc,
        EXPORT,
        &simple("still here too").encode_to_vec(),
        false,
    )
    .await;
    assert_eq!(answer.code, 0, "{}", answer.message);
    let lines = wait_for_lines(&otlp.out, 2).await;
    assert_eq!(lines.len(), 2);
    otlp.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_answers_retry_later() {
    let dir = tempfile::tempdir().unwrap();
    // The only output forwards to a server that is not there, so the log fills up.
    let nowhere = free_port();
    let grpc_port = free_port();
    let server = start(
        dir.path(),
        &format!(
            "[log]\nsegment_size = \"4KiB\"\nmax_size = \"16KiB\"\npersistence = \"always\"\n\
             [sources.otel]\ntype = \"otlp\"\nhttp_address = \"127.0.0.1:0\"\n\
             grpc_address = \"127.0.0.1:{grpc_port}\"\nmax_request_size = \"4KiB\"\n\
             [outputs.relay]\ntype = \"forward\"\nservers = [{{ address = \"127.0.0.1:{nowhere}\" }}]\n\
             connect_timeout = \"200ms\"\nbatch = {{ timeout = \"10ms\" }}\n\
             [[routes]]\nmatch = [\"**\"]\noutputs = [\"relay\"]\n"
        ),
    )
    .await;
    let http_addr = server.source_addr("otel").unwrap();
    let grpc_addr = SocketAddr::from(([127, 0, 0, 1], grpc_port));
    let padded = simple(&"x".repeat(1000));
    let mut full = None;
    for _ in 0..200 {
        let answer = post_protobuf(http_addr, &padded).await;
        match answer.status {
            200 => {}
            503 => {
                full = Some(answer);
                break;
            }
            other => panic!("unexpected status {other}: {}", answer.text()),
        }
    }
    let full = full.expect("the log never reported full");
    assert_eq!(full.header("retry-after"), Some("1"));
    let (code, message) = full.rpc_status();
    assert_eq!(code, 14, "UNAVAILABLE");
    assert!(message.contains("full"), "{message}");
    let answer = grpc_call(grpc_addr, EXPORT, &padded.encode_to_vec(), false).await;
    assert_eq!(answer.code, 14, "UNAVAILABLE: {}", answer.message);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let grpc_port = free_port();
    let server = start(
        dir.path(),
        &format!(
            "[sources.otel]\ntype = \"otlp\"\nhttp_address = \"\"\n\
             grpc_address = \"127.0.0.1:{grpc_port}\"\n{}",
            all_to_file(&out)
        ),
    )
    .await;
    // Without HTTP, the source's address is the gRPC one.
    let addr = server.source_addr("otel").unwrap();
    assert_eq!(addr.port(), grpc_port);
    let answer = grpc_call(addr, EXPORT, &simple("grpc only").encode_to_vec(), false).await;
    assert_eq!(answer.code, 0, "{}", answer.message);
    assert_eq!(wait_for_lines(&out, 1).await.len(), 1);
    server.shutdown().await;

    let text = format!(
        "data_dir = {:?}\n[sources.otel]\ntype = \"otlp\"\nhttp_address = \"\"\ngrpc_address = \"\"\n\
         [outputs.null]\ntype = \"null\"\n[[routes]]\nmatch = [\"**\"]\noutputs = [\"null\"]\n",
        dir.path().join("off")
    );
    let error = flumen_server::ServerSpec::parse(&text, "test.toml").unwrap_err();
    assert!(error.to_string().contains("both off"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_idle_clients() {
    let dir = tempfile::tempdir().unwrap();
    let otlp = start_otlp(dir.path(), "").await;
    // A gRPC client that keeps its HTTP/2 connection open, as exporters do, and an idle
    // HTTP/1.1 keep-alive connection.
    let tcp = tokio::net::TcpStream::connect(otlp.grpc).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let _idle_http = TcpStream::connect(otlp.http).unwrap();
    let answer = grpc_call(
        otlp.grpc,
        EXPORT,
        &simple("before shutdown").encode_to_vec(),
        false,
    )
    .await;
    assert_eq!(answer.code, 0, "{}", answer.message);
    assert_eq!(wait_for_lines(&otlp.out, 1).await.len(), 1);
    tokio::time::timeout(Duration::from_secs(10), otlp.server.shutdown())
        .await
        .expect("shutdown waited for idle clients");
    drop(client);
    let _ = connection.await;
}

/// An OTLP source whose multiline filter joins Java stack traces in `message`.
async fn start_otlp_joining_java_traces(dir: &Path) -> Otlp {
    start_otlp(
        dir,
        "[[filters]]\ntype = \"multiline\"\nmode = \"java\"\nfield = \"message\"\n\
         flush_timeout = \"1s\"",
    )
    .await
}

/// The messages stored in `out` once there are `count`, sorted.
async fn stored_messages(out: &Path, count: usize) -> Vec<String> {
    let mut messages: Vec<String> = wait_for_lines(out, count)
        .await
        .iter()
        .map(|line| line["record"]["message"].as_str().unwrap().to_owned())
        .collect();
    messages.sort_unstable();
    messages
}

const EXCEPTION_OF_A: &str = "java.lang.IllegalStateException: boom in A";
const FRAME_OF_B: &str = "\tat com.example.b.Main.run(Main.java:7)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_clients_stack_frame_is_never_joined_into_the_first_clients_exception_over_otlp() {
    let dir = tempfile::tempdir().unwrap();
    let otlp = start_otlp_joining_java_traces(dir.path()).await;

    // Client A's exception is held until the flush timeout, waiting for its stack frames.
    let http = otlp.http;
    let exception =
        tokio::spawn(
            async move { post_protobuf_from(LOCALHOST, http, &simple(EXCEPTION_OF_A)).await },
        );
    // Give A's line time to be taken before B's arrives; were B's first, the test would prove
    // less but still hold.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let frame = post_protobuf_from(SECOND_CLIENT, otlp.http, &simple(FRAME_OF_B)).await;
    assert_eq!(frame.status, 200, "{}", frame.text());
    let exception = exception.await.unwrap();
    assert_eq!(exception.status, 200, "{}", exception.text());

    assert_eq!(
        stored_messages(&otlp.out, 2).await,
        [FRAME_OF_B, EXCEPTION_OF_A],
        "each client's lines are their own events"
    );
    otlp.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_clients_stack_frame_is_never_joined_into_the_first_clients_exception_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let otlp = start_otlp_joining_java_traces(dir.path()).await;

    let grpc = otlp.grpc;
    let exception = tokio::spawn(async move {
        let message = simple(EXCEPTION_OF_A).encode_to_vec();
        grpc_call_from(LOCALHOST, grpc, EXPORT, &message, false).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let message = simple(FRAME_OF_B).encode_to_vec();
    let frame = grpc_call_from(SECOND_CLIENT, otlp.grpc, EXPORT, &message, false).await;
    assert_eq!(frame.code, 0, "{}", frame.message);
    let exception = exception.await.unwrap();
    assert_eq!(exception.code, 0, "{}", exception.message);

    assert_eq!(
        stored_messages(&otlp.out, 2).await,
        [FRAME_OF_B, EXCEPTION_OF_A],
        "each client's lines are their own events"
    );
    otlp.server.shutdown().await;
}
