//! The Firehose output's request building: `cargo bench -p flumen-sinks --bench
//! firehose_put`. One delivery of 10,000 Docker-like events (service, level, container_id,
//! trace_id, a 120-byte log line) made into records (the event as JSON, or the record alone;
//! one event a record, or aggregated) and then into the `PutRecordBatch` bodies of at most 500
//! records and 4 MB, base64 inside JSON.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flumen_event::{BatchBuilder, EventTime, TenantId};
use flumen_sinks::Delivery;
use flumen_sinks::firehose::{FirehoseConfig, calls, records};

const EVENTS: u64 = 10_000;

fn record(n: u64) -> Vec<u8> {
    let service = ["api", "web", "billing", "search"][(n % 4) as usize];
    let level = ["INFO", "INFO", "WARN", "ERROR"][(n % 4) as usize];
    let fields = [
        ("service", service.to_owned()),
        ("level", level.to_owned()),
        ("container_id", format!("{:064x}", n % 8)),
        ("trace_id", format!("{n:032x}")),
        (
            "log",
            format!(
                "{n} GET /api/v1/orders/{n}?page=2 HTTP/1.1 200 1532 \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\" 0.0{}",
                n % 10
            ),
        ),
    ];
    let mut out = Vec::new();
    rmp::encode::write_map_len(&mut out, fields.len() as u32).unwrap();
    for (k, v) in fields {
        rmp::encode::write_str(&mut out, k).unwrap();
        rmp::encode::write_str(&mut out, &v).unwrap();
    }
    out
}

fn delivery() -> Delivery {
    let builder = BatchBuilder::new(TenantId::default_tenant(), "").unwrap();
    let mut delivery = Delivery::default();
    for seq in 0..EVENTS / 1000 {
        let mut entries = Vec::new();
        for n in seq * 1000..(seq + 1) * 1000 {
            flumen_event::entry::write_entry(
                &mut entries,
                EventTime::new(1_700_000_000 + n / 100, (n % 100) as u32 * 1000),
                &record(n),
            );
        }
        let batch = builder.encode("docker.app", b"", 1000, &entries).unwrap();
        delivery.push(seq, batch.into(), 1000);
    }
    delivery
}

fn bench(c: &mut Criterion) {
    let delivery = delivery();
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
