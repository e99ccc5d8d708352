//! The live-tail receiver (`flumen bench --tail URL`): subscriptions to flumen's WebSocket
//! `/api/v1/tail`, each keeping the books the Forward receiver keeps (which sequence numbers of
//! each (run, conn) arrived), and one latency histogram over all of them, from a record's
//! `sent_ns` to the frame's receipt.
//!
//! A subscriber got every event when its books show no gap and no duplicate, when it has as
//! many events as any other subscriber of the same URL (which all get the same stream), and,
//! with `--expect N`, when it has N. Events after the last one a subscriber received leave no
//! gap: only the last two checks see them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::receive::{signalled, unix_nanos};
use super::record::Fields;
use super::track::{ConnReport, Counts, Histogram, Latency, SeqBooks};

/// Subscriptions opening at once: more would overflow flumen's listen backlog, and a refused
/// SYN is retried only after a second.
const CONNECTING_AT_ONCE: usize = 64;
/// Each subscription's read buffer. tungstenite allocates it up front (128 KiB by default),
/// which 10,000 subscriptions cannot afford; flumen's frames are a few hundred bytes.
const READ_BUFFER: usize = 16 << 10;
/// Latencies a subscriber collects before adding them to the shared histogram under its lock.
const LATENCY_BATCH: usize = 64;
/// Incomplete subscribers a report lists at most.
const LISTED: usize = 20;

/// What the subscribers subscribe to, and when they stop.
#[derive(Debug, Clone)]
pub struct Options {
    /// The streams' URLs: subscriber i reads `urls[i % urls.len()]`.
    pub urls: Vec<String>,
    pub subscribers: usize,
    /// Stop after this long without an event, once one has arrived.
    pub until_idle: Option<Duration>,
    /// Stop once every subscriber has this many unique events.
    pub expect: Option<u64>,
    /// The sender's `--deployments`: a subscriber watching one deployment sees every N-th
    /// sequence number of a connection, which it books as its own sequence (seq / N).
    pub deployments: Option<u32>,
}

/// Subscribes as `options` say until they stop, then prints the report.
pub fn run(options: &Options, json: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-tail")
        .build()?;
    let report = runtime.block_on(tail(options, signalled()))?;
    runtime.shutdown_background();
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    anyhow::ensure!(
        report.open > 0,
        "no subscription opened: {}",
        report.subscribers[0].error.as_deref().unwrap_or("?")
    );
    Ok(())
}

/// Opens the subscriptions and reads them until `stop` completes or `options` say so.
pub async fn tail(options: &Options, stop: impl Future<Output = ()>) -> anyhow::Result<Report> {
    anyhow::ensure!(
        !options.urls.is_empty() && options.subscribers > 0,
        "--tail needs a URL and --subscribers at least 1"
    );
    let n = options.subscribers;
    let shared = Arc::new(Shared::new(options.expect, options.deployments));
    let connecting = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let (stop_subscribers, stopped) = watch::channel(());
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let url = options.urls[i % options.urls.len()].clone();
            let subscriber = Subscriber::new(Arc::clone(&shared));
            tokio::spawn(subscriber.run(url, Arc::clone(&connecting), stopped.clone()))
        })
        .collect();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connect_secs = None;
    tokio::pin!(stop);
    let stopped_by = loop {
        tokio::select! {
            () = &mut stop => break "signal",
            _ = tick.tick() => {
                if connect_secs.is_none() && shared.attempted.load(Ordering::Relaxed) == n {
                    let secs = started.elapsed().as_secs_f64();
                    // Scripts wait for this line before they send.
                    eprintln!(
                        "flumen bench: {} of {n} subscriptions open in {secs:.2} s",
                        shared.open.load(Ordering::Relaxed)
                    );
                    connect_secs = Some(secs);
                }
                if let Some(reason) = shared.stop_reason(n, options.until_idle) {
                    break reason;
                }
            }
        }
    };
    let _ = stop_subscribers.send(());
    let mut books = Vec::with_capacity(n);
    for task in tasks {
        books.push(task.await?);
    }
    Ok(Report::new(
        options,
        books,
        &shared,
        connect_secs,
        stopped_by,
    ))
}

