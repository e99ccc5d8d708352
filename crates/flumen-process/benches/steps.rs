//! Benchmarks of the filter and joining steps, per event.
//!
//! `cargo bench -p flumen-process --bench steps -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flumen_event::EventTime;
use flumen_event::record::{Event, Record, Value};
use flumen_process::multiline::{Multiline, MultilineConfig, MultilineMode};
use flumen_process::partial::{PartialConfig, PartialJoin};
use flumen_process::rate_limit::{RateLimitConfig, RateLimiter};
use flumen_process::redact::{RedactConfig, Redactor};
use flumen_process::sample::{SampleConfig, Sampler};

fn docker(container: &str, log: String) -> Event {
    Event {
        time: EventTime::new(1_700_000_000, 0),
        record: Record::from(vec![
            ("container_id".to_owned(), Value::from(container)),
            ("container_name".to_owned(), Value::from("/checkout-7d9f")),
            ("source".to_owned(), Value::from("stderr")),
            ("log".to_owned(), Value::from(log)),
        ]),
        metadata: None,
    }
}

const CLEAN: &str = "10.42.0.17 - - [21/Nov/2026:13:31:30 +0000] \"GET /v1/orders?limit=50&page=3 HTTP/1.1\" 200 1432 \"-\" \"Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\" rt=0.012 uct=0.001\n";
const SECRETS: &str = "2026-11-21T13:31:30Z WARN upstream 401 for jane.doe@example.com: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJqYW5lIn0.c2lnbmF0dXJlc2lnbmF0dXJl db=postgres://app:s3cret@db:5432/orders\n";

fn redaction(c: &mut Criterion) {
    let redactor = Redactor::new(&RedactConfig::default()).unwrap();
    let mut group = c.benchmark_group("redact");
    for (name, line) in [("clean_line", CLEAN), ("line_with_3_secrets", SECRETS)] {
        eprintln!("redact/{name}: {} bytes of log per event", line.len());
        let event = docker("3f2a9c", line.to_owned());
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || event.clone(),
                |e| black_box(redactor.apply(e)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// A Java service's stderr: request logs with a stack trace every 50 lines, two containers.
fn java_stream() -> Vec<Event> {
    let trace = [
        "java.lang.IllegalStateException: connection orders-db reset while running: UPDATE orders SET state='paid' WHERE id=A-1042",
        "\tat com.example.shop.db.Connection.query(Connection.java:88)",
        "\tat com.example.shop.checkout.CheckoutService.pay(CheckoutService.java:142)",
        "\tat com.example.shop.checkout.CheckoutController.post(CheckoutController.java:57)",
        "\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)",
        "\tat java.base/java.lang.reflect.Method.invoke(Method.java:580)",
        "\tat org.springframework.web.method.support.InvocableHandlerMethod.doInvoke(InvocableHandlerMethod.java:255)",
        "Caused by: java.net.SocketException: Connection reset",
        "\tat java.base/sun.nio.ch.NioSocketImpl.implRead(NioSocketImpl.java:318)",
        "\t... 12 more",
    ];
    let mut events = Vec::new();
    for i in 0..1000 {
        let container = if i % 2 == 0 { "3f2a9c" } else { "8b1e07" };
        if i % 50 == 49 {
            for line in trace {
                events.push(docker(container, format!("{line}\n")));
            }
        } else {
            events.push(docker(
                container,
                format!("2026-11-21 13:31:30.{i:03} INFO  [http-nio-8080-exec-{}] c.e.s.c.CheckoutController : order {i} paid in 12ms\n", i % 8),
            ));
        }
    }
    events
}

fn multiline(c: &mut Criterion) {
    let multiline = Arc::new(Multiline::new(&MultilineConfig::new(MultilineMode::Java)).unwrap());
    let events = java_stream();
    let bytes: usize = events
        .iter()
        .map(|e| e.record.get("log").unwrap().as_str().unwrap().len())
        .sum();
    eprintln!(
        "multiline/java_mixed_stream: {} events, {bytes} bytes of log",
        events.len()
    );
    let mut group = c.benchmark_group("multiline");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("java_mixed_stream", |b| {
        b.iter_batched(
            || events.clone(),
            |events| {
                let mut joiner = multiline.joiner();
                let now = Instant::now();
                let mut out = Vec::with_capacity(events.len());
                for (seq, event) in events.into_iter().enumerate() {
                    joiner.push("docker.checkout", (seq as u64, event), now, &mut out);
                }
                let mut rest = Vec::new();
                joiner.flush_all(&mut rest);
                black_box((out, rest))
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn partial(c: &mut Criterion) {
    let join = Arc::new(PartialJoin::new(&PartialConfig::default()).unwrap());
    // 100 lines of 64 KiB, each in four 16 KiB pieces, with an ordinary line between.
    let piece = "x".repeat(16 * 1024);
    let mut events = Vec::new();
    for line in 0..100 {
        for ordinal in 1..=4 {
            let mut e = docker("3f2a9c", piece.clone());
            e.record.insert("partial_message", "true");
            e.record.insert("partial_id", format!("{line:064x}"));
            e.record.insert("partial_ordinal", ordinal.to_string());
            e.record.insert("partial_last", (ordinal == 4).to_string());
            events.push(e);
        }
        events.push(docker("3f2a9c", "short line\n".to_owned()));
    }
    eprintln!(
        "partial/docker_16k_pieces: {} events, {} bytes of log",
        events.len(),
        400 * piece.len() + 100 * 11
    );
    let mut group = c.benchmark_group("partial");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("docker_16k_pieces", |b| {
        b.iter_batched(
            || events.clone(),
            |events| {
                let mut joiner = join.joiner();
                let now = Instant::now();
                let mut out = Vec::with_capacity(events.len());
                for (seq, event) in events.into_iter().enumerate() {
                    joiner.push("docker.checkout", (seq as u64, event), now, &mut out);
                }
                black_box(out)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn sample_and_limit(c: &mut Criterion) {
    let sampler = Sampler::new(&SampleConfig::default()).unwrap();
    let events: Vec<Event> = (0..1000)
        .map(|i| {
            let mut e = docker("3f2a9c", format!("order {i} paid\n"));
            e.record
                .insert("service", ["checkout", "search", "auth"][i % 3]);
            e.record
                .insert("level", if i % 20 == 0 { "WARN" } else { "INFO" });
            e
        })
        .collect();
    let mut group = c.benchmark_group("filters");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("sample_3_services", |b| {
        b.iter(|| events.iter().filter(|e| sampler.keep(e)).count())
    });
    let limiter = RateLimiter::new(&RateLimitConfig::new(500, Duration::from_secs(1))).unwrap();
    let now = Instant::now();
    group.bench_function("rate_limit_3_services", |b| {
        b.iter(|| {
            events
                .iter()
                .filter(|e| limiter.keep("docker.checkout", e, now))
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, redaction, multiline, partial, sample_and_limit);
criterion_main!(benches);
