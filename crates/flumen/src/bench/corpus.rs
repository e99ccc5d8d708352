//! `flumen bench --corpus day`: a deterministic corpus that looks like production, for
//! benchmarks of the store (ingest, compression, queries).
//!
//! Event `i` of `n` is a pure function of `(seed, i, n)`: any number of connections can send
//! their share (connection `c` of `C` sends `c, c + C, c + 2C, ...`) and the same corpus can be
//! written as JSON lines (`--write-jsonl`) to measure its raw size.
//!
//! What it holds, over one simulated day (2026-12-01T00:00:00Z to 24:00, event times evenly
//! spaced and in index order):
//!
//! - 200 services (`checkout-api`, `payment-worker`, ...) with Zipf-like volumes (the largest
//!   about 5 % of the events, the smallest about 0.2 %), in `environment` prod (80 %), staging
//!   (15 %) and dev (5 %);
//! - `deployment_id`s like `checkout-api-7c9f6d5b8`: each service rolls out a new one every
//!   1.5 to 2 hours (with ten minutes of overlap), about 3,000 over the day, each with 2 to 6
//!   containers (`container_id`, 64 hex) on about 300 hosts (`host`);
//! - a unique `request_id` (16 hex) per event, a `trace_id` (32 hex) per 4 events;
//! - `level`: info, about 6 % debug, 7 % warn, 3 % error (access lines by their status);
//! - `message`: nginx-style access log lines (edge and API services), JSON application
//!   messages, and on a third of the errors a multi-line Java or Python stack trace;
//! - [`NEEDLE`], planted in exactly one event per hour (the middle one) and nowhere else.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Datelike;
use flumen_event::EventTime;

/// The simulated day's start: 2026-12-01T00:00:00Z, Unix seconds.
pub const DAY_START_SECS: u64 = 1_796_083_200;
const DAY_SECS: u64 = 86_400;
const DAY_NS: u64 = DAY_SECS * 1_000_000_000;
/// The rare string: one event per hour holds it.
pub const NEEDLE: &str = "needle-7f3a9c";
/// Events that share a trace id.
const PER_TRACE: u64 = 4;
const HOSTS: u64 = 300;

const PREFIXES: [&str; 25] = [
    "checkout",
    "payment",
    "cart",
    "search",
    "catalog",
    "user",
    "auth",
    "billing",
    "inventory",
    "shipping",
    "notification",
    "recommendation",
    "review",
    "pricing",
    "order",
    "fraud",
    "ledger",
    "report",
    "email",
    "media",
    "gateway",
    "session",
    "profile",
    "analytics",
    "ads",
];
const SUFFIXES: [&str; 8] = [
    "api",
    "worker",
    "web",
    "svc",
    "consumer",
    "scheduler",
    "edge",
    "sync",
];

/// What a service logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Access lines, now and then an application message.
    Edge,
    /// Half access lines, half application messages.
    Api,
    /// Application messages only.
    Worker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Java,
    Python,
}

#[derive(Debug)]
struct Service {
    name: String,
    /// The name's first word (`checkout`), its logger package (`com.acme.checkout`,
    /// `acme_checkout`) and its class prefix (`Checkout`).
    base: &'static str,
    package: String,
    class: String,
    kind: Kind,
    lang: Lang,
    /// Seconds between deployments, and where in that cycle the day starts.
    span: u64,
    phase: u64,
    replicas: u64,
}

/// A small, fast PRNG (SplitMix64).
#[derive(Debug, Clone, Copy)]
struct Rng(u64);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    fn new(seed: u64, salt: u64) -> Self {
        Self(mix(seed ^ mix(salt.wrapping_add(0x9e37_79b9_7f4a_7c15))))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// True `per_mille` times in 1,000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// What the corpus planted, and what a query for it should find.
#[derive(Debug, Clone)]
pub struct Info {
    pub seed: u64,
    pub events: u64,
    pub start: String,
    pub end: String,
    pub services: usize,
    /// Deployment ids over the day (distinct).
    pub deployments: u64,
    pub needle: &'static str,
    /// Events holding the needle.
    pub needle_events: u64,
    /// A deployment of a middling service, live around noon.
    pub sample_deployment: String,
    pub sample_service: String,
    /// Events of the sample deployment generated so far (all of them once the corpus is sent).
    pub sample_events: u64,
    /// Bytes of the corpus as JSON lines, when written.
    pub jsonl_bytes: Option<u64>,
}

impl Info {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "seed": self.seed,
            "events": self.events,
            "start": self.start,
            "end": self.end,
            "services": self.services,
            "deployments": self.deployments,
            "needle": self.needle,
            "needle_events": self.needle_events,
            "sample_deployment": self.sample_deployment,
            "sample_service": self.sample_service,
            "sample_events": self.sample_events,
            "jsonl_bytes": self.jsonl_bytes,
        })
    }

    pub fn to_text(&self) -> String {
        format!(
            "corpus: seed {}, {} events from {} to {}, {} services, {} deployments, needle {:?} in {} events, sample deployment {} ({}) with {} events{}",
            self.seed,
            self.events,
            self.start,
            self.end,
            self.services,
            self.deployments,
            self.needle,
            self.needle_events,
            self.sample_deployment,
            self.sample_service,
            self.sample_events,
            self.jsonl_bytes
                .map(|b| format!(", {b} bytes of JSON lines"))
                .unwrap_or_default()
        )
    }
}

