//! One benchmark group per parser, on realistic lines: the real nginx, syslog and Python
//! logging output under `tests/data/`, and generated JSON (pino and zap shapes) and logfmt
//! (Heroku router and Go logfmt shapes) lines. Each iteration builds every event the way the
//! pipeline would — a record holding the line, newline included, in `log` — and applies the
//! parser; throughput is the bytes of the lines.
//!
//! `cargo bench -p flumen-parse --bench parsers -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flumen_event::EventTime;
use flumen_event::record::{Event, Record, Value};
use flumen_parse::{Format, ParseConfig, Parser};

const FLUENT_BIT_APACHE: &str = r#"^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^ ]*) +\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")?$"#;

fn data(relative: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(relative);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Lines as a sender would deliver them; the two non-UTF-8 nginx error lines are dropped
    // here only because the benchmark feeds strings.
    String::from_utf8_lossy(&bytes)
        .split_inclusive('\n')
        .filter(|l| !l.contains('\u{fffd}'))
        .map(str::to_owned)
        .collect()
}

/// A small deterministic generator, so that runs compare.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next(items.len() as u64) as usize]
    }
}

const PATHS: &[&str] = &[
    "/api/v1/orders/8123",
    "/api/v1/users/42/preferences",
    "/healthz",
    "/api/v1/search?q=blue+shoes&page=2",
    "/static/js/app.3f9c2b.js",
    "/api/v1/cart",
];
const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const MESSAGES: &[&str] = &[
    "request completed",
    "cache miss, loading from database",
    "payment provider timeout, retrying",
    "user session refreshed",
    "order created",
];

/// pino (Node.js) and zap (Go) production JSON lines.
fn json_lines() -> Vec<String> {
    let mut r = Lcg(7);
    (0..400)
        .map(|i| {
            let t = 1_795_267_887_000u64 + i * 37;
            let line = if i % 2 == 0 {
                format!(
                    r#"{{"level":{},"time":{t},"pid":4242,"hostname":"api-7c9d8f6b5-x2x9q","reqId":"req-{i:x}","req":{{"method":"{}","url":"{}","remoteAddress":"10.0.{}.{}","remotePort":{}}},"res":{{"statusCode":{}}},"responseTime":{}.{},"msg":"{}"}}"#,
                    [30, 30, 30, 40, 50][r.next(5) as usize],
                    r.pick(METHODS),
                    r.pick(PATHS),
                    r.next(255),
                    r.next(255),
                    40_000 + r.next(20_000),
                    [200, 200, 201, 404, 500][r.next(5) as usize],
                    r.next(300),
                    r.next(100),
                    r.pick(MESSAGES),
                )
            } else {
                format!(
                    r#"{{"level":"{}","ts":{}.{:06},"caller":"server/handler.go:{}","msg":"{}","method":"{}","path":"{}","status":{},"latency":0.00{},"request_id":"{:016x}","user_agent":"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"}}"#,
                    r.pick(&["info", "info", "info", "warn", "error"]),
                    t / 1000,
                    r.next(1_000_000),
                    100 + r.next(200),
                    r.pick(MESSAGES),
                    r.pick(METHODS),
                    r.pick(PATHS),
                    [200, 200, 201, 404, 500][r.next(5) as usize],
                    r.next(10_000),
                    r.next(u64::MAX >> 1),
                )
            };
            line + "\n"
        })
        .collect()
}

/// Heroku router lines and Go logfmt (logrus/go-kit) lines.
fn logfmt_lines() -> Vec<String> {
    let mut r = Lcg(11);
    (0..400)
        .map(|i| {
            let line = if i % 2 == 0 {
                format!(
                    r#"at=info method={} path="{}" host=shop-prod.herokuapp.com request_id={:08x}-6a76-4c1d-a8ad-8a0b6e0d1a2f fwd="{}.{}.{}.{}" dyno=web.{} connect={}ms service={}ms status={} bytes={} protocol=https"#,
                    r.pick(METHODS),
                    r.pick(PATHS),
                    r.next(u64::from(u32::MAX)),
                    r.next(255),
                    r.next(255),
                    r.next(255),
                    r.next(255),
                    1 + r.next(4),
                    r.next(3),
                    r.next(400),
                    [200, 200, 201, 404, 503][r.next(5) as usize],
                    r.next(50_000),
                )
            } else {
                format!(
                    r#"time="2026-11-21T13:31:{:02}.{:03}Z" level={} msg="{}" component=api method={} path={} status={} duration={}.{}ms request_id={:016x}"#,
                    r.next(60),
                    r.next(1000),
                    r.pick(&["info", "info", "debug", "warning", "error"]),
                    r.pick(MESSAGES),
                    r.pick(METHODS),
                    r.pick(PATHS),
                    [200, 200, 201, 404, 500][r.next(5) as usize],
                    r.next(400),
                    r.next(1000),
                    r.next(u64::MAX >> 1),
                )
            };
            line + "\n"
        })
        .collect()
}

