//! Selector throughput: how many events per second one selector judges, on a 10-field record
//! shaped like a structured service log, and how long parsing takes.
//!
//! - `full_match`: the language's reference selector on an event that passes every part of it
//!   (the worst case: every matcher, filter and regex runs, the line is computed once).
//! - `stream_reject`: the same selector on an event from another service, rejected by the first
//!   equality matcher (the common case when routing).
//! - `line_from_json`: line filters on a record with no `message`/`log`/`msg`, so the line is
//!   the record rendered as JSON.
//!
//! ```sh
//! cargo bench -p flumen-select -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! On the 2-core development VM (release profile): `full_match` ≈ 127 ns (≈ 7.9 M matches/s),
//! `stream_reject` ≈ 13 ns (≈ 76 M/s), `line_from_json` ≈ 1.5 µs (≈ 650 k/s: rendering the
//! record as JSON dominates), `parse` ≈ 28 µs (compiling the regexes dominates).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flumen_event::record::{Record, Value};
use flumen_select::Selector;

const SELECTOR: &str = r#"{service="api", level=~"ERROR|FATAL"} |= "timeout" != "healthcheck" |~ "user=[0-9]+" | status >= 500"#;
const TAG: &str = "docker.api";

fn record(service: &str) -> Record {
    let fields: Vec<(String, Value)> = vec![
        ("time".into(), Value::from("2024-05-01T12:00:00.123Z")),
        ("service".into(), Value::from(service)),
        ("level".into(), Value::from("ERROR")),
        ("host".into(), Value::from("ip-10-0-3-17")),
        ("status".into(), Value::from("503")),
        ("method".into(), Value::from("POST")),
        ("path".into(), Value::from("/v1/orders/checkout")),
        ("latency_ms".into(), Value::UInt(30_012)),
        (
            "kubernetes".into(),
            Value::Map(vec![
                ("namespace".into(), Value::from("shop")),
                ("pod".into(), Value::from("api-7d9f8c6b5-x2x4q")),
            ]),
        ),
        (
            "message".into(),
            Value::from(
                "upstream request timeout after 30000ms calling payments for user=48213 \
                 order=9f1c2a trace=4bf92f3577b34da6a3ce929d0e0e4736",
            ),
        ),
    ];
    Record::from(fields)
}

fn bench(c: &mut Criterion) {
    let selector = Selector::parse(SELECTOR).expect("valid selector");
    let passing = record("api");
    let other = record("billing");
    assert!(selector.matches(TAG, &passing));
    assert!(!selector.matches(TAG, &other));

    let mut without_line = passing.clone();
    without_line.remove("message");
    without_line.insert("error", "upstream timeout for user=48213");
    let json_selector =
        Selector::parse(r#"{service="api"} |= "timeout" |~ "user=[0-9]+""#).expect("valid");
    assert!(json_selector.matches(TAG, &without_line));

    let mut group = c.benchmark_group("matches");
    group.throughput(Throughput::Elements(1));
    group.bench_function("full_match", |b| {
        b.iter(|| black_box(&selector).matches(black_box(TAG), black_box(&passing)))
    });
    group.bench_function("stream_reject", |b| {
        b.iter(|| black_box(&selector).matches(black_box(TAG), black_box(&other)))
    });
    group.bench_function("line_from_json", |b| {
        b.iter(|| black_box(&json_selector).matches(black_box(TAG), black_box(&without_line)))
    });
    group.finish();

    c.bench_function("parse", |b| {
        b.iter(|| Selector::parse(black_box(SELECTOR)).expect("valid"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