/// The corpus: `events` events over the day, from `seed`.
#[derive(Debug)]
pub struct Corpus {
    seed: u64,
    events: u64,
    services: Vec<Service>,
    /// Cumulative weights of the services, out of `total_weight`.
    cumulative: Vec<u64>,
    total_weight: u64,
    /// The sample deployment: (service, cycle).
    sample: (usize, u64),
    sample_events: AtomicU64,
    hosts: Vec<String>,
}

/// One generated event's fields; buffers are reused from event to event.
#[derive(Debug)]
pub struct Event {
    pub time_ns: u64,
    service: usize,
    environment: &'static str,
    level: &'static str,
    host: usize,
    container_id: [u8; 64],
    deployment_id: String,
    request_id: [u8; 16],
    trace_id: [u8; 32],
    message: String,
}

impl Default for Event {
    fn default() -> Self {
        Self {
            time_ns: 0,
            service: 0,
            environment: "",
            level: "",
            host: 0,
            container_id: [b'0'; 64],
            deployment_id: String::new(),
            request_id: [b'0'; 16],
            trace_id: [b'0'; 32],
            message: String::new(),
        }
    }
}

fn hex_into(out: &mut [u8], mut value: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in out.iter_mut().rev() {
        *byte = HEX[(value & 15) as usize];
        value >>= 4;
    }
}

fn as_str(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("hex is ASCII")
}

