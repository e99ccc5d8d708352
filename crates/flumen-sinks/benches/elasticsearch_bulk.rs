//! The Elasticsearch output's bulk body building: `cargo bench -p flumen-sinks --bench
//! elasticsearch_bulk`. One delivery of 10,000 Docker-like events (service, level,
//! container_id, trace_id, a 120-byte log line) over 4 services, as the Loki benchmark has
//! them, into a daily index: as they come (the record's bytes transcoded to JSON), into an
//! index of their service with an `_id` from a field (records decoded), and mapped to ECS.

use std::hint::black_box;

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flumen_sinks::elasticsearch::{ElasticsearchConfig, ElasticsearchSink};

const EVENTS: u64 = 10_000;

fn sink(extra: &str) -> ElasticsearchSink {
    let config: ElasticsearchConfig =
        toml::from_str(&format!("url = \"http://127.0.0.1:9200\"\n{extra}")).unwrap();
    ElasticsearchSink::from_spec("bench", &config.check().unwrap()).unwrap()
}

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Default::default());
    encoder.write_all(body).unwrap();
    encoder.finish().unwrap()
}

fn bench(c: &mut Criterion) {
    let delivery = common::docker_delivery(EVENTS);
    let cases = [
        ("as they come, daily index", sink("")),
        (
            "index by service, _id from a field",
            sink(
                "index = \"logs-{{service}}-%Y.%m.%d\"\nid_field = \"trace_id\"\nmode = \"create\"",
            ),
        ),
        ("ecs = true", sink("ecs = true")),
    ];
    let mut group = c.benchmark_group("elasticsearch_bulk");
    group.throughput(Throughput::Elements(EVENTS));
    for (name, sink) in &cases {
        let body: usize = sink
            .plan(&delivery)
            .requests
            .iter()
            .map(|r| r.body.len())
            .sum();
        eprintln!("{name}: bulk body for {EVENTS} events: {body} bytes");
        group.bench_function(*name, |b| b.iter(|| sink.plan(black_box(&delivery))));
    }
    let (_, plain) = &cases[0];
    let body = plain.plan(&delivery).requests.remove(0).body;
    eprintln!("gzip: {} bytes", gzip(&body).len());
    group.bench_function("gzip of the first body", |b| {
        b.iter(|| gzip(black_box(&body)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
