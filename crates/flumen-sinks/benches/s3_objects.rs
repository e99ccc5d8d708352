//! The S3 output's CPU work for one object: rendering the events as JSON lines and
//! compressing them, `cargo bench -p flumen-sinks --bench s3_objects`. One delivery of 20,000
//! Docker-like events (`common::docker_record`) under one key prefix, gzip (level 6 and 1),
//! zstd (level 3 and 1) and none. Throughput is in bytes of raw log (the JSON lines before
//! compression), so MB/s is raw log per core.

use std::hint::black_box;

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flumen_sinks::s3::{S3Config, objects};

const EVENTS: u64 = 20_000;

fn bench(c: &mut Criterion) {
    let delivery = common::docker_delivery(EVENTS);
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