impl Corpus {
    pub fn new(seed: u64, events: u64) -> Self {
        let mut services = Vec::with_capacity(PREFIXES.len() * SUFFIXES.len());
        for prefix in PREFIXES {
            for suffix in SUFFIXES {
                let n = services.len() as u64;
                let mut rng = Rng::new(seed, 0x5e41 + n);
                let kind = match suffix {
                    "web" | "edge" => Kind::Edge,
                    "api" | "svc" => Kind::Api,
                    _ => Kind::Worker,
                };
                let span = 5_400 + rng.below(1_800);
                let lang = if rng.chance(550) {
                    Lang::Java
                } else {
                    Lang::Python
                };
                services.push(Service {
                    name: format!("{prefix}-{suffix}"),
                    base: prefix,
                    package: match lang {
                        Lang::Java => format!("com.acme.{prefix}"),
                        Lang::Python => format!("acme_{prefix}"),
                    },
                    class: prefix[..1].to_ascii_uppercase() + &prefix[1..],
                    kind,
                    lang,
                    span,
                    phase: rng.below(span),
                    replicas: 2 + rng.below(5),
                });
            }
        }
        // Zipf-like volumes (exponent 0.6) over a shuffled ranking.
        let mut ranks: Vec<usize> = (0..services.len()).collect();
        let mut rng = Rng::new(seed, 0x7a4b);
        for i in (1..ranks.len()).rev() {
            ranks.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut weights = vec![0u64; services.len()];
        for (rank, &service) in ranks.iter().enumerate() {
            weights[service] = (1e6 / ((rank + 1) as f64).powf(0.6)) as u64;
        }
        let mut cumulative = Vec::with_capacity(weights.len());
        let mut total_weight = 0;
        for w in weights {
            total_weight += w;
            cumulative.push(total_weight);
        }
        let sample_service = ranks[ranks.len() / 2];
        let s = &services[sample_service];
        let sample = (sample_service, (DAY_SECS / 2 + s.phase) / s.span);
        Self {
            seed,
            events: events.max(1),
            services,
            cumulative,
            total_weight,
            sample,
            sample_events: AtomicU64::new(0),
            hosts: (0..HOSTS)
                .map(|node| {
                    format!(
                        "ip-10-{}-{}-{}.ec2.internal",
                        node / 100,
                        (node * 7) % 256,
                        (node * 13) % 251 + 4
                    )
                })
                .collect(),
        }
    }

    /// What the corpus planted; the sample's count covers the events generated so far.
    pub fn info(&self) -> Info {
        let needle_events = (0..24)
            .map(|h| self.needle_index(h))
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u64;
        let deployments = self
            .services
            .iter()
            .map(|s| (DAY_SECS - 1 + s.phase) / s.span + 1)
            .sum();
        let (service, cycle) = self.sample;
        Info {
            seed: self.seed,
            events: self.events,
            start: rfc3339(DAY_START_SECS * 1_000_000_000),
            end: rfc3339((DAY_START_SECS + DAY_SECS) * 1_000_000_000),
            services: self.services.len(),
            deployments,
            needle: NEEDLE,
            needle_events: needle_events.min(self.events),
            sample_deployment: self.deployment_id(service, cycle),
            sample_service: self.services[service].name.clone(),
            sample_events: self.sample_events.load(Ordering::Relaxed),
            jsonl_bytes: None,
        }
    }

    /// The event time of event `i`, Unix nanoseconds.
    pub fn time_ns(&self, i: u64) -> u64 {
        DAY_START_SECS * 1_000_000_000
            + (u128::from(i) * u128::from(DAY_NS) / u128::from(self.events)) as u64
    }

    /// The index of the event that holds the needle in hour `h`: the hour's middle one.
    fn needle_index(&self, h: u64) -> u64 {
        (u128::from(2 * h + 1) * u128::from(self.events) / 48) as u64
    }

    fn deployment_id(&self, service: usize, cycle: u64) -> String {
        let mut hex = [0u8; 9];
        hex_into(
            &mut hex,
            mix(self.seed ^ mix((service as u64) << 32 | cycle)) & 0xf_ffff_ffff,
        );
        format!("{}-{}", self.services[service].name, as_str(&hex))
    }

    /// Fills `e` with event `i`.
    pub fn generate(&self, i: u64, e: &mut Event) {
        let mut rng = Rng::new(self.seed, i);
        e.time_ns = self.time_ns(i);
        let secs = (e.time_ns / 1_000_000_000) - DAY_START_SECS;
        let weight = rng.below(self.total_weight);
        let service = self.cumulative.partition_point(|&c| c <= weight);
        let s = &self.services[service];
        e.service = service;
        e.environment = match rng.below(100) {
            0..80 => "prod",
            80..95 => "staging",
            _ => "dev",
        };
        // The deployment live now; in the first ten minutes of a cycle, the previous one too.
        let into = secs + s.phase;
        let mut cycle = into / s.span;
        let age = into % s.span;
        if age < 600 && cycle > 0 && rng.below(600) >= age {
            cycle -= 1;
        }
        if (service, cycle) == self.sample {
            self.sample_events.fetch_add(1, Ordering::Relaxed);
        }
        let dep = mix(self.seed ^ mix((service as u64) << 32 | cycle));
        e.deployment_id.clear();
        e.deployment_id.push_str(&s.name);
        e.deployment_id.push('-');
        let mut hex = [0u8; 9];
        hex_into(&mut hex, dep & 0xf_ffff_ffff);
        e.deployment_id.push_str(as_str(&hex));
        let replica = rng.below(s.replicas);
        let container = mix(dep ^ replica);
        for (k, piece) in e.container_id.chunks_mut(16).enumerate() {
            hex_into(piece, mix(container.wrapping_add(k as u64)));
        }
        e.host = (container % HOSTS) as usize;
        hex_into(&mut e.request_id, mix(self.seed ^ i.wrapping_mul(31)));
        let trace = mix(self.seed.wrapping_add(i / PER_TRACE).wrapping_mul(17));
        hex_into(&mut e.trace_id[..16], trace);
        hex_into(&mut e.trace_id[16..], mix(trace));
        e.message.clear();
        if self.needle_index(secs / 3600) == i {
            e.level = "warn";
            let _ = write!(
                e.message,
                r#"{{"logger":"{}.auth","msg":"login refused","user":"{NEEDLE}","reason":"locked","attempts":{}}}"#,
                s.package,
                3 + rng.below(5)
            );
            return;
        }
        let access = match s.kind {
            Kind::Edge => rng.chance(950),
            Kind::Api => rng.chance(500),
            Kind::Worker => false,
        };
        if access {
            e.level = access_line(&mut e.message, &mut rng, secs);
        } else {
            e.level = app_message(&mut e.message, &mut rng, s, e.environment);
        }
    }

    /// Appends event `i`'s record, msgpack, and returns its time.
    pub fn write_record(&self, i: u64, e: &mut Event, out: &mut Vec<u8>) -> EventTime {
        self.generate(i, e);
        let w = "Vec write";
        rmp::encode::write_map_len(out, 9).expect(w);
        for (key, value) in e.fields(self) {
            rmp::encode::write_str(out, key).expect(w);
            rmp::encode::write_str(out, value).expect(w);
        }
        EventTime::new(
            e.time_ns / 1_000_000_000,
            (e.time_ns % 1_000_000_000) as u32,
        )
    }

    /// Appends event `i` as a JSON line: `{"time":RFC 3339, the record's fields...}`.
    pub fn write_json_line(&self, i: u64, e: &mut Event, out: &mut Vec<u8>) {
        self.generate(i, e);
        out.extend_from_slice(b"{\"time\":\"");
        let _ = write!(out, "{}", time_of(e.time_ns));
        out.push(b'"');
        for (key, value) in e.fields(self) {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            if key == "message" {
                json_string(out, value);
            } else {
                // Names, levels, hosts and hex ids: nothing to escape.
                out.push(b'"');
                out.extend_from_slice(value.as_bytes());
                out.push(b'"');
            }
        }
        out.extend_from_slice(b"}\n");
    }
}

impl Event {
    fn fields<'a>(&'a self, corpus: &'a Corpus) -> [(&'static str, &'a str); 9] {
        [
            ("service", &corpus.services[self.service].name),
            ("environment", self.environment),
            ("level", self.level),
            ("host", &corpus.hosts[self.host]),
            ("container_id", as_str(&self.container_id)),
            ("deployment_id", &self.deployment_id),
            ("request_id", as_str(&self.request_id)),
            ("trace_id", as_str(&self.trace_id)),
            ("message", &self.message),
        ]
    }
}

