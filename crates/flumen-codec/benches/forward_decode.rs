//! Forward decoder throughput: how fast `decode_frame` turns received bytes into validated
//! entries, per event mode, and how fast a text output walks and renders those entries.
//!
//! Every bench handles the same 1,000 events: Docker fluentd-driver-like records
//! (`container_id`, `container_name`, `source`, `log` with a ~120-character access-log line).
//! Throughput is reported both in bytes (the frame bytes as they arrive on the socket, or the
//! entry stream for the rendering benches) and in events.
//!
//! ```sh
//! cargo bench -p flumen-codec --bench forward_decode -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Results are recorded in `docs/benchmarks.md`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flumen_codec::forward::{
    Compression, Decoded, ForwardFrame, Limits, Mode, decode_frame, encode_packed_forward,
    write_message,
};
use flumen_event::entry::write_entry;
use flumen_event::json::write_event_line;
use flumen_event::{EntryIter, EventTime};

const EVENTS: usize = 1_000;
const TAG: &str = "docker.web";
const CHUNK: &str = "NjFhYjMwZjQtYjM4Zi00ZjQ1LTk2MzYtYWU0MTRkYzYzNmQw";

/// A small deterministic generator, so every run benches the same bytes.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next() as usize % items.len()]
    }
}

fn str_(out: &mut Vec<u8>, s: &str) {
    rmp::encode::write_str(out, s).expect("Vec write");
}

/// One record as the Docker fluentd logging driver sends it: four containers, mostly stdout,
/// an nginx-style access-log line.
fn docker_record(rng: &mut Lcg) -> Vec<u8> {
    let container = rng.next() % 4;
    let path = rng.pick(&[
        "/api/v1/orders",
        "/api/v1/users/me",
        "/static/app.3f9c1e.js",
        "/healthz",
        "/api/v1/search?q=flumen&page=2",
    ]);
    let method = rng.pick(&["GET", "GET", "GET", "POST", "PUT"]);
    let status = rng.pick(&["200", "200", "200", "201", "304", "404", "500"]);
    let log = format!(
        "10.{}.{}.{} - - [21/Nov/2026:11:17:{:02} +0000] \"{method} {path} HTTP/1.1\" {status} {} \"-\" \"Mozilla/5.0\" {}.{:03}",
        rng.next() % 256,
        rng.next() % 256,
        rng.next() % 256,
        rng.next() % 60,
        rng.next() % 100_000,
        rng.next() % 2,
        rng.next() % 1000,
    );
    let mut rec = Vec::with_capacity(256);
    rmp::encode::write_map_len(&mut rec, 4).expect("Vec write");
    str_(&mut rec, "container_id");
    str_(
        &mut rec,
        &format!("{:016x}", 0x5eed_0000_0000_0000 + container).repeat(4),
    );
    str_(&mut rec, "container_name");
    str_(&mut rec, &format!("/shop-web-{container}"));
    str_(&mut rec, "source");
    let source = rng.pick(&["stdout", "stdout", "stdout", "stdout", "stderr"]);
    str_(&mut rec, source);
    str_(&mut rec, "log");
    str_(&mut rec, &log);
    rec
}

struct Fixture {
    /// `(time, record)` for each event.
    events: Vec<(EventTime, Vec<u8>)>,
    /// The events as an entry stream, `[time, record]` end to end.
    entries: Vec<u8>,
}

impl Fixture {
    fn new() -> Self {
        let mut rng = Lcg(0x00f1_0e4e);
        let events: Vec<_> = (0..EVENTS)
            .map(|i| {
                let time = EventTime::new(
                    1_795_000_000 + i as u64 / 100,
                    (i as u32 % 100) * 10_000_000,
                );
                (time, docker_record(&mut rng))
            })
            .collect();
        let mut entries = Vec::new();
        for (time, record) in &events {
            write_entry(&mut entries, *time, record);
        }
        Self { events, entries }
    }

