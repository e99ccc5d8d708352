//! The receiver: a Forward server that acknowledges chunks and keeps the tracer's books.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use flumen_codec::forward::{Decoded, Limits, decode_frame, encode_ack};
use flumen_event::EntryIter;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::record::tracer_fields;
use super::track::{ConnReport, Counts, Histogram, Latency, SeqBooks};

/// When the receiver stops (besides a signal).
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Stop after this long without an event, once one has arrived.
    pub until_idle: Option<Duration>,
    /// Stop once this many unique events have arrived.
    pub expect: Option<u64>,
}

/// Runs the receiver on `addr` until it stops, then prints the report.
pub fn run(addr: &str, options: Options, json: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-receiver")
        .build()?;
    let report = runtime.block_on(async {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        eprintln!(
            "flumen bench: receiving on {}",
            listener
                .local_addr()
                .map_or(addr.to_owned(), |a| a.to_string())
        );
        anyhow::Ok(receive(listener, options, signalled()).await)
    })?;
    // Connection tasks may be blocked in a read; do not wait for them.
    runtime.shutdown_background();
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

/// What the receiver saw of one run.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run: String,
    pub received: u64,
    pub unique: u64,
    pub duplicated: u64,
    pub missing: u64,
    pub out_of_order: u64,
    /// From the first event of the run to its last, seconds.
    pub window_secs: f64,
    pub events_per_sec: f64,
    pub latency: Latency,
    pub connections: Vec<ConnReport>,
}

/// The receiver's final report.
#[derive(Debug, Clone)]
pub struct Report {
    pub runs: Vec<RunReport>,
    /// Records without the tracer fields.
    pub foreign: u64,
    pub frames: u64,
    pub tcp_connections: u64,
    /// Connections closed on a protocol or I/O error.
    pub errors: u64,
    /// From the first event to the last, seconds.
    pub window_secs: f64,
    /// "idle", "expect" or "signal".
    pub stopped_by: &'static str,
}

