//! End-to-end tests of the pipeline inside one process: real sockets on 127.0.0.1, port 0, a
//! temporary data directory per server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

mod common;

use common::*;
use flumen_codec::forward::decode_ack;
use flumen_event::EventTime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_output_relays_to_another_flumen_with_acks_and_failover() {
    let dir = tempfile::tempdir().unwrap();
    let received = dir.path().join("received.log");
    let receiver = start(
        &dir.path().join("receiver"),
        &forward_to_file("", &received),
    )
    .await;
    // The first server refuses connections: the output must fail over to the second.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let relay = start(
        &dir.path().join("relay"),
        &format!(
            "{}[outputs.relay]\ntype = \"forward\"\nrequire_ack = true\nack_timeout = \"5s\"\n\
             servers = [{{ address = \"{dead}\", weight = 100 }}, {{ address = \"{}\", weight = 1 }}]\n\
             batch = {{ timeout = \"10ms\" }}\n[[routes]]\nmatch = [\"app.**\"]\noutputs = [\"relay\"]\n",
            forward_source(),
            receiver.source_addr("fwd").unwrap()
        ),
    )
    .await;
    let relay_addr = relay.source_addr("fwd").unwrap();
    tokio::task::spawn_blocking(move || {
        send_acked(relay_addr, "app.web", 0..500);
        send_acked(relay_addr, "app.db", 500..1000);
    })
    .await
    .unwrap();
    let lines = wait_for_lines(&received, 1000).await;
    assert_eq!(lines.len(), 1000);
    for (i, line) in lines.iter().enumerate() {
        let i = i as u64;
        assert_eq!(line["tag"], if i < 500 { "app.web" } else { "app.db" });
        assert_eq!(line["record"]["n"], i);
        assert_eq!(line["record"]["log"], format!("line {i}"));
        let expected_time = EventTime::new(1_700_000_000 + i, i as u32 * 7).to_string();
        assert_eq!(line["time"], expected_time.as_str());
    }
    relay.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_resumes_its_outputs_without_loss_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let body = forward_to_file("", &out);
    for round in 0..3u64 {
        let server = start(dir.path(), &body).await;
        let addr = server.source_addr("fwd").unwrap();
        tokio::task::spawn_blocking(move || send_acked(addr, "t", round * 100..round * 100 + 100))
            .await
            .unwrap();
        server.shutdown().await;
    }
    let lines = wait_for_lines(&out, 300).await;
    let numbers: Vec<u64> = lines
        .iter()
        .map(|l| l["record"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (0..300).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_batches_go_to_the_dead_letter_file() {
    let dir = tempfile::tempdir().unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = start(
        dir.path(),
        &format!(
            "{}[outputs.nowhere]\ntype = \"forward\"\nservers = [{{ address = \"{dead}\" }}]\n\
             connect_timeout = \"200ms\"\nbatch = {{ timeout = \"10ms\" }}\n\
             retry = {{ initial_backoff = \"10ms\", max_backoff = \"20ms\", max_duration = \"200ms\" }}\n\
             [[routes]]\nmatch = [\"**\"]\noutputs = [\"nowhere\"]\n",
            forward_source()
        ),
    )
    .await;
    let addr = server.source_addr("fwd").unwrap();
    tokio::task::spawn_blocking(move || send_acked(addr, "lost.cause", 0..10))
        .await
        .unwrap();
    let dead_letters = wait_for_lines(&dir.path().join("data/dead-letter/nowhere.jsonl"), 10).await;
    assert_eq!(dead_letters.len(), 10);
    assert_eq!(dead_letters[3]["record"]["n"], 3);
    assert!(
        dead_letters[0]["error"]
            .as_str()
            .unwrap()
            .contains("no forward server took the chunk")
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_connection_is_closed_and_others_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let server = start(
        dir.path(),
        &forward_to_file("max_frame_size = \"64KiB\"", &out),
    )
    .await;
    let addr = server.source_addr("fwd").unwrap();
    tokio::task::spawn_blocking(move || {
        let mut good = TcpStream::connect(addr).unwrap();
        for garbage in [&[0xc1u8, 0, 0][..], &chunk("big", 0..5000, None)[..]] {
            let mut bad = TcpStream::connect(addr).unwrap();
            bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = bad.write_all(garbage);
            let mut buf = [0u8; 16];
            // The server closes the connection: EOF (or a reset).
            assert!(matches!(bad.read(&mut buf), Ok(0) | Err(_)));
        }
        good.write_all(&chunk("good", 0..5, None)).unwrap();
        send_acked(addr, "good", 5..10);
    })
    .await
    .unwrap();
    let lines = wait_for_lines(&out, 10).await;
    assert_eq!(lines.len(), 10);
    assert!(lines.iter().all(|l| l["tag"] == "good"));
    server.shutdown().await;
}

/// A minimal HTTP/1.1 POST over a std socket; returns the status code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_answers_503_and_recovers_when_the_output_drains() {
    let dir = tempfile::tempdir().unwrap();
    // The only output forwards to a server that is not there yet, so the log fills up.
    let later = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let later_addr = later.local_addr().unwrap();
    drop(later);
    let server = start(
        dir.path(),
        &format!(
            "[log]\nsegment_size = \"4KiB\"\nmax_size = \"16KiB\"\npersistence = \"always\"\n\
             [sources.web]\ntype = \"http\"\naddress = \"127.0.0.1:0\"\nmax_body_size = \"4KiB\"\n\
             [outputs.relay]\ntype = \"forward\"\nservers = [{{ address = \"{later_addr}\" }}]\n\
             require_ack = true\nrecover_wait = \"50ms\"\nconnect_timeout = \"200ms\"\n\
             batch = {{ timeout = \"10ms\" }}\n\
             retry = {{ initial_backoff = \"20ms\", max_backoff = \"50ms\" }}\n\
             [[routes]]\nmatch = [\"**\"]\noutputs = [\"relay\"]\n"
        ),
    )
    .await;
    let web = server.source_addr("web").unwrap();
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(1000));
    let (accepted, refused) = tokio::task::spawn_blocking(move || {
        let mut accepted = 0u64;
        for _ in 0..200 {
            match post_json(web, "/app.web", &body) {
                200 => accepted += 1,
                503 => return (accepted, true),
                other => panic!("unexpected status {other}"),
            }
        }
        (accepted, false)
    })
    .await
    .unwrap();
    assert!(
        refused,
        "the log never reported full after {accepted} requests"
    );
    assert!(accepted >= 5, "only {accepted} requests fit before 503");

    // The destination comes up: the output drains the log and every accepted event arrives.
    let received = dir.path().join("received.log");
    let receiver_body = format!(
        "[sources.fwd]\ntype = \"forward\"\naddress = \"{later_addr}\"\n{}[[routes]]\nmatch = [\"**\"]\noutputs = [\"file\"]\n",
        file_output(&received)
    );
    let receiver = start(&dir.path().join("receiver"), &receiver_body).await;
    let lines = wait_for_lines(&received, accepted as usize).await;
    assert_eq!(lines.len() as u64, accepted);
    let status = tokio::task::spawn_blocking(move || post_json(web, "/app.web", "{\"after\":1}"))
        .await
        .unwrap();
    assert_eq!(status, 200, "the log has room again");
    server.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_connection_finishes_its_frame_acks_it_and_closes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let server = start(
        dir.path(),
        &forward_to_file("max_connection_age = \"300ms\"", &out),
    )
    .await;
    let addr = server.source_addr("fwd").unwrap();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // Half a frame, then past the maximum age, then the rest: the frame must still be taken.
        let frame = chunk("aged", 0..50, Some("aged-1"));
        let (head, tail) = frame.split_at(frame.len() / 2);
        stream.write_all(head).unwrap();
        std::thread::sleep(Duration::from_millis(600));
        stream.write_all(tail).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        let (acked, used) = decode_ack(&answer)
            .unwrap()
            .expect("an ack before the close");
        assert_eq!(acked, b"aged-1");
        assert_eq!(
            used,
            answer.len(),
            "the connection closes right after the ack"
        );
    })
    .await
    .unwrap();
    assert_eq!(wait_for_lines(&out, 50).await.len(), 50);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_chunk_is_acknowledged_but_stored_once_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let body = forward_to_file("", &out);
    let server = start(dir.path(), &body).await;
    let addr = server.source_addr("fwd").unwrap();
    // The same chunk (same id) three times, on three connections, as a sender that missed acks.
    tokio::task::spawn_blocking(move || (0..3).for_each(|_| send_acked(addr, "t", 0..20)))
        .await
        .unwrap();
    assert_eq!(wait_for_lines(&out, 20).await.len(), 20);
    server.shutdown().await;

    let server = start(dir.path(), &body).await;
    let addr = server.source_addr("fwd").unwrap();
    tokio::task::spawn_blocking(move || {
        send_acked(addr, "t", 0..20); // a resend after the restart: known from the log
        send_acked(addr, "t", 20..30); // a new chunk
    })
    .await
    .unwrap();
    let lines = wait_for_lines(&out, 30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines_after = wait_for_lines(&out, 30).await;
    assert_eq!(lines.len(), 30);
    assert_eq!(lines_after.len(), 30, "nothing stored twice");
    let numbers: Vec<u64> = lines_after
        .iter()
        .map(|l| l["record"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (0..30).collect::<Vec<_>>());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_acknowledges_every_chunk_it_stored() {
    const CHUNKS: u64 = 200;
    const EVENTS: u64 = 10;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let body = forward_to_file("", &out);
    let server = start(dir.path(), &body).await;
    let addr = server.source_addr("fwd").unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    let frames: Vec<u8> = (0..CHUNKS)
        .flat_map(|i| chunk("t", i * EVENTS..(i + 1) * EVENTS, Some(&format!("c{i}"))))
        .collect();
    stream.write_all(&frames).unwrap();
    // Stop as soon as the first chunk is acknowledged, with the others' acks still to send.
    let mut reader = stream.try_clone().unwrap();
    tokio::task::spawn_blocking(move || {
        assert!(read_ack(&mut reader, "c0", Duration::from_secs(10)))
    })
    .await
    .unwrap();
    let stopping = tokio::spawn(server.shutdown());
    let acked = tokio::task::spawn_blocking(move || {
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let mut acked = 1; // c0
        let mut rest = &answer[..];
        while let Some((_, used)) = decode_ack(rest).unwrap() {
            acked += 1;
            rest = &rest[used..];
        }
        acked
    })
    .await
    .unwrap();
    stopping.await.unwrap();

    // What the log kept reaches the file after a restart; a marker sent last shows it all has.
    let server = start(dir.path(), &body).await;
    let addr = server.source_addr("fwd").unwrap();
    let marker = 1_000_000;
    tokio::task::spawn_blocking(move || send_acked(addr, "t", marker..marker + 1))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let stored = loop {
        let lines = wait_for_lines(&out, 1).await;
        if lines.iter().any(|l| l["record"]["n"] == marker) || std::time::Instant::now() > deadline
        {
            break lines.len() as u64 - 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server.shutdown().await;
    assert_eq!(
        stored,
        acked * EVENTS,
        "every stored chunk is acknowledged before the connection closes ({acked} acks)"
    );
}