    /// 1,000 Message-mode frames `[tag, time, record]` back to back, as the Docker driver sends.
    fn message_stream(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (time, record) in &self.events {
            write_message(&mut out, TAG, *time, record, None);
        }
        out
    }

    /// One Forward-mode frame `[tag, [[time, record], ...], {"chunk": id}]`.
    fn forward_frame(&self) -> Vec<u8> {
        let mut out = vec![0x93];
        str_(&mut out, TAG);
        rmp::encode::write_array_len(&mut out, EVENTS as u32).expect("Vec write");
        out.extend_from_slice(&self.entries);
        rmp::encode::write_map_len(&mut out, 1).expect("Vec write");
        str_(&mut out, "chunk");
        str_(&mut out, CHUNK);
        out
    }

    /// One PackedForward or CompressedPackedForward frame, as Fluent Bit sends.
    fn packed_frame(&self, compression: Compression) -> Vec<u8> {
        let mut out = Vec::new();
        encode_packed_forward(
            &mut out,
            TAG,
            &self.entries,
            EVENTS as u32,
            Some(CHUNK),
            compression,
        );
        out
    }
}

/// Decodes every frame in `buf` as a connection does; returns the number of events.
fn decode_all(mut buf: &[u8], limits: &Limits) -> usize {
    let mut events = 0;
    while let Some((decoded, used)) = decode_frame(buf, limits).expect("valid frames") {
        if let Decoded::Frame(frame) = decoded {
            events += frame.count as usize;
            black_box::<ForwardFrame<'_>>(frame);
        }
        buf = &buf[used..];
    }
    events
}

fn throughput(bytes: usize) -> Throughput {
    Throughput::ElementsAndBytes {
        elements: EVENTS as u64,
        bytes: bytes as u64,
    }
}

fn bench_decode(c: &mut Criterion) {
    let fixture = Fixture::new();
    let limits = Limits::default();
    let inputs = [
        ("message", Mode::Message, fixture.message_stream()),
        ("forward", Mode::Forward, fixture.forward_frame()),
        (
            "packed_forward",
            Mode::PackedForward,
            fixture.packed_frame(Compression::None),
        ),
        (
            "compressed_packed_forward",
            Mode::CompressedPackedForward,
            fixture.packed_frame(Compression::Gzip),
        ),
    ];

    let mut group = c.benchmark_group("forward_decode");
    for (name, mode, input) in &inputs {
        // Check the input is what the bench claims before timing it.
        match decode_frame(input, &limits) {
            Ok(Some((Decoded::Frame(frame), _))) => assert_eq!(frame.mode, *mode, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(decode_all(input, &limits), EVENTS, "{name}");
        eprintln!(
            "{name}: {} wire bytes for {EVENTS} events ({} bytes of entries)",
            input.len(),
            fixture.entries.len()
        );

        group.throughput(throughput(input.len()));
        group.bench_with_input(
            BenchmarkId::new(*name, EVENTS),
            input.as_slice(),
            |b, input| b.iter(|| decode_all(black_box(input), &limits)),
        );
    }
    group.finish();
}

fn bench_entries(c: &mut Criterion) {
    let fixture = Fixture::new();
    let entries = fixture.entries.as_slice();
    let mut group = c.benchmark_group("entries");
    group.throughput(throughput(entries.len()));

    group.bench_with_input(BenchmarkId::new("walk", EVENTS), entries, |b, entries| {
        b.iter(|| {
            let mut n = 0usize;
            for entry in EntryIter::new(black_box(entries)) {
                black_box(entry.expect("valid entry"));
                n += 1;
            }
            n
        })
    });

    let mut line = Vec::with_capacity(64 * 1024);
    group.bench_with_input(
        BenchmarkId::new("walk_render_json", EVENTS),
        entries,
        |b, entries| {
            b.iter(|| {
                line.clear();
                for entry in EntryIter::new(black_box(entries)) {
                    write_event_line(&mut line, TAG, &entry.expect("valid entry"))
                        .expect("renders");
                }
                black_box(line.len())
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench_decode, bench_entries);
criterion_main!(benches);
