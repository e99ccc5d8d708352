//! The Firehose output's request building: `cargo bench -p flumen-sinks --bench
//! firehose_put`. One delivery of 10,000 Docker-like events (service, level, container_id,
//! trace_id, a 120-byte log line) made into records (the event as JSON, or the record alone;
//! one event a record, or aggregated) and then into the `PutRecordBatch` bodies of at most 500
//! records and 4 MB, base64 inside JSON.

use std::hint::black_box;

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flumen_sinks::firehose::{FirehoseConfig, calls, records};

const EVENTS: u64 = 10_000;

fn bench(c: &mut Criterion) {
    let delivery = common::docker_delivery(EVENTS);
    let mut group = c.benchmark_group("firehose_put");
    group.throughput(Throughput::Elements(EVENTS));
    for (name, extra) in [
        ("event per record", ""),
        ("record per record", "format = \"record\""),
        ("event, aggregated", "aggregate = true"),
    ] {
        let config: FirehoseConfig =
            toml::from_str(&format!("delivery_stream = \"logs\"\n{extra}")).unwrap();
        let made = records(&config, &delivery);
        let bodies = calls("logs", &made.records);
        eprintln!(
            "{name}: {} records, {} calls, {} bytes of request for {EVENTS} events",
            made.records.len(),
            bodies.len(),
            bodies.iter().map(|c| c.body.len()).sum::<usize>()
        );
        group.bench_function(format!("records + bodies: {name}"), |b| {
            b.iter(|| {
                let made = records(&config, black_box(&delivery));
                calls("logs", &made.records)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
