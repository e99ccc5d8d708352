//! Outputs in whole servers inside the test process: what a destination's failures do to the
//! events around them, and what an output counts as delivered.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

mod common;

use common::*;

/// The value of output `output`'s counter `name`; 0 when it was never counted.
fn output_counter(name: &str, output: &str) -> u64 {
    counter(name, &[("output", output)])
}

/// Writes `chunks` to `stream` in one go, then waits for the ack of each.
fn send_chunks_at_once(stream: &mut TcpStream, chunks: &[(&str, std::ops::Range<u64>)]) {
    let mut bytes = Vec::new();
    for (tag, range) in chunks {
        bytes.extend(chunk(
            tag,
            range.clone(),
            Some(&format!("c{}", range.start)),
        ));
    }
    stream.write_all(&bytes).unwrap();
    for (_, range) in chunks {
        let id = format!("c{}", range.start);
        assert!(
            read_ack(stream, &id, Duration::from_secs(10)),
            "no ack for {id}"
        );
    }
}

fn numbers(lines: &[serde_json::Value]) -> Vec<u64> {
    lines
        .iter()
        .map(|line| line["record"]["n"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_too_long_for_a_file_name_is_dead_lettered_at_once_and_other_tags_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // The default retry budget (an hour): only a permanent error can dead-letter within the test.
    let server = start(
        dir.path(),
        &format!(
            "{}[outputs.files]\ntype = \"file\"\npath = {:?}\nbatch = {{ timeout = \"300ms\" }}\n\
             [[routes]]\nmatch = [\"**\"]\noutputs = [\"files\"]\n",
            forward_source(),
            out.join("{{tag}}.log").display().to_string()
        ),
    )
    .await;
    let addr = server.source_addr("fwd").unwrap();
    let long_tag = "x".repeat(300);
    let tag = long_tag.clone();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        // One write, so that the output most likely gathers all three into one delivery.
        send_chunks_at_once(
            &mut stream,
            &[("good", 0..10), (&tag, 10..20), ("good", 20..30)],
        );
    })
    .await
    .unwrap();

    let dead_letters = wait_for_lines(&dir.path().join("data/dead-letter/files.jsonl"), 10).await;
    assert_eq!(
        numbers(&dead_letters),
        (10..20).collect::<Vec<_>>(),
        "the long tag's events, dead-lettered without waiting out the retry budget"
    );
    assert_eq!(dead_letters[0]["tag"], long_tag.as_str());
    let error = dead_letters[0]["error"].as_str().unwrap();
    assert!(error.contains("too long"), "{error}");

    // Writing another event after them shows the output moved on, and that nothing of the first
    // delivery was written again.
    tokio::task::spawn_blocking(move || send_acked(addr, "good", 30..31))
        .await
        .unwrap();
    let good = wait_for_lines(&out.join("good.log"), 21).await;
    let expected: Vec<u64> = (0..10).chain(20..31).collect();
    assert_eq!(numbers(&good), expected, "each good line exactly once");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forward_output_by_default_counts_nothing_delivered_that_was_not_acknowledged() {
    metrics();
    let dir = tempfile::tempdir().unwrap();
    // A receiver that reads everything and never acknowledges.
    let receiver = TcpListener::bind("127.0.0.1:0").unwrap();
    let receiver_addr = receiver.local_addr().unwrap();
    let (received_tx, received_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in receiver.incoming() {
            let Ok(mut stream) = stream else { return };
            let received_tx = received_tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || received_tx.send(n).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let server = start(
        dir.path(),
        &format!(
            "{}[outputs.unacked]\ntype = \"forward\"\nservers = [{{ address = \"{receiver_addr}\" }}]\n\
             ack_timeout = \"200ms\"\nbatch = {{ timeout = \"10ms\" }}\n\
             retry = {{ initial_backoff = \"50ms\", max_backoff = \"100ms\" }}\n\
             [[routes]]\nmatch = [\"**\"]\noutputs = [\"unacked\"]\n",
            forward_source()
        ),
    )
    .await;
    let addr = server.source_addr("fwd").unwrap();
    tokio::task::spawn_blocking(move || send_acked(addr, "t", 0..10))
        .await
        .unwrap();
    received_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the output sent the events");

    // The delivery ends either as delivered (counted) or as a failed attempt (retried).
    let deadline = Instant::now() + Duration::from_secs(10);
    while output_counter("flumen_output_events_total", "unacked") == 0
        && output_counter("flumen_output_retries_total", "unacked") == 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        output_counter("flumen_output_events_total", "unacked"),
        0,
        "events counted as delivered though the receiver acknowledged nothing"
    );
    assert!(output_counter("flumen_output_retries_total", "unacked") > 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_output_with_several_deliveries_in_flight_delivers_each_event_once() {
    metrics();
    let dir = tempfile::tempdir().unwrap();
    // B: a flumen receiving Forward and writing a file.
    let out = dir.path().join("b/out.log");
    let b = start(&dir.path().join("b"), &forward_to_file("", &out)).await;
    let b_addr = b.source_addr("fwd").unwrap();
    // A: deliveries of 10 events, up to 4 on their way at once.
    let a = start(
        &dir.path().join("a"),
        &format!(
            "{}[outputs.relay]\ntype = \"forward\"\nservers = [{{ address = \"{b_addr}\" }}]\n\
             batch = {{ max_events = 10, timeout = \"10ms\", max_in_flight = 4 }}\n\
             [[routes]]\nmatch = [\"**\"]\noutputs = [\"relay\"]\n",
            forward_source()
        ),
    )
    .await;
    let a_addr = a.source_addr("fwd").unwrap();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(a_addr).unwrap();
        let chunks: Vec<(&str, std::ops::Range<u64>)> =
            (0..20).map(|c| ("t", c * 10..(c + 1) * 10)).collect();
        send_chunks_at_once(&mut stream, &chunks);
    })
    .await
    .unwrap();

    let lines = wait_for_lines(&out, 200).await;
    let mut received = numbers(&lines);
    received.sort_unstable();
    assert_eq!(received, (0..200).collect::<Vec<_>>(), "every event once");
    a.shutdown().await;
    b.shutdown().await;
}