/// What the subscribers share: the latency histogram, and what the bench stops on.
#[derive(Debug)]
struct Shared {
    latency: Mutex<Histogram>,
    /// Unix nanoseconds of the first and of the latest event any subscriber got (0: none yet).
    first_event_ns: AtomicU64,
    last_event_ns: AtomicU64,
    /// Subscriptions that tried to open, and those that did.
    attempted: AtomicUsize,
    open: AtomicUsize,
    /// Subscribers whose stream ended (or never opened) before the bench stopped them.
    ended: AtomicUsize,
    expect: Option<u64>,
    /// Subscribers holding `expect` unique events.
    satisfied: AtomicUsize,
    /// See [`Options::deployments`].
    deployments: Option<u32>,
}

impl Shared {
    fn new(expect: Option<u64>, deployments: Option<u32>) -> Self {
        Self {
            latency: Mutex::new(Histogram::default()),
            first_event_ns: AtomicU64::new(0),
            last_event_ns: AtomicU64::new(0),
            attempted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            ended: AtomicUsize::new(0),
            expect,
            satisfied: AtomicUsize::new(0),
            deployments,
        }
    }

    /// Why the bench should stop now, if it should.
    fn stop_reason(
        &self,
        subscribers: usize,
        until_idle: Option<Duration>,
    ) -> Option<&'static str> {
        if self.ended.load(Ordering::Relaxed) == subscribers {
            return Some("ended");
        }
        if self.expect.is_some() && self.satisfied.load(Ordering::Relaxed) == subscribers {
            return Some("expect");
        }
        let last = self.last_event_ns.load(Ordering::Relaxed);
        let idle = until_idle.is_some_and(|idle| {
            last > 0 && unix_nanos().saturating_sub(last) >= idle.as_nanos() as u64
        });
        idle.then_some("idle")
    }

    fn add_latencies(&self, latencies: &mut Vec<u64>) {
        let mut histogram = self.latency.lock().expect("latency");
        for &ns in latencies.iter() {
            histogram.record(ns);
        }
        latencies.clear();
    }
}

/// One subscription's books.
#[derive(Debug, Default)]
struct Books {
    seqs: SeqBooks,
    /// Events whose record lacks the tracer fields.
    foreign: u64,
    /// Gap frames: log records the stream could not send.
    gap_frames: u64,
    /// Why the stream ended before the bench stopped it.
    error: Option<String>,
}

/// One subscription: its books, and the latencies not yet in the shared histogram.
#[derive(Debug)]
struct Subscriber {
    books: Books,
    latencies: Vec<u64>,
    shared: Arc<Shared>,
}

