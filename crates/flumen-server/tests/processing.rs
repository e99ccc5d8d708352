//! Filters and content routing inside a whole server: real sockets on 127.0.0.1, the durable
//! log, file outputs.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::*;

/// A forward source, `filters`, and two file outputs: `alerts` gets what `alert_select`
/// matches (and `store` too), `store` gets everything.
fn processing_config(filters: &str, alert_select: &str, dir: &Path) -> String {
    format!(
        r#"{source}
[outputs.store]
type = "file"
path = {store:?}
batch = {{ timeout = "10ms" }}
[outputs.alerts]
type = "file"
path = {alerts:?}
batch = {{ timeout = "10ms" }}
{filters}
[[routes]]
match = ["app.**"]
select = '{alert_select}'
outputs = ["alerts", "store"]
[[routes]]
match = ["**"]
outputs = ["store"]
"#,
        source = forward_source(),
        store = dir.join("store.log").display().to_string(),
        alerts = dir.join("alerts.log").display().to_string(),
    )
}

fn record_of(line: &serde_json::Value) -> &serde_json::Map<String, serde_json::Value> {
    line["record"].as_object().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parsed_enriched_redacted_events_are_routed_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let filters = r#"
[[filters]]
type = "parse"
match = ["app.**"]
format = "json"
[[filters]]
type = "enrich"
set = { cluster = "eu-1" }
tag_parts = { service = 1 }
[[filters]]
type = "redact"
"#;
    let server = start(
        dir.path(),
        &processing_config(filters, r#"{level=~"ERROR|FATAL"}"#, dir.path()),
    )
    .await;
    let addr = server.source_addr("fwd").unwrap();
    let lines = [
        r#"{"level":"error","msg":"db down","service":"billing"}"#,
        r#"{"level":"info","msg":"connected to postgres://app:hunter2@db:5432/main"}"#,
        "not json at all",
        r#"{"severity":"FATAL","msg":"out of memory"}"#,
    ];
    let records: Vec<_> = lines.iter().map(|l| fields(&[("log", l)])).collect();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(&packed("app.api", 0, &records, Some("c1")))
        .unwrap();
    assert!(read_ack(&mut stream, "c1", Duration::from_secs(10)));

    let store = wait_for_lines(&dir.path().join("store.log"), 4).await;
    assert_eq!(store.len(), 4);
    let first = record_of(&store[0]);
    assert_eq!(first["level"], "ERROR");
    assert_eq!(first["msg"], "db down");
    assert_eq!(
        first["service"], "billing",
        "the sender's service wins over the tag"
    );
    assert_eq!(first["cluster"], "eu-1");
    assert!(first.contains_key("received_at"));
    assert!(
        !first.contains_key("log"),
        "the parsed line is not kept twice"
    );
    let second = record_of(&store[1]);
    assert_eq!(second["service"], "api", "from the tag");
    let url = second["msg"].as_str().unwrap();
    assert!(!url.contains("hunter2"), "{url}");
    assert!(url.contains("[REDACTED]"), "{url}");
    let third = record_of(&store[2]);
    assert_eq!(third["log"], "not json at all", "kept as it was");
    assert!(third.contains_key("parse_error"), "{third:?}");

    let alerts = wait_for_lines(&dir.path().join("alerts.log"), 2).await;
    let messages: Vec<_> = alerts.iter().map(|l| record_of(l)["msg"].clone()).collect();
    assert_eq!(messages, ["db down", "out of memory"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_with_a_held_stack_trace_is_acknowledged_once_the_trace_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let filters = r#"
[[filters]]
type = "multiline"
mode = "java"
flush_timeout = "3s"
"#;
    let server = start(dir.path(), &processing_config(filters, "{}", dir.path())).await;
    let addr = server.source_addr("fwd").unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    let first = [
        "Starting worker\n",
        "Exception in thread \"main\" java.lang.IllegalStateException: boom\n",
    ];
    let records: Vec<_> = first.iter().map(|l| fields(&[("log", l)])).collect();
    stream
        .write_all(&packed("app.worker", 0, &records, Some("c1")))
        .unwrap();
    // The header may be followed by its stack frames: it is held, and so is the chunk's ack.
    assert!(
        !read_ack(&mut stream, "c1", Duration::from_millis(500)),
        "acknowledged before the held line was stored"
    );
    let second = [
        "\tat Main.run(Main.java:10)\n",
        "\tat Main.main(Main.java:3)\n",
        "Worker stopped\n",
    ];
    let records: Vec<_> = second.iter().map(|l| fields(&[("log", l)])).collect();
    stream
        .write_all(&packed("app.worker", 2, &records, Some("c2")))
        .unwrap();
    assert!(read_ack(&mut stream, "c1", Duration::from_secs(10)));
    assert!(read_ack(&mut stream, "c2", Duration::from_secs(10)));
    let store = wait_for_lines(&dir.path().join("store.log"), 3).await;
    assert_eq!(
        record_of(&store[1])["level"],
        "ERROR",
        "a joined trace is an error"
    );
    assert!(!record_of(&store[0]).contains_key("level"));
    let logs: Vec<_> = store.iter().map(|l| record_of(l)["log"].clone()).collect();
    assert_eq!(
        logs,
        [
            "Starting worker\n",
            "Exception in thread \"main\" java.lang.IllegalStateException: boom\n\tat Main.run(Main.java:10)\n\tat Main.main(Main.java:3)",
            "Worker stopped\n",
        ]
    );

    // A trace at the end of the stream is released by its flush timeout, then acknowledged.
    let records = vec![fields(&[("log", "java.lang.RuntimeException: late\n")])];
    stream
        .write_all(&packed("app.worker", 5, &records, Some("c3")))
        .unwrap();
    assert!(read_ack(&mut stream, "c3", Duration::from_secs(15)));
    let store = wait_for_lines(&dir.path().join("store.log"), 4).await;
    assert_eq!(store.len(), 4);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_processed_chunk_is_stored_once_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let filters = r#"
[[filters]]
type = "parse"
format = "logfmt"
"#;
    let config = processing_config(filters, "{}", dir.path());
    let records = vec![
        fields(&[("log", "level=info msg=\"first\"")]),
        fields(&[("log", "level=warn msg=\"second\"")]),
    ];
    let frame = packed("app.web", 0, &records, Some("resent-1"));
    for round in 0..2 {
        let server = start(dir.path(), &config).await;
        let mut stream = TcpStream::connect(server.source_addr("fwd").unwrap()).unwrap();
        stream.write_all(&frame).unwrap();
        assert!(
            read_ack(&mut stream, "resent-1", Duration::from_secs(10)),
            "round {round}"
        );
        wait_for_lines(&dir.path().join("store.log"), 2).await;
        server.shutdown().await;
    }
    let store = wait_for_lines(&dir.path().join("store.log"), 2).await;
    let messages: Vec<_> = store.iter().map(|l| record_of(l)["msg"].clone()).collect();
    assert_eq!(messages, ["first", "second"], "stored once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_held_line_does_not_hold_up_other_requests() {
    let dir = tempfile::tempdir().unwrap();
    let filters = r#"
[sources.web]
type = "http"
address = "127.0.0.1:0"
[[filters]]
type = "multiline"
mode = "java"
field = "log"
flush_timeout = "5s"
"#;
    let server = start(dir.path(), &processing_config(filters, "{}", dir.path())).await;
    let addr = server.source_addr("web").unwrap();
    let held = std::thread::spawn(move || {
        post_json(
            addr,
            "/app/worker",
            r#"{"log":"java.lang.IllegalStateException: boom"}"#,
        )
    });
    // Give the first request time to be taken (and held) before the second arrives; were
    // the second first, the test would prove less but still hold.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(post_json(addr, "/app/web", r#"{"log":"GET / 200"}"#), 200);
    assert!(
        !held.is_finished(),
        "the held request is answered only once its line is stored"
    );
    assert_eq!(held.join().unwrap(), 200);
    let store = wait_for_lines(&dir.path().join("store.log"), 2).await;
    assert_eq!(store.len(), 2);
    server.shutdown().await;
}