/// Bytes that a JSON string escapes: control characters, `"` and `\`.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Appends `text` as a JSON string.
fn json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(skip) = bytes[from..].iter().position(|&b| NEEDS_ESCAPE[b as usize]) {
        let at = from + skip;
        out.extend_from_slice(&bytes[from..at]);
        match bytes[at] {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        from = at + 1;
    }
    out.extend_from_slice(&bytes[from..]);
    out.push(b'"');
}

/// Unix nanoseconds as RFC 3339 with nanoseconds, UTC: `EventTime`'s text, as flumen's own
/// JSON renders times.
pub fn rfc3339(ns: u64) -> String {
    time_of(ns).to_string()
}

fn time_of(ns: u64) -> EventTime {
    EventTime::new(ns / 1_000_000_000, (ns % 1_000_000_000) as u32)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

const USER_AGENTS: [&str; 8] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "okhttp/4.12.0",
    "Go-http-client/1.1",
    "python-requests/2.32.3",
    "kube-probe/1.31",
];

/// Appends an nginx combined log line (with the request time) and returns its level.
fn access_line(out: &mut String, rng: &mut Rng, secs: u64) -> &'static str {
    let (method, path_kind) = match rng.below(100) {
        0..55 => ("GET", rng.below(6)),
        55..70 => ("POST", 6 + rng.below(3)),
        70..78 => ("PUT", 9),
        78..82 => ("DELETE", 10),
        _ => ("GET", 11 + rng.below(2)),
    };
    let status: u32 = match rng.below(1000) {
        0..860 => 200,
        860..880 => 201,
        880..900 => 204,
        900..910 => 301,
        910..940 => 304,
        940..955 => 400,
        955..965 => 401,
        965..990 => 404,
        990..993 => 499,
        993..997 => 500,
        997..999 => 502,
        _ => 503,
    };
    let ip = rng.next();
    let t = DAY_START_SECS + secs;
    let date = time_of(t * 1_000_000_000)
        .to_datetime()
        .expect("a day of 2026")
        .date_naive();
    let (mo, d) = (date.month(), date.day());
    let day_secs = t % 86_400;
    let _ = write!(
        out,
        "10.{}.{}.{} - - [{d:02}/{}/2026:{:02}:{:02}:{:02} +0000] \"{method} ",
        ip & 0xff,
        (ip >> 8) & 0xff,
        (ip >> 16) & 0xff,
        MONTHS[mo as usize - 1],
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60,
    );
    let id = rng.below(2_000_000);
    let _ = match path_kind {
        0 => write!(out, "/api/v1/items/{id}"),
        1 => write!(
            out,
            "/api/v1/search?q={}&page={}",
            rng.pick(&["shoes", "laptop", "coffee", "gift", "jacket", "phone case"]),
            1 + rng.below(5)
        ),
        2 => write!(out, "/api/v1/users/{id}/orders?limit=20"),
        3 => write!(out, "/static/js/app.{:08x}.js", rng.next() as u32 & 0xfff),
        4 => write!(out, "/api/v1/cart/{id}"),
        5 => write!(out, "/api/v2/recommendations?user={id}&slot=home"),
        6 => write!(out, "/api/v1/checkout"),
        7 => write!(out, "/api/v1/orders"),
        8 => write!(out, "/api/v1/sessions"),
        9 => write!(out, "/api/v1/cart/{id}/items/{}", rng.below(100_000)),
        10 => write!(out, "/api/v1/cart/{id}/items/{}", rng.below(100_000)),
        11 => write!(out, "/healthz"),
        _ => write!(out, "/metrics"),
    };
    let bytes = match status {
        204 | 304 => 0,
        _ => 200 + rng.below(40_000),
    };
    let _ = write!(
        out,
        " HTTP/1.1\" {status} {bytes} \"{}\" \"{}\" {}.{:03}",
        rng.pick(&[
            "-",
            "-",
            "https://shop.example.com/",
            "https://shop.example.com/cart"
        ]),
        rng.pick(&USER_AGENTS),
        rng.below(2),
        rng.below(1000)
    );
    match status {
        500.. => "error",
        400.. => "warn",
        _ => "info",
    }
}

