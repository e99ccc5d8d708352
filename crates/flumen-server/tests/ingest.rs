//! End-to-end tests of what the ingest path acknowledges: real Forward senders on 127.0.0.1 (and
//! 127.0.0.2, another host as far as flumen can tell), a temporary data directory per server.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

mod common;

use common::*;
use flumen_codec::forward::decode_ack;

/// Every chunk id acknowledged in `answer`, in order.
fn acks(answer: &[u8]) -> Vec<String> {
    let mut acked = Vec::new();
    let mut rest = answer;
    while let Some((id, used)) = decode_ack(rest).unwrap() {
        acked.push(String::from_utf8(id.to_vec()).unwrap());
        rest = &rest[used..];
    }
    assert!(rest.is_empty(), "a partial ack: {rest:?}");
    acked
}

/// Sends `frames` on one connection from `stream`, closes its sending side and returns the ids
/// flumen acknowledged before closing.
fn send_all(mut stream: TcpStream, frames: &[Vec<u8>]) -> Vec<String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    for frame in frames {
        stream.write_all(frame).unwrap();
    }
    stream.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    acks(&answer)
}

/// The `log` field of every stored line.
fn logs(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .map(|line| line["record"]["log"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_line_is_not_acknowledged_unstored_when_a_frame_with_a_long_chunk_id_follows() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let filters = "[[filters]]\ntype = \"multiline\"\nmode = \"java\"\nfield = \"log\"\nflush_timeout = \"1h\"\n";
    let server = start(
        dir.path(),
        &format!("{filters}{}", forward_to_file("", &out)),
    )
    .await;
    let addr = server.source_addr("fwd").unwrap();
    let exception = "java.lang.IllegalStateException: boom";
    let long_id = "x".repeat(250);
    let frames = [
        packed("app", 0, &[fields(&[("log", exception)])], Some("X1")),
        packed(
            "app",
            1,
            &[fields(&[("log", "Worker stopped")])],
            Some(&long_id),
        ),
    ];
    let acked =
        tokio::task::spawn_blocking(move || send_all(TcpStream::connect(addr).unwrap(), &frames))
            .await
            .unwrap();
    assert_eq!(
        acked,
        ["X1"],
        "X1 is acknowledged, the refused frame is not"
    );
    let stored = logs(&wait_for_lines(&out, 1).await);
    assert_eq!(
        stored,
        [exception],
        "X1 was acknowledged: its line must be stored"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_id_over_128_bytes_is_refused_and_the_connections_other_frames_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let server = start(dir.path(), &forward_to_file("", &out)).await;
    let addr = server.source_addr("fwd").unwrap();
    let long_id = "y".repeat(129);
    let frames = [
        chunk("t", 0..3, Some("before")),
        chunk("t", 3..6, Some(&long_id)),
        chunk("t", 6..9, Some("after")),
    ];
    let acked =
        tokio::task::spawn_blocking(move || send_all(TcpStream::connect(addr).unwrap(), &frames))
            .await
            .unwrap();
    assert_eq!(acked, ["before", "after"]);
    let lines = wait_for_lines(&out, 6).await;
    let numbers: Vec<u64> = lines
        .iter()
        .map(|l| l["record"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [0, 1, 2, 6, 7, 8]);
    server.shutdown().await;
}

/// A connection to `addr` from the address `from` (port chosen by the kernel).
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(addr).await.unwrap().into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_sending_identical_chunks_both_have_them_stored() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let body = forward_to_file("", &out);
    let server = start(dir.path(), &body).await;
    let addr = server.source_addr("fwd").unwrap();
    // Two replicas of one service with the same unseeded chunk ids and whole-second times:
    // their start-up chunks are the same bytes.
    let frame = chunk("t", 0..5, Some("same-id"));
    for host in ["127.0.0.1", "127.0.0.2"] {
        let stream = connect_from(host, addr).await;
        let frame = frame.clone();
        let acked = tokio::task::spawn_blocking(move || send_all(stream, &[frame]))
            .await
            .unwrap();
        assert_eq!(acked, ["same-id"], "from {host}");
    }
    assert_eq!(
        wait_for_lines(&out, 10).await.len(),
        10,
        "both hosts' events"
    );
    server.shutdown().await;

    // After a restart, each host's resend is recognised as its own: nothing is stored again.
    let server = start(dir.path(), &body).await;
    let addr = server.source_addr("fwd").unwrap();
    for host in ["127.0.0.2", "127.0.0.1"] {
        let stream = connect_from(host, addr).await;
        let frame = frame.clone();
        let acked = tokio::task::spawn_blocking(move || send_all(stream, &[frame]))
            .await
            .unwrap();
        assert_eq!(acked, ["same-id"], "resend from {host}");
    }
    let probe = chunk("t", 100..101, Some("probe"));
    let stream = connect_from("127.0.0.1", addr).await;
    tokio::task::spawn_blocking(move || send_all(stream, &[probe]))
        .await
        .unwrap();
    let lines = wait_for_lines(&out, 11).await;
    assert_eq!(lines.len(), 11, "resends are not stored twice");
    assert_eq!(lines[10]["record"]["n"], 100, "the probe is stored last");
    server.shutdown().await;
}
