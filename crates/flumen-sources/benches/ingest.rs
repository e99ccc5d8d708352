//! The ingest path's cost per chunk: Forward-like connections appending small chunks with chunk
//! ids through their own [`Ingest`] to a real log (`persistence = os`, in a temporary
//! directory), each keeping a few acknowledgements in flight as a Forward connection does.
//!
//! Chunks are small (10 events of about 200 bytes) so that what every chunk costs besides its
//! bytes — the chunk ledger, settling the acknowledgement, routing — is what is measured.
//! Throughput is in events.
//!
//! ```sh
//! cargo bench -p flumen-sources --bench ingest -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Results are recorded in `docs/benchmarks.md` ("Ingest hot path").

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flumen_event::EventTime;
use flumen_event::entry::write_entry;
use flumen_process::Pipeline;
use flumen_routing::{RouteSpec, RouteTable};
use flumen_sources::ingest::chunks::ChunkLedger;
use flumen_sources::{Ingest, SourceShared};
use flumen_wal::{Persistence, Wal, WalConfig, WhenFull};

const EVENTS_PER_CHUNK: u32 = 10;
/// Acknowledgements a connection waits for at once (Fluent Bit's and Fluentd's senders keep a
/// few chunks in flight).
const ACKS_IN_FLIGHT: usize = 8;

/// What every source shares, over a log in `dir` that drops its oldest segments instead of
/// filling the disk, with one route taking every tag.
fn shared(dir: &std::path::Path) -> SourceShared {
    let route = RouteSpec {
        patterns: vec!["**".into()],
        outputs: vec!["out".into()],
        ..RouteSpec::default()
    };
    let wal = Wal::open(WalConfig {
        persistence: Persistence::Os,
        segment_size: 16 * 1024 * 1024,
        max_size: 128 * 1024 * 1024,
        when_full: WhenFull::DropOldest,
        ..WalConfig::new(dir.join("log"))
    })
    .unwrap();
    SourceShared {
        wal: Arc::new(wal),
        routes: Arc::new(RouteTable::new(&[route], &["out".to_owned()]).unwrap()),
        pipeline: Arc::new(Pipeline::new(&[]).unwrap()),
        chunks: Arc::new(ChunkLedger::new(100_000)),
        data_dir: dir.to_owned(),
    }
}

/// The entries of one chunk: records with a ~160-byte access-log line.
fn chunk_entries() -> Vec<u8> {
    let mut entries = Vec::new();
    for n in 0..EVENTS_PER_CHUNK {
        let line = format!(
            "10.0.0.{n} - - [03/Dec/2026:10:00:00 +0000] \"GET /api/v1/items/{n} HTTP/1.1\" 200 512 \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\""
        );
        let mut record = Vec::new();
        rmp::encode::write_map_len(&mut record, 1).unwrap();
        rmp::encode::write_str(&mut record, "log").unwrap();
        rmp::encode::write_str(&mut record, &line).unwrap();
        write_entry(&mut entries, EventTime::new(1_700_000_000, n), &record);
    }
    entries
}

/// One connection sending `chunks` chunks with fresh ids, waiting for the oldest
/// acknowledgement once [`ACKS_IN_FLIGHT`] are out.
async fn connection(shared: SourceShared, ids: Arc<AtomicU64>, entries: Arc<Vec<u8>>, chunks: u64) {
    let mut ingest = Ingest::new("fwd", "", &shared).from_peer([127, 0, 0, 1].into());
    let mut in_flight = VecDeque::with_capacity(ACKS_IN_FLIGHT);
    for _ in 0..chunks {
        let id = ids.fetch_add(1, Ordering::Relaxed).to_string();
        let ack = ingest
            .append("app.web", Some(id.as_bytes()), EVENTS_PER_CHUNK, &entries)
            .await
            .unwrap();
        in_flight.push_back(ack);
        if in_flight.len() == ACKS_IN_FLIGHT {
            assert!(in_flight.pop_front().unwrap().durable().await);
        }
    }
    for mut ack in in_flight {
        assert!(ack.durable().await);
    }
}

fn forward_chunks(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path());
    let ids = Arc::new(AtomicU64::new(0));
    let entries = Arc::new(chunk_entries());
    let mut group = c.benchmark_group("ingest_forward_chunks");
    group.throughput(Throughput::Elements(u64::from(EVENTS_PER_CHUNK)));
    for connections in [1u64, 4, 16] {
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{connections}_connections")),
            &connections,
            |b, &connections| {
                b.iter_custom(|chunks| {
                    let per_connection = chunks.div_ceil(connections);
                    runtime.block_on(async {
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..connections)
                            .map(|_| {
                                tokio::spawn(connection(
                                    shared.clone(),
                                    ids.clone(),
                                    entries.clone(),
                                    per_connection,
                                ))
                            })
                            .collect();
                        for task in tasks {
                            task.await.unwrap();
                        }
                        start
                            .elapsed()
                            .mul_f64(chunks as f64 / (per_connection * connections) as f64)
                    })
                });
            },
        );
    }
    group.finish();
    runtime.block_on(shared.wal.shutdown());
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = forward_chunks
}
criterion_main!(benches);
