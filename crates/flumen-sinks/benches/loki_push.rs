//! The Loki output's request building against flumen's own Loki push input reading it back:
//! `cargo bench -p flumen-sinks --bench loki_push`. One delivery of 10,000 Docker-like events
//! (service, level, container_id, trace_id, a 120-byte log line) over 4 services, labelled by
//! service and level, trace_id as structured metadata.

use std::hint::black_box;

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flumen_codec::loki::{Limits, PushBody, decode_push, push_events};
use flumen_event::EventTime;
use flumen_sinks::loki::{LokiConfig, LokiSink, encode_json, encode_protobuf};

const EVENTS: u64 = 10_000;

fn bench(c: &mut Criterion) {
    let config: LokiConfig = toml::from_str(
        "url = \"http://127.0.0.1:3100\"\nlabels = [\"service\", \"level\"]\nstructured_metadata = [\"trace_id\"]\nline_field = [\"log\"]\n",
    )
    .unwrap();
    let sink = LokiSink::from_spec("bench", &config.check().unwrap()).unwrap();
    let delivery = common::docker_delivery(EVENTS);
    let (streams, _) = sink.plan(&delivery);
    let protobuf = encode_protobuf(&streams);
    let json = encode_json(&streams);
    let limits = Limits::for_body_size(64 << 20);

    let mut group = c.benchmark_group("loki_push");
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("output: plan + snappy protobuf", |b| {
        b.iter(|| {
            let (streams, _) = sink.plan(black_box(&delivery));
            encode_protobuf(&streams)
        })
    });
    group.bench_function("output: plan + json", |b| {
        b.iter(|| {
            let (streams, _) = sink.plan(black_box(&delivery));
            encode_json(&streams)
        })
    });
    group.bench_function("input: snappy protobuf to events", |b| {
        b.iter(|| {
            let push = PushBody {
                content_type: Some("application/x-protobuf"),
                content_encoding: None,
                body: black_box(&protobuf),
            };
            let streams = decode_push(&push, &limits, EventTime::new(0, 0)).unwrap();
            push_events(&streams, &limits, |_| "loki".to_owned(), |_| {}).unwrap()
        })
    });
    group.bench_function("input: json to events", |b| {
        b.iter(|| {
            let push = PushBody {
                content_type: Some("application/json"),
                content_encoding: None,
                body: black_box(&json),
            };
            let streams = decode_push(&push, &limits, EventTime::new(0, 0)).unwrap();
            push_events(&streams, &limits, |_| "loki".to_owned(), |_| {}).unwrap()
        })
    });
    group.finish();
    eprintln!(
        "request body for {EVENTS} events: snappy protobuf {} bytes, json {} bytes",
        protobuf.len(),
        json.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
