//! The HTTP source inside a whole server: real sockets on 127.0.0.1 (and 127.0.0.2 for a second
//! client), the durable log, file outputs.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use common::*;
use flumen_event::BatchRef;
use flumen_wal::{Read, Wal, WalConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// POSTs a JSON `body` to `path` from the local address `from`; returns the status and the
/// response body.
async fn post_json_from(from: IpAddr, to: SocketAddr, path: &str, body: &str) -> (u16, String) {
    post_from(from, to, path, "application/json", body.as_bytes()).await
}

/// POSTs `body` of `content_type` to `path` from the local address `from`; returns the status
/// and the response body.
async fn post_from(
    from: IpAddr,
    to: SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let mut stream = connect_from(from, to).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("an answer within a minute")
    .unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let text = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (status, text)
}

/// Every batch in the log at `wal_dir` (the server stopped): (entry count, payload size).
fn batches_in_log(wal_dir: &Path) -> Vec<(u32, usize)> {
    let wal = Wal::open(WalConfig::new(wal_dir)).unwrap();
    let mut reader = wal.recent(usize::MAX);
    let mut batches = Vec::new();
    loop {
        let Read::Records(records) = reader.read_blocking(4096, 64 << 20).unwrap() else {
            panic!("nothing is removed from this log");
        };
        if records.is_empty() {
            return batches;
        }
        for record in records {
            let batch = BatchRef::parse(&record.payload).unwrap();
            batches.push((batch.entry_count, record.payload.len()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_32_mib_json_body_of_empty_objects_is_stored_in_bounded_batches() {
    let dir = tempfile::tempdir().unwrap();
    // One segment big enough for everything, so that the null output's progress deletes none
    // of it before the log is read back.
    let config = r#"
[log]
segment_size = "1GiB"
max_size = "4GiB"
[sources.web]
type = "http"
address = "127.0.0.1:0"
[outputs.null]
type = "null"
[[routes]]
match = ["**"]
outputs = ["null"]
"#;
    let server = start(dir.path(), config).await;
    let addr = server.source_addr("web").unwrap();

    // The default body limit, filled with `{}`: [{},{},…,{}].
    let events = (32 << 20) / 3;
    let mut body = String::with_capacity(32 << 20);
    body.push('[');
    for n in 0..events {
        if n > 0 {
            body.push(',');
        }
        body.push_str("{}");
    }
    body.push(']');
    assert!(body.len() <= 32 << 20);

    let (status, text) = post_json_from(LOCALHOST, addr, "/app/flood", &body).await;
    assert_eq!(status, 200, "{text}");
    server.shutdown().await;

    let batches = batches_in_log(&dir.path().join("data/wal"));
    let stored: u64 = batches.iter().map(|&(count, _)| u64::from(count)).sum();
    assert_eq!(stored, events as u64, "every event is stored once");
    let largest = batches.iter().map(|&(_, size)| size).max().unwrap();
    let most_events = batches.iter().map(|&(count, _)| count).max().unwrap();
    assert!(
        largest <= (1 << 20) + 4096,
        "a batch of {largest} bytes: the log's records must stay near 1 MiB"
    );
    assert!(most_events <= 4096, "a batch of {most_events} events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_msgpack_body_that_decodes_to_over_four_times_its_size_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let config = format!(
        "[sources.web]\ntype = \"http\"\naddress = \"127.0.0.1:0\"\n{}",
        all_to_file(&out)
    );
    let server = start(dir.path(), &config).await;
    let addr = server.source_addr("web").unwrap();

    // An array of 65,535 empty maps: one byte each, but an entry (time and record) of 12.
    let mut body = vec![0xdc, 0xff, 0xff];
    body.resize(body.len() + 0xffff, 0x80);
    let (status, text) =
        post_from(LOCALHOST, addr, "/app/flood", "application/msgpack", &body).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("decodes to"), "the answer says why: {text}");

    let (status, text) = post_json_from(LOCALHOST, addr, "/app/after", r#"{"n":1}"#).await;
    assert_eq!(status, 200, "{text}");
    wait_for_lines(&out, 1).await;
    server.shutdown().await;
    let lines = wait_for_lines(&out, 1).await;
    assert_eq!(lines.len(), 1, "nothing of the refused body is stored");
    assert_eq!(lines[0]["tag"], "app.after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_clients_stack_frame_is_never_joined_into_the_first_clients_exception() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let config = format!(
        r#"[sources.web]
type = "http"
address = "127.0.0.1:0"
[[filters]]
type = "multiline"
mode = "java"
field = "log"
flush_timeout = "1s"
{}"#,
        all_to_file(&out)
    );
    let server = start(dir.path(), &config).await;
    let addr = server.source_addr("web").unwrap();

    // Client A's exception is held until the flush timeout, waiting for its stack frames.
    let exception = tokio::spawn(post_json_from(
        LOCALHOST,
        addr,
        "/app/worker",
        r#"{"log":"java.lang.IllegalStateException: boom in A"}"#,
    ));
    // Give A's line time to be taken before B's arrives; were B's first, the test would prove
    // less but still hold.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let frame = post_json_from(
        SECOND_CLIENT,
        addr,
        "/app/worker",
        r#"{"log":"\tat com.example.b.Main.run(Main.java:7)"}"#,
    )
    .await;
    assert_eq!(frame.0, 200, "{}", frame.1);
    let exception = exception.await.unwrap();
    assert_eq!(exception.0, 200, "{}", exception.1);

    let lines = wait_for_lines(&out, 2).await;
    let mut logs: Vec<&str> = lines
        .iter()
        .map(|line| line["record"]["log"].as_str().unwrap())
        .collect();
    logs.sort_unstable();
    assert_eq!(
        logs,
        [
            "\tat com.example.b.Main.run(Main.java:7)",
            "java.lang.IllegalStateException: boom in A",
        ],
        "each client's lines are their own events"
    );
    server.shutdown().await;
}