/// Python logging lines from tests/data plus log4j- and bracket-style lines.
fn tle_lines() -> Vec<String> {
    let python: Vec<String> = data("multiline/python-logging.log")
        .into_iter()
        .filter(|l| l.starts_with("20"))
        .collect();
    let mut r = Lcg(13);
    let mut out = Vec::new();
    for i in 0..300 {
        out.push(match i % 3 {
            0 => python[i % python.len()].clone(),
            1 => format!(
                "2026-11-21T13:31:{:02}.{:03}Z {} [http-nio-8080-exec-{}] c.e.shop.OrderService - {}\n",
                r.next(60),
                r.next(1000),
                r.pick(&["INFO", "INFO", "DEBUG", "WARN", "ERROR"]),
                r.next(10),
                r.pick(MESSAGES)
            ),
            _ => format!(
                "[2026-11-21 13:31:{:02}] {}: {} {}\n",
                r.next(60),
                r.pick(&["INFO", "NOTICE", "WARNING", "ERROR"]),
                r.pick(MESSAGES),
                r.pick(PATHS)
            ),
        });
    }
    out
}

fn syslog_lines() -> Vec<String> {
    let mut out = Vec::new();
    for file in [
        "logger-udp-rfc5424.log",
        "logger-udp-rfc3164.log",
        "rsyslog-forward-rfc5424.log",
        "rsyslog-forward-traditional.log",
        "rsyslog-file-format.log",
        "rsyslog-traditional-file.log",
    ] {
        out.extend(data(&format!("syslog/{file}")));
    }
    out
}

fn parser(config: ParseConfig) -> Parser {
    Parser::new(&config).expect("valid config")
}

fn bench_one(c: &mut Criterion, name: &str, parser: &Parser, lines: &[String]) {
    let bytes: usize = lines.iter().map(String::len).sum();
    // Every line must parse, or the benchmark measures the error path.
    let mut failures = 0;
    for line in lines {
        failures += usize::from(parser.apply(&mut event(line)).is_err());
    }
    eprintln!(
        "{name}: {} lines, {bytes} bytes ({:.0} B/line), {failures} fail to parse",
        lines.len(),
        bytes as f64 / lines.len() as f64
    );
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(format!("{}_lines", lines.len()), |b| {
        b.iter(|| {
            for line in lines {
                let mut e = event(line);
                let _ = black_box(parser.apply(&mut e));
                black_box(&e);
            }
        })
    });
    group.finish();
}

fn event(line: &str) -> Event {
    Event {
        time: EventTime::new(1_795_267_887, 0),
        record: Record::from(vec![
            (
                "container_id".to_owned(),
                Value::from("8f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8"),
            ),
            ("container_name".to_owned(), Value::from("/web-1")),
            ("source".to_owned(), Value::from("stdout")),
            ("log".to_owned(), Value::from(line)),
        ]),
        metadata: None,
    }
}

fn parsers(c: &mut Criterion) {
    let access = data("nginx/access.log");
    let common = data("nginx/common.log");
    bench_one(
        c,
        "apache_common",
        &parser(ParseConfig::new(Format::ApacheCommon)),
        &common,
    );
    let regex = ParseConfig {
        pattern: Some(FLUENT_BIT_APACHE.to_owned()),
        ..ParseConfig::new(Format::Regex)
    };
    // Fluent Bit's regex misses 3 of the real lines (a path with spaces, HTTP/0.9, a cut
    // request); drop them so both measure the same successful parse.
    let regex_parser = parser(regex);
    let matched: Vec<String> = common
        .iter()
        .filter(|l| regex_parser.apply(&mut event(l)).is_ok())
        .cloned()
        .collect();
    bench_one(c, "regex_apache_common", &regex_parser, &matched);
    bench_one(
        c,
        "apache_common_same_lines",
        &parser(ParseConfig::new(Format::ApacheCommon)),
        &matched,
    );
    bench_one(
        c,
        "apache_combined",
        &parser(ParseConfig::new(Format::ApacheCombined)),
        &access,
    );
    bench_one(
        c,
        "nginx_combined",
        &parser(ParseConfig::new(Format::NginxCombined)),
        &access,
    );
    bench_one(
        c,
        "nginx_error",
        &parser(ParseConfig::new(Format::NginxError)),
        &data("nginx/error.log"),
    );
    bench_one(
        c,
        "syslog",
        &parser(ParseConfig::new(Format::Syslog)),
        &syslog_lines(),
    );
    bench_one(
        c,
        "json",
        &parser(ParseConfig::new(Format::Json)),
        &json_lines(),
    );
    bench_one(
        c,
        "logfmt",
        &parser(ParseConfig::new(Format::Logfmt)),
        &logfmt_lines(),
    );
    bench_one(
        c,
        "tle",
        &parser(ParseConfig::new(Format::Tle)),
        &tle_lines(),
    );
    bench_one(
        c,
        "plain",
        &parser(ParseConfig::new(Format::Plain)),
        &access,
    );
}

criterion_group!(benches, parsers);
criterion_main!(benches);