impl Report {
    pub fn to_json(&self) -> serde_json::Value {
        let runs: Vec<_> = self
            .runs
            .iter()
            .map(|r| {
                json!({
                    "run": r.run,
                    "received": r.received,
                    "unique": r.unique,
                    "duplicated": r.duplicated,
                    "missing": r.missing,
                    "out_of_order": r.out_of_order,
                    "window_secs": r.window_secs,
                    "events_per_sec": r.events_per_sec,
                    "latency_ms": r.latency.to_json(),
                    "connections": r.connections.iter().map(ConnReport::to_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        let sum = |f: fn(&RunReport) -> u64| self.runs.iter().map(f).sum::<u64>();
        json!({
            "received": sum(|r| r.received),
            "unique": sum(|r| r.unique),
            "duplicated": sum(|r| r.duplicated),
            "missing": sum(|r| r.missing),
            "foreign": self.foreign,
            "frames": self.frames,
            "tcp_connections": self.tcp_connections,
            "errors": self.errors,
            "window_secs": self.window_secs,
            "stopped_by": self.stopped_by,
            "runs": runs,
        })
    }

    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "received {} runs in {:.2} s over {} connections: {} frames, {} foreign records, {} connection errors (stopped by {})",
            self.runs.len(),
            self.window_secs,
            self.tcp_connections,
            self.frames,
            self.foreign,
            self.errors,
            self.stopped_by,
        );
        for r in &self.runs {
            let _ = writeln!(
                out,
                "run {}: received {}, unique {}, duplicated {}, missing {}, out of order {}; {:.0} events/s over {:.2} s; latency {}",
                r.run,
                r.received,
                r.unique,
                r.duplicated,
                r.missing,
                r.out_of_order,
                r.events_per_sec,
                r.window_secs,
                r.latency.to_text(),
            );
            for c in &r.connections {
                let _ = writeln!(out, "{}", c.to_text());
            }
        }
        out
    }
}

/// When a run's events arrived, and how late.
#[derive(Debug, Default)]
struct RunTiming {
    latency: Histogram,
    first: Option<Instant>,
    last: Option<Instant>,
}

#[derive(Debug, Default)]
struct Tally {
    books: SeqBooks,
    timing: HashMap<Vec<u8>, RunTiming>,
    foreign: u64,
    frames: u64,
    tcp_connections: u64,
    errors: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// One record's tracer fields, with its run as an index into a per-read list.
struct Seen {
    run: usize,
    conn: u64,
    seq: u64,
    sent_ns: u64,
}

/// What one read's frames held, applied to the tally under one lock.
#[derive(Default)]
struct Batch {
    runs: Vec<Vec<u8>>,
    seen: Vec<Seen>,
    foreign: u64,
    frames: u64,
}

impl Batch {
    fn clear(&mut self) {
        self.runs.clear();
        self.seen.clear();
        self.foreign = 0;
        self.frames = 0;
    }

    fn add_entries(&mut self, entries: &[u8]) {
        for entry in EntryIter::new(entries) {
            // decode_frame validated the entries.
            let Ok(entry) = entry else { break };
            let Some(f) = tracer_fields(entry.record) else {
                self.foreign += 1;
                continue;
            };
            let run = match self.runs.iter().rposition(|r| r.as_slice() == f.run) {
                Some(i) => i,
                None => {
                    self.runs.push(f.run.to_vec());
                    self.runs.len() - 1
                }
            };
            self.seen.push(Seen {
                run,
                conn: f.conn,
                seq: f.seq,
                sent_ns: f.sent_ns,
            });
        }
    }
}

impl Tally {
    fn apply(&mut self, batch: &Batch, now: Instant, now_ns: u64) {
        self.foreign += batch.foreign;
        self.frames += batch.frames;
        if batch.seen.is_empty() {
            return;
        }
        self.first.get_or_insert(now);
        self.last = Some(now);
        let mut rest = batch.seen.as_slice();
        while let Some(first) = rest.first() {
            // Records come in runs of the same (run, conn): one lookup per run of them.
            let (run, conn) = (first.run, first.conn);
            let len = rest
                .iter()
                .take_while(|s| s.run == run && s.conn == conn)
                .count();
            let (same, next) = rest.split_at(len);
            let key = batch.runs[run].as_slice();
            self.books.record(key, conn, same.iter().map(|s| s.seq));
            if !self.timing.contains_key(key) {
                self.timing.insert(key.to_vec(), RunTiming::default());
            }
            let timing = self.timing.get_mut(key).expect("inserted");
            timing.first.get_or_insert(now);
            timing.last = Some(now);
            for s in same {
                timing.latency.record(now_ns.saturating_sub(s.sent_ns));
            }
            rest = next;
        }
    }

    fn report(&self, stopped_by: &'static str) -> Report {
        let secs = |first: Option<Instant>, last: Option<Instant>| match (first, last) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        };
        let runs = self
            .books
            .reports()
            .into_iter()
            .map(|(run, connections)| {
                let timing = &self.timing[run];
                let counts = Counts::of(&connections);
                let window_secs = secs(timing.first, timing.last);
                RunReport {
                    run: String::from_utf8_lossy(run).into_owned(),
                    received: counts.received,
                    unique: counts.unique,
                    duplicated: counts.duplicated,
                    missing: counts.missing,
                    out_of_order: counts.out_of_order,
                    window_secs,
                    events_per_sec: if window_secs > 0.0 {
                        counts.received as f64 / window_secs
                    } else {
                        0.0
                    },
                    latency: Latency::of(&timing.latency),
                    connections,
                }
            })
            .collect();
        Report {
            runs,
            foreign: self.foreign,
            frames: self.frames,
            tcp_connections: self.tcp_connections,
            errors: self.errors,
            window_secs: secs(self.first, self.last),
            stopped_by,
        }
    }
}

/// Now, Unix nanoseconds: the clock `sent_ns` is read from.
pub(super) fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Completes on SIGTERM or SIGINT (never, if they cannot be watched).
pub(super) async fn signalled() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        },
        _ => std::future::pending().await,
    }
}

/// Serves Forward connections from `listener` until `stop` completes or `options` say so, and
/// reports.
pub async fn receive(
    listener: TcpListener,
    options: Options,
    stop: impl Future<Output = ()>,
) -> Report {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    let stopped_by = loop {
        tokio::select! {
            () = &mut stop => break "signal",
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tally.lock().expect("tally").tcp_connections += 1;
                    tasks.spawn(serve(stream, Arc::clone(&tally)));
                }
                Err(error) => {
                    eprintln!("flumen bench: accept: {error}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = tick.tick() => {
                let t = tally.lock().expect("tally");
                if options.expect.is_some_and(|n| t.books.unique >= n) {
                    break "expect";
                }
                let idle = match (options.until_idle, t.last) {
                    (Some(idle), Some(last)) => last.elapsed() >= idle,
                    _ => false,
                };
                if idle {
                    break "idle";
                }
            }
        }
    };
    tasks.abort_all();
    tally.lock().expect("tally").report(stopped_by)
}