const THREADS: [&str; 5] = [
    "http-nio-8080-exec-",
    "kafka-consumer-",
    "scheduler-",
    "worker-",
    "grpc-default-executor-",
];

/// Appends an application message (JSON text, or a stack trace) and returns its level.
fn app_message(out: &mut String, rng: &mut Rng, s: &Service, environment: &str) -> &'static str {
    let debug_share = if environment == "dev" { 250 } else { 50 };
    let roll = rng.below(1000);
    let level = if roll < debug_share {
        "debug"
    } else if roll < debug_share + 70 {
        "warn"
    } else if roll < debug_share + 100 {
        "error"
    } else {
        "info"
    };
    let (package, base) = (&s.package, s.base);
    if level == "error" && rng.chance(333) {
        match s.lang {
            Lang::Java => java_trace(out, rng, package, &s.class, base),
            Lang::Python => python_trace(out, rng, package, base),
        }
        return level;
    }
    let thread = rng.pick(&THREADS);
    let _ = write!(
        out,
        r#"{{"logger":"{package}.{}","thread":"{thread}{}","#,
        rng.pick(&[
            "Service",
            "Controller",
            "Repository",
            "Client",
            "Handler",
            "Consumer"
        ]),
        rng.below(32)
    );
    let id = rng.below(10_000_000);
    let ms = rng.below(2_000);
    let _ = match (level, rng.below(4)) {
        ("debug", 0) => write!(
            out,
            r#""msg":"cache lookup","key":"{base}:{id}","hit":{}}}"#,
            rng.chance(700)
        ),
        ("debug", 1) => write!(
            out,
            r#""msg":"sql","statement":"SELECT * FROM {base}s WHERE id = ?","rows":{},"duration_ms":{}}}"#,
            rng.below(50),
            ms / 20
        ),
        ("debug", _) => write!(
            out,
            r#""msg":"outgoing request","url":"http://{}:8080/internal/{base}/{id}","duration_ms":{}}}"#,
            rng.pick(&["pricing-svc", "user-api", "inventory-svc", "auth-api"]),
            ms / 10
        ),
        ("warn", 0) => write!(
            out,
            r#""msg":"slow query","table":"{base}s","duration_ms":{},"threshold_ms":500}}"#,
            500 + ms
        ),
        ("warn", 1) => write!(
            out,
            r#""msg":"retrying request","target":"{}","attempt":{},"max_attempts":5,"backoff_ms":{}}}"#,
            rng.pick(&["payment-api", "inventory-svc", "ledger-svc", "email-worker"]),
            2 + rng.below(3),
            100 * (1 + rng.below(8))
        ),
        ("warn", 2) => write!(
            out,
            r#""msg":"connection pool near capacity","pool":"{base}-db","active":{},"max":50}}"#,
            40 + rng.below(10)
        ),
        ("warn", _) => write!(
            out,
            r#""msg":"deprecated API version used","client":"{}","version":"v1"}}"#,
            rng.pick(&USER_AGENTS[4..])
        ),
        ("error", 0) => write!(
            out,
            r#""msg":"request failed","error":"connection refused","peer":"10.{}.{}.{}:5432","{base}_id":{id}}}"#,
            rng.below(256),
            rng.below(256),
            rng.below(256)
        ),
        ("error", 1) => write!(
            out,
            r#""msg":"upstream timeout","target":"{}","timeout_ms":3000,"elapsed_ms":{}}}"#,
            rng.pick(&["payment-api", "fraud-svc", "pricing-svc", "search-api"]),
            3000 + ms
        ),
        ("error", 2) => write!(
            out,
            r#""msg":"message processing failed","topic":"{base}-events","partition":{},"offset":{},"error":"deserialization error"}}"#,
            rng.below(24),
            rng.next() >> 30
        ),
        ("error", _) => write!(
            out,
            r#""msg":"payment declined","order_id":"o-{id}","code":"{}","amount_cents":{}}}"#,
            rng.pick(&["insufficient_funds", "card_expired", "do_not_honor"]),
            100 + rng.below(50_000)
        ),
        (_, 0) => write!(
            out,
            r#""msg":"order placed","order_id":"o-{id}","user_id":"u-{}","items":{},"total_cents":{},"duration_ms":{}}}"#,
            rng.below(500_000),
            1 + rng.below(9),
            100 + rng.below(50_000),
            ms / 10
        ),
        (_, 1) => write!(
            out,
            r#""msg":"request completed","method":"{}","route":"/api/v1/{base}/{{id}}","status":200,"duration_ms":{}}}"#,
            rng.pick(&["GET", "GET", "POST", "PUT"]),
            ms / 8
        ),
        (_, 2) => write!(
            out,
            r#""msg":"event consumed","topic":"{base}-events","partition":{},"offset":{},"lag":{}}}"#,
            rng.below(24),
            rng.next() >> 30,
            rng.below(200)
        ),
        _ => write!(
            out,
            r#""msg":"job finished","job":"{base}-{}","processed":{},"failed":0,"duration_ms":{}}}"#,
            rng.pick(&["reindex", "sync", "cleanup", "rollup", "export"]),
            rng.below(100_000),
            ms * 10
        ),
    };
    level
}

