//! The S3 output's CPU work for one object: rendering the events as JSON lines and
//! compressing them, `cargo bench -p flumen-sinks --bench s3_objects`. One delivery of 20,000
//! Docker-like events (service, level, container_id, trace_id, a 120-byte log line) under one
//! key prefix, gzip (level 6 and 1), zstd (level 3 and 1) and none. Throughput is in bytes of
//! raw log (the JSON lines before compression), so MB/s is raw log per core.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flumen_event::{BatchBuilder, EventTime, TenantId};
use flumen_sinks::Delivery;
use flumen_sinks::s3::{S3Config, objects};

const EVENTS: u64 = 20_000;

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
                EventTime::new(1_700_000_000, (n % 1000) as u32 * 1000),
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
    let spec = |compression: &str| {
        let config: S3Config = toml::from_str(&format!(
            "bucket = \"logs\"\nkey_prefix = \"{{{{tag}}}}/dt=%Y-%m-%d/\"\n{compression}"
        ))
        .unwrap();
        config.check().unwrap()
    };
    let raw = objects(&spec("compression = \"none\""), "n-o-", &delivery);
    assert_eq!(raw.len(), 1, "one prefix, one object");
    let raw_bytes = raw[0].body.len() as u64;

    let mut group = c.benchmark_group("s3_objects");
    group.throughput(Throughput::Bytes(raw_bytes));
    for (name, settings) in [
        ("none", "compression = \"none\""),
        ("gzip 6", "compression = \"gzip\""),
        ("gzip 1", "compression = \"gzip\"\ncompression_level = 1"),
        ("zstd 3", "compression = \"zstd\""),
        ("zstd 1", "compression = \"zstd\"\ncompression_level = 1"),
    ] {
        let spec = spec(settings);
        let size = objects(&spec, "n-o-", &delivery)[0].body.len();
        eprintln!(
            "{name}: {raw_bytes} bytes of JSON lines -> {size} bytes ({:.1}x)",
            raw_bytes as f64 / size as f64
        );
        group.bench_function(name, |b| {
            b.iter(|| objects(black_box(&spec), "n-o-", black_box(&delivery)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
