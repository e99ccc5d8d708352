//! What it costs to keep a reader's file I/O off the async threads: reads the same log three
//! ways from a tokio task and prints the time per read.
//!
//! - `inline`: `read_blocking` on the task's own thread (what outputs did before: no hand-off,
//!   but the runtime's thread blocks on the file);
//! - `spawn_blocking`: `read`, which runs each read on tokio's blocking pool (what outputs do);
//! - `own thread`: each read handed to a thread kept for the reader, over channels (the
//!   alternative).
//!
//! Each is run with reads of up to 1,024 records / 1 MiB (an output catching up) and of one
//! record (a reader following the log record by record, where the hand-off dominates). Last,
//! what a read costs a reader that is caught up (answered without a hand-off).
//!
//! `cargo run --release -p flumen-wal --example reader_io [records]`

use std::time::{Duration, Instant};

use flumen_wal::{Persistence, Position, Read, Wal, WalConfig, WalReader};

const PAYLOAD: usize = 1024;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let records: u64 = std::env::args()
        .nth(1)
        .map_or(100_000, |n| n.parse().expect("a number of records"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let wal = Wal::open(WalConfig {
        persistence: Persistence::Os,
        max_size: 4 << 30,
        ..WalConfig::new(dir.path())
    })
    .expect("the log opens");
    for i in 0..records {
        let ticket = wal.append(vec![i as u8; PAYLOAD]).await.expect("append");
        if i + 1 == records {
            ticket.durable().await.expect("durable");
        }
    }
    println!("{records} records of {PAYLOAD} bytes (page cache warm after the first pass)");
    for (max_records, label) in [
        (1024, "reads of up to 1024 records / 1 MiB"),
        (1, "reads of one record"),
    ] {
        println!("{label}:");
        // A first pass to warm the page cache, then the measured ones.
        let _ = inline(&mut wal.reader_at(Position::START), max_records);
        for (way, took, reads) in [
            measure("inline", || async {
                inline(&mut wal.reader_at(Position::START), max_records)
            })
            .await,
            measure("spawn_blocking", || async {
                pooled(&mut wal.reader_at(Position::START), max_records).await
            })
            .await,
            measure("own thread", || async {
                own_thread(wal.reader_at(Position::START), max_records).await
            })
            .await,
        ] {
            println!(
                "  {way:>14}: {:>8.1} ms in all, {:>6.2} µs per read ({reads} reads)",
                took.as_secs_f64() * 1e3,
                took.as_secs_f64() * 1e6 / reads as f64
            );
        }
    }
    let took = caught_up(&wal, records).await;
    println!(
        "a caught-up reader asking: {:.3} µs per read",
        took.as_secs_f64() * 1e6 / records as f64
    );
}

/// Reads `times` times from a reader at the end, where there is nothing to read: what a
/// caught-up reader pays for asking.
async fn caught_up(wal: &Wal, times: u64) -> Duration {
    let mut reader = wal.reader_at(wal.durable_end());
    let started = Instant::now();
    for _ in 0..times {
        assert_eq!(count(reader.read(1024, 1 << 20).await.expect("read")), None);
    }
    started.elapsed()
}

/// The best of three runs of `run` (which returns how many reads it made).
async fn measure<F, Fut>(way: &'static str, run: F) -> (&'static str, Duration, u64)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let mut best = Duration::MAX;
    let mut reads = 0;
    for _ in 0..3 {
        let started = Instant::now();
        reads = run().await;
        best = best.min(started.elapsed());
    }
    (way, best, reads)
}

/// Counts the reads it takes to reach the end; panics on anything but records.
fn count(read: Read) -> Option<usize> {
    match read {
        Read::Records(records) if records.is_empty() => None,
        Read::Records(records) => Some(records.len()),
        Read::Removed { .. } => panic!("nothing is removed here"),
    }
}

fn inline(reader: &mut WalReader, max_records: usize) -> u64 {
    let mut reads = 0;
    while count(reader.read_blocking(max_records, 1 << 20).expect("read")).is_some() {
        reads += 1;
    }
    reads
}

async fn pooled(reader: &mut WalReader, max_records: usize) -> u64 {
    let mut reads = 0;
    while count(reader.read(max_records, 1 << 20).await.expect("read")).is_some() {
        reads += 1;
    }
    reads
}

async fn own_thread(mut reader: WalReader, max_records: usize) -> u64 {
    let (requests, asked) = flume::bounded::<tokio::sync::oneshot::Sender<Read>>(1);
    let thread = std::thread::spawn(move || {
        for answer in asked.iter() {
            let _ = answer.send(reader.read_blocking(max_records, 1 << 20).expect("read"));
        }
    });
    let mut reads = 0;
    loop {
        let (answer, answered) = tokio::sync::oneshot::channel();
        requests.send_async(answer).await.expect("the thread runs");
        if count(answered.await.expect("the thread answers")).is_none() {
            break;
        }
        reads += 1;
    }
    drop(requests);
    thread.join().expect("the thread ends");
    reads
}
