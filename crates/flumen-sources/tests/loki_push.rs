//! The Loki push route over a real socket and a real log, mounted beside another route as a
//! server would mount it on its API port: a push is durable in the log before its 204, and a
//! bad body is answered 400 with nothing of it stored, while the next is stored.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use flumen_codec::loki::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use flumen_event::record::Event;
use flumen_event::{BatchRef, EntryIter, EventTime};
use flumen_process::Pipeline;
use flumen_routing::{RouteSpec, RouteTable};
use flumen_sources::SourceShared;
use flumen_sources::ingest::chunks::ChunkLedger;
use flumen_sources::loki::{LokiConfig, LokiPush};
use flumen_wal::{Read as WalRead, Wal, WalConfig};
use prost::Message;

/// What sources share, over a log in `dir` that syncs before it acknowledges, with a route
/// that takes every tag.
fn shared(dir: &std::path::Path) -> SourceShared {
    let route = RouteSpec {
        patterns: vec!["**".into()],
        outputs: vec!["out".into()],
        ..RouteSpec::default()
    };
    SourceShared {
        wal: Arc::new(Wal::open(WalConfig::new(dir.join("wal"))).unwrap()),
        routes: Arc::new(RouteTable::new(&[route], &["out".to_owned()]).unwrap()),
        pipeline: Arc::new(Pipeline::new(&[]).unwrap()),
        chunks: Arc::new(ChunkLedger::new(16)),
        data_dir: dir.to_owned(),
    }
}

/// Serves the push route of a source with `config`, merged into a router that has a route of
/// its own; the address.
async fn serve(shared: &SourceShared, config: &str) -> SocketAddr {
    let config: LokiConfig = toml::from_str(config).unwrap();
    let push = LokiPush::new("loki", &config, shared).unwrap();
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .merge(push.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    address
}

/// POSTs `body` on a new connection: the status and the answer's body.
async fn post(
    to: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let path = path.to_owned();
    let headers: Vec<String> = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(to).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
            body.len(),
            headers.concat()
        );
        stream.write_all(head.as_bytes()).unwrap();
        let _ = stream.write_all(&body);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let text = answer
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        (status, text)
    })
    .await
    .unwrap()
}

/// Every durable event in the log: (tag, time, record as JSON).
fn stored(wal: &Wal) -> Vec<(String, EventTime, String)> {
    let mut reader = wal.recent(usize::MAX);
    let mut events = Vec::new();
    loop {
        let WalRead::Records(records) = reader.read_blocking(4096, 64 << 20).unwrap() else {
            panic!("nothing is removed from this log");
        };
        if records.is_empty() {
            return events;
        }
        for record in records {
            let batch = BatchRef::parse(&record.payload).unwrap();
            for entry in EntryIter::new(batch.entries) {
                let event = Event::decode(&entry.unwrap()).unwrap();
                events.push((batch.tag.to_owned(), event.time, event.record.to_json()));
            }
        }
    }
}

fn protobuf_push() -> Vec<u8> {
    let request = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{job="checkout", service_name="shop", level="warn"}"#.into(),
            entries: vec![EntryAdapter {
                timestamp: Some(Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 123_456_789,
                }),
                line: b"card declined".to_vec(),
                structured_metadata: vec![LabelPairAdapter {
                    name: "trace_id".into(),
                    value: "abc123".into(),
                }],
            }],
        }],
    };
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap()
}

const PROTOBUF: (&str, &str) = ("Content-Type", "application/x-protobuf");
const JSON: (&str, &str) = ("Content-Type", "application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_is_durable_in_the_log_before_its_204() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path());
    let address = serve(&shared, "tag = \"loki.{job}\"").await;

    let (status, text) = post(address, "/loki/api/v1/push", &[PROTOBUF], protobuf_push()).await;
    assert_eq!(status, 204, "{text}");
    // Nothing is waited for: the 204 came after the log's sync.
    assert_eq!(
        shared.wal.stats().durable_end.get(),
        1,
        "one batch, durable"
    );
    assert_eq!(
        stored(&shared.wal),
        [(
            "loki.checkout".to_owned(),
            EventTime::new(1_700_000_000, 123_456_789),
            r#"{"job":"checkout","service_name":"shop","level":"WARN","service":"shop","trace_id":"abc123","message":"card declined"}"#
                .to_owned()
        )]
    );

    // The other route of the router is still there.
    let (status, _) = post(address, "/loki/api/v1/push", &[JSON], b"{}".to_vec()).await;
    assert_eq!(status, 400, "a JSON body without streams");
    shared.wal.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_body_is_refused_whole_and_the_next_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path());
    let address = serve(&shared, "").await;

    // The first stream is good, the second's timestamp is not: nothing of the body is stored.
    let bad = r#"{"streams":[
        {"stream":{"job":"a"},"values":[["1700000000000000000","good line"]]},
        {"stream":{"job":"b"},"values":[["yesterday","bad line"]]}]}"#;
    let (status, text) = post(address, "/loki/api/v1/push", &[JSON], bad.into()).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("\"yesterday\" is not a number of Unix nanoseconds at line 3"),
        "the answer says what is wrong: {text}"
    );
    let (status, text) = post(
        address,
        "/loki/api/v1/push",
        &[PROTOBUF],
        b"not snappy".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{text}");

    let good = r#"{"streams":[{"stream":{"job":"a","detected_level":"error"},"values":[["1700000000000000001","next line"]]}]}"#;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(good.as_bytes()).unwrap();
    let (status, text) = post(
        address,
        "/loki/api/v1/push",
        &[JSON, ("Content-Encoding", "gzip")],
        gzip.finish().unwrap(),
    )
    .await;
    assert_eq!(status, 204, "{text}");
    assert_eq!(
        stored(&shared.wal),
        [(
            "loki".to_owned(),
            EventTime::new(1_700_000_000, 1),
            r#"{"job":"a","detected_level":"error","level":"ERROR","message":"next line"}"#
                .to_owned()
        )]
    );
    shared.wal.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_max_body_size_is_413() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path());
    let address = serve(&shared, "max_body_size = \"1KiB\"").await;
    let line = "x".repeat(2000);
    let body = format!(r#"{{"streams":[{{"stream":{{}},"values":[["1","{line}"]]}}]}}"#);
    let (status, text) = post(address, "/loki/api/v1/push", &[JSON], body.into()).await;
    assert_eq!(status, 413, "{text}");
    let (status, text) = post(
        address,
        "/loki/api/v1/push",
        &[("Content-Type", "text/plain")],
        b"x".to_vec(),
    )
    .await;
    assert_eq!(status, 415, "{text}");
    assert!(stored(&shared.wal).is_empty());
    shared.wal.shutdown().await;
}