impl Subscriber {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            books: Books::default(),
            latencies: Vec::with_capacity(LATENCY_BATCH),
            shared,
        }
    }

    /// Opens the stream at `url` and reads it until `stop` changes or the stream ends.
    async fn run(
        mut self,
        url: String,
        connecting: Arc<Semaphore>,
        mut stop: watch::Receiver<()>,
    ) -> Books {
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let opened = {
            let _permit = connecting.acquire().await;
            tokio_tungstenite::connect_async_with_config(uri_escaped(&url), Some(config), false)
                .await
        };
        self.shared.attempted.fetch_add(1, Ordering::Relaxed);
        let mut socket = match opened {
            Ok((socket, _)) => {
                self.shared.open.fetch_add(1, Ordering::Relaxed);
                socket
            }
            Err(error) => return self.end(format!("connecting to {url}: {error}")),
        };
        loop {
            let frame = tokio::select! {
                biased;
                _ = stop.changed() => break,
                frame = socket.next() => frame,
            };
            match frame {
                Some(Ok(Message::Text(text))) => self.on_frame(text.as_str()),
                Some(Ok(Message::Close(close))) => {
                    let why = close.map_or("no reason".to_owned(), |c| {
                        format!("code {}, {}", u16::from(c.code), c.reason.as_str())
                    });
                    return self.end(format!("flumen closed the stream: {why}"));
                }
                // Pings, which tungstenite answers by itself, and pongs.
                Some(Ok(_)) => {}
                Some(Err(error)) => return self.end(format!("reading: {error}")),
                None => return self.end("the connection ended".to_owned()),
            }
        }
        self.shared.add_latencies(&mut self.latencies);
        self.books
    }

    /// The books of a stream that ended before the bench stopped it.
    fn end(mut self, error: String) -> Books {
        self.shared.add_latencies(&mut self.latencies);
        self.shared.ended.fetch_add(1, Ordering::Relaxed);
        self.books.error = Some(error);
        self.books
    }

    fn on_frame(&mut self, text: &str) {
        let now_ns = unix_nanos();
        match parse_frame(text) {
            Frame::Traced(fields) => self.on_event(fields, now_ns),
            Frame::Gap => self.books.gap_frames += 1,
            Frame::Foreign => self.books.foreign += 1,
            Frame::OtherControl => {}
        }
    }

    fn on_event(&mut self, f: Fields<'_>, now_ns: u64) {
        let seq = self
            .shared
            .deployments
            .map_or(f.seq, |n| f.seq / u64::from(n.max(1)));
        let new = self.books.seqs.record(f.run, f.conn, [seq]);
        if new == 1 && Some(self.books.seqs.unique) == self.shared.expect {
            self.shared.satisfied.fetch_add(1, Ordering::Relaxed);
        }
        self.latencies.push(now_ns.saturating_sub(f.sent_ns));
        if self.latencies.len() == LATENCY_BATCH {
            self.shared.add_latencies(&mut self.latencies);
        }
        let shared = &self.shared;
        if shared.first_event_ns.load(Ordering::Relaxed) == 0 {
            let _ = shared.first_event_ns.compare_exchange(
                0,
                now_ns,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        shared.last_event_ns.store(now_ns, Ordering::Relaxed);
    }
}

/// `url` with the characters a URI cannot hold (a query's spaces, quotes, braces and pipes)
/// percent-encoded, so that `--tail` takes a query as it is written. What is already
/// percent-encoded stays as it is.
fn uri_escaped(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        let allowed = c.is_ascii_graphic()
            && !matches!(c, '"' | '<' | '>' | '\\' | '^' | '`' | '{' | '|' | '}');
        if allowed {
            out.push(c);
        } else {
            for byte in c.encode_utf8(&mut [0; 4]).bytes() {
                out += &format!("%{byte:02X}");
            }
        }
    }
    out
}

/// What a text frame of `/api/v1/tail` is, as far as the bench cares.
#[derive(Debug, PartialEq, Eq)]
enum Frame<'a> {
    /// An event whose record holds the tracer fields.
    Traced(Fields<'a>),
    /// An event without them (or a frame that is not JSON).
    Foreign,
    /// `{"type":"gap",…}`.
    Gap,
    /// Another control frame.
    OtherControl,
}

/// Reads only a frame's `type` and its record's tracer fields: serde skips the rest (the
/// line, the labels, the record's other fields) without building anything, where a
/// `serde_json::Value` would allocate every field of every one of 100,000 frames a second.
fn parse_frame(text: &str) -> Frame<'_> {
    #[derive(Deserialize)]
    struct Event<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<&'a str>,
        #[serde(default, borrow)]
        record: Tracer<'a>,
    }
    // A run id with escapes in it cannot be borrowed and makes the event foreign; the
    // sender's are hex digits.
    #[derive(Deserialize, Default)]
    struct Tracer<'a> {
        #[serde(borrow)]
        run: Option<&'a str>,
        conn: Option<u64>,
        seq: Option<u64>,
        sent_ns: Option<u64>,
    }
    match serde_json::from_str::<Event<'_>>(text) {
        Ok(Event {
            kind: Some(kind), ..
        }) => {
            if kind == "gap" {
                Frame::Gap
            } else {
                Frame::OtherControl
            }
        }
        Ok(Event {
            kind: None,
            record:
                Tracer {
                    run: Some(run),
                    conn: Some(conn),
                    seq: Some(seq),
                    sent_ns: Some(sent_ns),
                },
        }) => Frame::Traced(Fields {
            run: run.as_bytes(),
            conn,
            seq,
            sent_ns,
        }),
        _ => Frame::Foreign,
    }
}

/// What one subscriber received.
#[derive(Debug, Clone)]
pub struct SubscriberReport {
    pub index: usize,
    pub url: String,
    pub counts: Counts,
    /// How many fewer unique events it has than the subscriber of the same URL with the most.
    pub behind: u64,
    pub foreign: u64,
    pub gap_frames: u64,
    pub error: Option<String>,
    pub runs: Vec<(String, Vec<ConnReport>)>,
}