const JAVA_FRAMEWORK: [&str; 14] = [
    "org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)",
    "org.springframework.web.servlet.DispatcherServlet.doDispatch(DispatcherServlet.java:1089)",
    "org.springframework.web.servlet.DispatcherServlet.doService(DispatcherServlet.java:979)",
    "org.springframework.web.method.support.InvocableHandlerMethod.invokeForRequest(InvocableHandlerMethod.java:150)",
    "org.springframework.aop.framework.ReflectiveMethodInvocation.proceed(ReflectiveMethodInvocation.java:184)",
    "org.springframework.transaction.interceptor.TransactionInterceptor.invoke(TransactionInterceptor.java:119)",
    "jakarta.servlet.http.HttpServlet.service(HttpServlet.java:658)",
    "org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:140)",
    "org.apache.catalina.core.StandardWrapperValve.invoke(StandardWrapperValve.java:167)",
    "org.apache.catalina.connector.CoyoteAdapter.service(CoyoteAdapter.java:344)",
    "org.apache.coyote.http11.Http11Processor.service(Http11Processor.java:391)",
    "org.apache.tomcat.util.net.NioEndpoint$SocketProcessor.doRun(NioEndpoint.java:1769)",
    "java.base/java.util.concurrent.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1144)",
    "java.base/java.lang.Thread.run(Thread.java:1583)",
];