/// Reads frames from one connection, acknowledges chunks, and tallies records.
async fn serve(mut stream: TcpStream, tally: Arc<Mutex<Tally>>) {
    let _ = stream.set_nodelay(true);
    let limits = Limits::default();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut acks = Vec::new();
    let mut batch = Batch::default();
    loop {
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(256 * 1024);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) => {
                if !buf.is_empty() {
                    tally.lock().expect("tally").errors += 1;
                    eprintln!("flumen bench: connection closed inside a frame");
                }
                return;
            }
            Ok(_) => {}
            Err(error) => {
                tally.lock().expect("tally").errors += 1;
                eprintln!("flumen bench: read: {error}");
                return;
            }
        }
        let (now, now_ns) = (Instant::now(), unix_nanos());
        let mut used = 0;
        let mut failed = false;
        loop {
            match decode_frame(&buf[used..], &limits) {
                Ok(Some((Decoded::Frame(frame), n))) => {
                    batch.frames += 1;
                    batch.add_entries(&frame.entries);
                    if let Some(chunk) = frame.chunk {
                        encode_ack(chunk, &mut acks);
                    }
                    used += n;
                }
                Ok(Some((Decoded::Heartbeat, n))) => used += n,
                Ok(None) => break,
                Err(error) => {
                    eprintln!("flumen bench: closing a connection: {error}");
                    failed = true;
                    break;
                }
            }
        }
        buf.drain(..used);
        // Acks first: once the tally shows an event (and --expect may stop the receiver), its
        // ack is on its way.
        let ack_failed = !acks.is_empty() && stream.write_all(&acks).await.is_err();
        acks.clear();
        {
            let mut t = tally.lock().expect("tally");
            t.apply(&batch, now, now_ns);
            if failed || ack_failed {
                t.errors += 1;
            }
        }
        batch.clear();
        if failed || ack_failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::record::Template;

    fn batch_of(run: &str, conn: u32, seqs: &[u64]) -> Batch {
        let t = Template::new(run, conn, 0);
        let mut entries = Vec::new();
        for &s in seqs {
            entries.push(0x92);
            entries.push(1);
            t.write_record(&mut entries, s, 0);
        }
        let mut b = Batch::default();
        b.add_entries(&entries);
        b
    }

    #[test]
    fn tally_per_run_and_connection() {
        let mut t = Tally::default();
        let now = Instant::now();
        t.apply(&batch_of("a", 0, &[0, 1, 2, 4]), now, 1);
        t.apply(&batch_of("a", 1, &[0, 1]), now, 1);
        t.apply(&batch_of("a", 0, &[3, 4]), now, 1);
        t.apply(&batch_of("b", 0, &[1]), now, 1);
        let mut foreign = Batch::default();
        let mut entries = vec![0x92, 1, 0x81, 0xa1, b'k', 0x01];
        entries.extend_from_slice(&[0x92, 1, 0x80]);
        foreign.add_entries(&entries);
        t.apply(&foreign, now, 1);
        assert_eq!(t.books.unique, 5 + 2 + 1);
        let r = t.report("idle");
        assert_eq!(r.foreign, 2);
        assert_eq!(r.runs.len(), 2);
        let a = &r.runs[0];
        assert_eq!(
            (a.received, a.unique, a.duplicated, a.missing),
            (8, 7, 1, 0)
        );
        assert_eq!(a.out_of_order, 1);
        assert_eq!(a.connections.len(), 2);
        let b = &r.runs[1];
        assert_eq!((b.run.as_str(), b.unique, b.missing), ("b", 1, 1));
        assert_eq!(b.connections[0].gaps, vec![(0, 0)]);
        let json = r.to_json();
        assert_eq!(json["missing"], 1);
        assert_eq!(json["runs"][1]["connections"][0]["first_gaps"][0][1], 0);
        assert!(
            r.to_text()
                .contains("run b: received 1, unique 1, duplicated 0, missing 1")
        );
    }
}