impl SubscriberReport {
    /// Whether it got every event, as far as can be told (see the module documentation).
    pub fn is_complete(&self, expect: Option<u64>) -> bool {
        self.error.is_none()
            && self.counts.missing == 0
            && self.counts.duplicated == 0
            && self.behind == 0
            && self.gap_frames == 0
            && expect.is_none_or(|n| self.counts.unique >= n)
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "subscriber": self.index,
            "url": self.url,
            "received": self.counts.received,
            "unique": self.counts.unique,
            "duplicated": self.counts.duplicated,
            "missing": self.counts.missing,
            "behind": self.behind,
            "gap_frames": self.gap_frames,
            "error": self.error,
            "runs": self.runs.iter().map(|(run, conns)| json!({
                "run": run,
                "connections": conns.iter().map(ConnReport::to_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }

    fn to_text(&self) -> String {
        let mut text = format!(
            "subscriber {} ({}): received {}, unique {}, duplicated {}, missing {}, behind {}, gap frames {}",
            self.index,
            self.url,
            self.counts.received,
            self.counts.unique,
            self.counts.duplicated,
            self.counts.missing,
            self.behind,
            self.gap_frames,
        );
        if let Some(error) = &self.error {
            text += &format!("; {error}");
        }
        text.push('\n');
        for (run, conns) in &self.runs {
            text += &format!(" run {run}:\n");
            for conn in conns {
                text += &format!(" {}\n", conn.to_text());
            }
        }
        text
    }
}

/// The live-tail receiver's final report.
#[derive(Debug, Clone)]
pub struct Report {
    pub subscribers: Vec<SubscriberReport>,
    pub urls: usize,
    pub open: usize,
    /// How long opening every subscription took; `None` if the bench stopped before.
    pub connect_secs: Option<f64>,
    pub expect: Option<u64>,
    /// Over all subscribers.
    pub totals: Counts,
    pub latency: Latency,
    /// From the first event any subscriber got to the last, seconds.
    pub window_secs: f64,
    /// "idle", "expect", "ended" (every stream ended) or "signal".
    pub stopped_by: &'static str,
}

impl Report {
    fn new(
        options: &Options,
        books: Vec<Books>,
        shared: &Shared,
        connect_secs: Option<f64>,
        stopped_by: &'static str,
    ) -> Self {
        let mut subscribers: Vec<SubscriberReport> = books
            .into_iter()
            .enumerate()
            .map(|(index, books)| subscriber_report(options, index, books))
            .collect();
        // Every subscriber of a URL gets the same stream: the one with the most is the
        // others' measure.
        let mut most: HashMap<String, u64> = HashMap::new();
        for s in &subscribers {
            let m = most.entry(s.url.clone()).or_default();
            *m = (*m).max(s.counts.unique);
        }
        let mut totals = Counts::default();
        for s in &mut subscribers {
            s.behind = most[&s.url] - s.counts.unique;
            totals += s.counts;
        }
        let (first, last) = (
            shared.first_event_ns.load(Ordering::Relaxed),
            shared.last_event_ns.load(Ordering::Relaxed),
        );
        Self {
            subscribers,
            urls: options.urls.len(),
            open: shared.open.load(Ordering::Relaxed),
            connect_secs,
            expect: options.expect,
            totals,
            latency: Latency::of(&shared.latency.lock().expect("latency")),
            window_secs: last.saturating_sub(first) as f64 / 1e9,
            stopped_by,
        }
    }

    fn incomplete(&self) -> impl Iterator<Item = &SubscriberReport> {
        self.subscribers
            .iter()
            .filter(|s| !s.is_complete(self.expect))
    }

    fn events_per_sec(&self) -> f64 {
        if self.window_secs > 0.0 {
            self.totals.received as f64 / self.window_secs
        } else {
            0.0
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let sum = |f: fn(&SubscriberReport) -> u64| self.subscribers.iter().map(f).sum::<u64>();
        json!({
            "subscribers": self.subscribers.len(),
            "urls": self.urls,
            "open": self.open,
            "connect_secs": self.connect_secs,
            "stopped_by": self.stopped_by,
            "window_secs": self.window_secs,
            "events_per_sec": self.events_per_sec(),
            "received": self.totals.received,
            "unique": self.totals.unique,
            "duplicated": self.totals.duplicated,
            "missing": self.totals.missing,
            "behind": sum(|s| s.behind),
            "foreign": sum(|s| s.foreign),
            "gap_frames": sum(|s| s.gap_frames),
            "latency_ms": self.latency.to_json(),
            "complete": self.subscribers.len() - self.incomplete().count(),
            "incomplete": self.incomplete().count(),
            "first_incomplete": self.incomplete().take(LISTED).map(SubscriberReport::to_json).collect::<Vec<_>>(),
        })
    }

    pub fn to_text(&self) -> String {
        let mut text = format!(
            "tail: {} subscriptions to {} URLs, {} open{}; stopped by {}\n",
            self.subscribers.len(),
            self.urls,
            self.open,
            self.connect_secs
                .map_or(String::new(), |s| format!(" in {s:.2} s")),
            self.stopped_by,
        );
        let t = &self.totals;
        text += &format!(
            "received {} events over all subscribers (unique {}, duplicated {}, missing {}) in {:.2} s: {:.0} events/s\n",
            t.received,
            t.unique,
            t.duplicated,
            t.missing,
            self.window_secs,
            self.events_per_sec(),
        );
        text += &format!(
            "latency from sent_ns to receipt, over all subscribers: {}\n",
            self.latency.to_text()
        );
        let incomplete = self.incomplete().count();
        let expect = self
            .expect
            .map_or(String::new(), |n| format!(", each at least {n}"));
        if incomplete == 0 {
            text += &format!(
                "complete: all {} subscribers got every event (no gaps, no duplicates, none behind another subscriber of its URL{expect})\n",
                self.subscribers.len()
            );
            return text;
        }
        text += &format!(
            "INCOMPLETE: {incomplete} of {} subscribers missed events, got some twice, fell behind another subscriber of its URL{expect} or ended early:\n",
            self.subscribers.len()
        );
        for s in self.incomplete().take(LISTED) {
            text += &s.to_text();
        }
        if incomplete > LISTED {
            text += &format!("(and {} more)\n", incomplete - LISTED);
        }
        text
    }
}

fn subscriber_report(options: &Options, index: usize, books: Books) -> SubscriberReport {
    let runs: Vec<(String, Vec<ConnReport>)> = books
        .seqs
        .reports()
        .into_iter()
        .map(|(run, conns)| (String::from_utf8_lossy(run).into_owned(), conns))
        .collect();
    SubscriberReport {
        index,
        url: options.urls[index % options.urls.len()].clone(),
        counts: Counts::of(runs.iter().flat_map(|(_, conns)| conns)),
        behind: 0,
        foreign: books.foreign,
        gap_frames: books.gap_frames,
        error: books.error,
        runs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::SinkExt as _;
    use tokio::net::TcpListener;

    fn event(run: &str, conn: u64, seq: u64, sent_ns: u64) -> String {
        json!({
            "time": "2026-12-01T00:00:00Z",
            "time_ns": 1,
            "position": "1.0",
            "tag": "bench",
            "labels": {"service": "web"},
            "line": "GET / \"quoted\"",
            "record": {
                "container_id": "c",
                "run": run,
                "conn": conn,
                "seq": seq,
                "sent_ns": sent_ns,
                "nested": {"type": "not the frame's"},
                "log": "GET /",
            },
        })
        .to_string()
    }

    #[test]
    fn frames_are_read_for_their_tracer_fields_only() {
        assert_eq!(
            parse_frame(&event("r1", 2, 7, 1_780_000_000_000_000_001)),
            Frame::Traced(Fields {
                run: b"r1",
                conn: 2,
                seq: 7,
                sent_ns: 1_780_000_000_000_000_001,
            })
        );
        assert_eq!(
            parse_frame(r#"{"type":"gap","from":1,"to":5,"records":4}"#),
            Frame::Gap
        );
        assert_eq!(parse_frame(r#"{"type":"later"}"#), Frame::OtherControl);
        assert_eq!(
            parse_frame(r#"{"line":"x","record":{"log":"x"}}"#),
            Frame::Foreign
        );
        assert_eq!(
            parse_frame(r#"{"record":{"run":1,"conn":1,"seq":1,"sent_ns":1}}"#),
            Frame::Foreign
        );
        assert_eq!(parse_frame("not json"), Frame::Foreign);
    }

    #[test]
    fn a_query_is_escaped_for_the_uri() {
        assert_eq!(
            uri_escaped(r#"ws://h:1/t?query={conn="1"} |= "é"&limit=0"#),
            "ws://h:1/t?query=%7Bconn=%221%22%7D%20%7C=%20%22%C3%A9%22&limit=0"
        );
        assert_eq!(
            uri_escaped("ws://h/t?query=%7B%7D"),
            "ws://h/t?query=%7B%7D"
        );
    }

    /// A WebSocket server on an ephemeral port that sends each connection the frames of
    /// `streams[i]`, the i-th connection's, and then holds it open.
    async fn serve(streams: Vec<Vec<String>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/api/v1/tail", listener.local_addr().unwrap());
        tokio::spawn(async move {
            for frames in streams {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut socket = tokio_tungstenite::accept_async(tcp).await.unwrap();
                tokio::spawn(async move {
                    for frame in frames {
                        socket.send(Message::text(frame)).await.unwrap();
                    }
                    std::future::pending::<()>().await;
                });
            }
        });
        url
    }

    fn options(url: String, subscribers: usize, expect: Option<u64>) -> Options {
        Options {
            urls: vec![url],
            subscribers,
            until_idle: Some(Duration::from_millis(300)),
            expect,
            deployments: None,
        }
    }

    #[tokio::test]
    async fn every_subscriber_that_got_every_event_is_complete() {
        let now = unix_nanos();
        let frames: Vec<String> = (0..100).map(|s| event("r", s % 2, s / 2, now)).collect();
        let url = serve(vec![frames.clone(), frames]).await;
        let report = tail(&options(url, 2, Some(100)), std::future::pending())
            .await
            .unwrap();
        assert_eq!(report.stopped_by, "expect");
        assert_eq!((report.open, report.totals.unique), (2, 200));
        assert_eq!(report.incomplete().count(), 0);
        assert!(report.latency.max > 0 && report.latency.max < 10_000_000_000);
        assert!(report.to_text().contains("complete: all 2 subscribers"));
        assert_eq!(report.to_json()["incomplete"], 0);
    }

    #[tokio::test]
    async fn a_subscriber_with_a_gap_a_duplicate_or_fewer_events_is_named() {
        let now = unix_nanos();
        let all: Vec<String> = (0..10).map(|s| event("r", 0, s, now)).collect();
        let mut gap_and_duplicate = all.clone();
        gap_and_duplicate.remove(4);
        gap_and_duplicate.push(event("r", 0, 9, now));
        gap_and_duplicate.push(r#"{"type":"gap","from":1,"to":2,"records":1}"#.to_owned());
        let short = all[..6].to_vec();
        let url = serve(vec![all, gap_and_duplicate, short]).await;
        let report = tail(&options(url, 3, None), std::future::pending())
            .await
            .unwrap();
        assert_eq!(report.stopped_by, "idle");
        let s = &report.subscribers;
        assert!(s[0].is_complete(None));
        assert_eq!(
            (s[1].counts.missing, s[1].counts.duplicated, s[1].behind),
            (1, 1, 1)
        );
        assert_eq!(s[1].gap_frames, 1);
        assert_eq!((s[2].counts.missing, s[2].behind), (0, 4));
        let names: Vec<usize> = report.incomplete().map(|s| s.index).collect();
        assert_eq!(names, [1, 2]);
        let text = report.to_text();
        assert!(text.contains("INCOMPLETE: 2 of 3"), "{text}");
        assert!(text.contains("gaps 4"), "{text}");
        // Against --expect, the first is short too.
        assert!(!s[0].is_complete(Some(11)));
    }

    #[tokio::test]
    async fn a_refused_subscription_ends_the_bench_with_its_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        drop(listener);
        let report = tail(&options(url, 2, None), std::future::pending())
            .await
            .unwrap();
        assert_eq!((report.stopped_by, report.open), ("ended", 0));
        assert!(
            report.subscribers[0]
                .error
                .as_deref()
                .unwrap()
                .starts_with("connecting to ws://")
        );
    }
}