fn java_trace(out: &mut String, rng: &mut Rng, package: &str, cap: &str, base: &str) {
    let (exception, detail) = match rng.below(5) {
        0 => (
            "java.lang.NullPointerException",
            format!("Cannot invoke \"{package}.model.{cap}.getId()\" because \"{base}\" is null"),
        ),
        1 => (
            "java.lang.IllegalStateException",
            format!("{cap} {} is not in a valid state", rng.below(1_000_000)),
        ),
        2 => (
            "org.springframework.dao.DataAccessResourceFailureException",
            "Unable to acquire JDBC Connection".to_owned(),
        ),
        3 => (
            "java.util.concurrent.TimeoutException",
            format!(
                "Timed out after {}ms waiting for {}",
                1000 * (1 + rng.below(5)),
                rng.pick(&["payment-api", "inventory-svc"])
            ),
        ),
        _ => (
            "com.fasterxml.jackson.databind.exc.MismatchedInputException",
            "Cannot deserialize value of type `java.lang.Long` from String \"n/a\"".to_owned(),
        ),
    };
    let _ = write!(
        out,
        "Request processing failed: {exception}: {detail}\n{exception}: {detail}"
    );
    for frame in ["Service.process", "Service.handle", "Controller.post"] {
        let _ = write!(
            out,
            "\n\tat {package}.{cap}{frame}({cap}{}.java:{})",
            &frame[..frame.find('.').unwrap_or(0)],
            20 + rng.below(400)
        );
    }
    let depth = 6 + rng.below(JAVA_FRAMEWORK.len() as u64 - 5) as usize;
    for frame in &JAVA_FRAMEWORK[JAVA_FRAMEWORK.len() - depth..] {
        out.push_str("\n\tat ");
        out.push_str(frame);
    }
    if rng.chance(500) {
        let _ = write!(
            out,
            "\nCaused by: java.net.SocketTimeoutException: Read timed out\n\tat java.base/sun.nio.ch.NioSocketImpl.timedRead(NioSocketImpl.java:278)\n\tat java.base/java.net.Socket$SocketInputStream.read(Socket.java:1099)\n\t... {} more",
            20 + rng.below(30)
        );
    }
}

fn python_trace(out: &mut String, rng: &mut Rng, package: &str, base: &str) {
    let _ = write!(
        out,
        "Unhandled exception in request handler\nTraceback (most recent call last):\n  File \"/usr/local/lib/python3.12/site-packages/flask/app.py\", line 1511, in wsgi_app\n    response = self.full_dispatch_request()\n  File \"/usr/local/lib/python3.12/site-packages/flask/app.py\", line 919, in full_dispatch_request\n    rv = self.handle_user_exception(e)\n  File \"/usr/local/lib/python3.12/site-packages/flask/app.py\", line 917, in full_dispatch_request\n    rv = self.dispatch_request()\n  File \"/app/{package}/views.py\", line {}, in update_{base}\n    item = service.load({base}_id)\n  File \"/app/{package}/service.py\", line {}, in load",
        20 + rng.below(300),
        10 + rng.below(200)
    );
    let _ = match rng.below(4) {
        0 => write!(
            out,
            "\n    return self.cache[key]\nKeyError: '{base}:{}'",
            rng.below(1_000_000)
        ),
        1 => write!(
            out,
            "\n    row = self.db.execute(query, params).fetchone()\n  File \"/usr/local/lib/python3.12/site-packages/sqlalchemy/engine/base.py\", line 1418, in execute\n    return meth(self, distilled_parameters, execution_options)\nsqlalchemy.exc.OperationalError: (psycopg.OperationalError) connection to server at \"10.{}.{}.{}\", port 5432 failed: Connection refused",
            rng.below(256),
            rng.below(256),
            rng.below(256)
        ),
        2 => write!(
            out,
            "\n    return int(payload[\"quantity\"])\nValueError: invalid literal for int() with base 10: 'n/a'"
        ),
        _ => write!(
            out,
            "\n    resp = self.session.get(url, timeout=3)\n  File \"/usr/local/lib/python3.12/site-packages/requests/sessions.py\", line 602, in get\n    return self.request(\"GET\", url, **kwargs)\nrequests.exceptions.ReadTimeout: HTTPConnectionPool(host='{}', port=8080): Read timed out. (read timeout=3)",
            rng.pick(&["pricing-svc", "inventory-svc", "user-api"])
        ),
    };
}

