//! Outputs in whole servers inside the test process: what a destination's failures do to the
//! events around them, and what an output counts as delivered.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

mod common;

use common::*;

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
