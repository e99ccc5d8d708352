//! The Elasticsearch output's bulk body building: `cargo bench -p flumen-sinks --bench
//! elasticsearch_bulk`. One delivery of 10,000 Docker-like events (service, level,
//! container_id, trace_id, a 120-byte log line) over 4 services, as the Loki benchmark has
//! them, into a daily index: as they come (the record's bytes transcoded to JSON), into an
//! index of their service with an `_id` from a field (records decoded), and mapped to ECS.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flumen_event::{BatchBuilder, EventTime, TenantId};
use flumen_sinks::Delivery;
use flumen_sinks::elasticsearch::{ElasticsearchConfig, ElasticsearchSink};

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
    let delivery = delivery();
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