/// Writes the corpus as JSON lines to `path` (`-` for stdout) and returns what it holds.
pub fn write_jsonl(corpus: &Corpus, path: &std::path::Path) -> io::Result<Info> {
    let mut sink: Box<dyn Write> = if path.as_os_str() == "-" {
        Box::new(io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(path)?)
    };
    let mut buf = Vec::with_capacity(1 << 20);
    let mut event = Event::default();
    let mut bytes = 0u64;
    for i in 0..corpus.events {
        corpus.write_json_line(i, &mut event, &mut buf);
        if buf.len() >= 1 << 20 {
            sink.write_all(&buf)?;
            bytes += buf.len() as u64;
            buf.clear();
        }
    }
    sink.write_all(&buf)?;
    bytes += buf.len() as u64;
    sink.flush()?;
    let mut info = corpus.info();
    info.jsonl_bytes = Some(bytes);
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flumen_event::record::Record;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn the_corpus_is_deterministic_and_spread_over_the_day() {
        let a = Corpus::new(7, 10_000);
        let b = Corpus::new(7, 10_000);
        let (mut e, mut x, mut y) = (Event::default(), Vec::new(), Vec::new());
        for i in [0, 1, 4_999, 9_999] {
            a.write_json_line(i, &mut e, &mut x);
            b.write_json_line(i, &mut e, &mut y);
        }
        assert_eq!(x, y);
        assert_eq!(a.time_ns(0), DAY_START_SECS * 1_000_000_000);
        assert!(a.time_ns(9_999) < (DAY_START_SECS + DAY_SECS) * 1_000_000_000);
        assert!(a.time_ns(5_000) > a.time_ns(4_999));
        assert_eq!(rfc3339(a.time_ns(0)), "2026-12-01T00:00:00.000000000Z");
        let other = Corpus::new(8, 10_000);
        let mut z = Vec::new();
        for i in [0, 1, 4_999, 9_999] {
            other.write_json_line(i, &mut e, &mut z);
        }
        assert_ne!(x, z, "another seed, another corpus");
    }

    #[test]
    fn json_lines_and_records_hold_the_same_fields() {
        let corpus = Corpus::new(1, 50_000);
        let mut e = Event::default();
        let mut levels = BTreeMap::new();
        let (mut services, mut deployments, mut multiline, mut access) =
            (BTreeSet::new(), BTreeSet::new(), 0, 0);
        let mut needles = 0;
        for i in 0..50_000 {
            let mut line = Vec::new();
            corpus.write_json_line(i, &mut e, &mut line);
            let json: serde_json::Value = serde_json::from_slice(&line).expect("valid JSON");
            let mut record = Vec::new();
            let time = corpus.write_record(i, &mut e, &mut record);
            assert_eq!(time.as_unix_nanos(), u128::from(corpus.time_ns(i)));
            let decoded = Record::decode(&record).expect("valid msgpack");
            let fields = json.as_object().unwrap();
            assert_eq!(fields.len(), 10);
            for (key, value) in fields.iter().filter(|(k, _)| *k != "time") {
                assert_eq!(
                    decoded.get(key).map(|v| v.to_text().into_owned()),
                    value.as_str().map(str::to_owned),
                    "{key}"
                );
            }
            let message = fields["message"].as_str().unwrap();
            *levels
                .entry(fields["level"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
            services.insert(fields["service"].as_str().unwrap().to_owned());
            deployments.insert(fields["deployment_id"].as_str().unwrap().to_owned());
            multiline += usize::from(message.contains('\n'));
            access += usize::from(message.contains(" HTTP/1.1\" "));
            needles += usize::from(message.contains(NEEDLE));
        }
        assert_eq!(needles, 24);
        assert_eq!(services.len(), 200);
        assert!(
            (2_000..4_000).contains(&deployments.len()),
            "{}",
            deployments.len()
        );
        assert!(levels["info"] > 40_000 && levels["error"] > 500 && levels["debug"] > 1_000);
        assert!(multiline > 100, "{multiline} stack traces");
        assert!(access > 10_000, "{access} access lines");
        let info = corpus.info();
        assert!(
            (2_000..4_000).contains(&info.deployments),
            "{}",
            info.deployments
        );
    }

    #[test]
    fn the_sample_deployment_is_counted() {
        let corpus = Corpus::new(3, 200_000);
        let info = corpus.info();
        let mut e = Event::default();
        let mut found = 0;
        for i in 0..200_000 {
            corpus.generate(i, &mut e);
            found += u64::from(e.deployment_id == info.sample_deployment);
        }
        assert!(found > 0);
        assert_eq!(corpus.info().sample_events, found);
    }
}
