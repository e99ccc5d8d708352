//! The sender: one thread and one blocking socket per connection.
//!
//! Each connection numbers its events from 0 and encodes every chunk when it is first sent,
//! stamping `sent_ns`. With acks it keeps `--in-flight` chunks in flight (one by default, as the
//! fluent-logger libraries do): write them, wait for the oldest one's `{"ack": id}`, write the
//! next; on a timeout or a connection error, reconnect (with a backoff) and write the very same
//! bytes of every chunk not yet acknowledged again, in order. Without acks a failed write loses the chunk
//! (the receiver will count the gap) and the next chunk goes out on a new connection.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flumen_codec::forward::decode_ack;
use serde_json::json;

use super::corpus::{self, Corpus};
use super::record::{Records, Template, encode_chunk};
use super::{BenchArgs, Mode, progress};

/// What was sent: per connection, and added up for the run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Sequence numbers used: events written at least once (the next seq).
    pub events: u64,
    pub acked: u64,
    /// Written, never acknowledged: the run ended (--duration) while retrying.
    pub unacked: u64,
    /// Without acks: events of chunks whose write failed.
    pub failed_writes: u64,
    pub resent_chunks: u64,
    pub resent_events: u64,
    pub reconnects: u64,
    /// Bytes written, resends included.
    pub bytes: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Self) {
        self.events += other.events;
        self.acked += other.acked;
        self.unacked += other.unacked;
        self.failed_writes += other.failed_writes;
        self.resent_chunks += other.resent_chunks;
        self.resent_events += other.resent_events;
        self.reconnects += other.reconnects;
        self.bytes += other.bytes;
    }
}

/// What a connection did.
#[derive(Debug, Clone, Default)]
pub struct ConnSummary {
    pub counts: Counts,
    pub error: Option<String>,
}

/// What the sender did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub run: String,
    /// The connections' counts added up.
    pub totals: Counts,
    pub secs: f64,
    pub per_connection: Vec<ConnSummary>,
    /// What the corpus held, with `--corpus`.
    pub corpus: Option<corpus::Info>,
}

/// The sender's settings, resolved.
#[derive(Debug)]
struct Plan<'a> {
    args: &'a BenchArgs,
    run: String,
    /// Events per chunk.
    batch: u32,
    /// Events per second per connection.
    rate: Option<f64>,
    deadline: Option<Instant>,
    /// Lines for the records' `log` field (`--log-lines`).
    log_lines: Vec<String>,
    /// The corpus sent instead of tracer records (`--corpus`).
    corpus: Option<Corpus>,
    /// The counts so far, for the progress line.
    live: progress::Live,
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Sends as `args` say and prints the summary.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let summary = send(args)?;
    if args.json {
        println!("{}", summary.to_json(args));
    } else {
        println!("{}", summary.to_text(args));
    }
    let errors: Vec<String> = summary
        .per_connection
        .iter()
        .enumerate()
        .filter_map(|(c, s)| s.error.as_ref().map(|e| format!("connection {c}: {e}")))
        .collect();
    anyhow::ensure!(errors.is_empty(), "{}", errors.join("; "));
    Ok(())
}

/// Sends as `args` say.
pub fn send(args: &BenchArgs) -> anyhow::Result<Summary> {
    anyhow::ensure!(
        args.connections > 0 && args.batch > 0,
        "--connections and --batch must be at least 1"
    );
    if let Some(rate) = args.rate {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "--rate must be a positive number"
        );
    }
    let run = args
        .run_id
        .clone()
        .unwrap_or_else(|| format!("{:016x}", fastrand::u64(..)));
    let total = match (args.events, args.duration) {
        (None, _) if args.corpus.is_some() => 1_000_000,
        (Some(n), _) => n,
        (None, Some(_)) => u64::MAX,
        (None, None) => 1_000_000,
    };
    let log_lines = match &args.log_lines {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--log-lines {}: {e}", path.display()))?
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    let connections = u64::from(args.connections);
    let started = Instant::now();
    let plan = Plan {
        args,
        batch: if args.ack && args.mode == Mode::Message {
            1
        } else {
            args.batch
        },
        rate: args.rate.map(|r| r / connections as f64),
        deadline: args.duration.map(|d| started + d),
        run,
        log_lines,
        corpus: args.corpus.map(|_| Corpus::new(args.seed, total)),
        live: progress::Live::default(),
    };
    let goal = progress::Goal {
        events: (total != u64::MAX).then_some(total),
        deadline: plan.deadline,
        ack: args.ack,
    };
    eprintln!(
        "flumen bench: run {} to {}: {} connections, {} mode, batch {}, ack {}, in flight {}",
        plan.run,
        args.to,
        args.connections,
        args.mode.name(),
        plan.batch,
        args.ack,
        args.in_flight
    );
    let per_connection: Vec<ConnSummary> = std::thread::scope(|scope| {
        let plan = &plan;
        scope.spawn(move || progress::report(&plan.live, goal, started, args.progress_every));
        let handles: Vec<_> = (0..args.connections)
            .map(|c| {
                let quota = if total == u64::MAX {
                    u64::MAX
                } else {
                    total / connections + u64::from(u64::from(c) < total % connections)
                };
                scope.spawn(move || drive(plan, c, quota))
            })
            .collect();
        let summaries = handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect();
        plan.live.done.store(true, Ordering::Relaxed);
        summaries
    });
    let secs = started.elapsed().as_secs_f64();
    let mut totals = Counts::default();
    for connection in &per_connection {
        totals += connection.counts;
    }
    Ok(Summary {
        corpus: plan.corpus.as_ref().map(Corpus::info),
        run: plan.run,
        totals,
        secs,
        per_connection,
    })
}

impl Summary {
    fn rates(&self) -> (f64, f64) {
        let secs = self.secs.max(1e-9);
        (
            self.totals.events as f64 / secs,
            self.totals.bytes as f64 / 1e6 / secs,
        )
    }

    pub fn to_text(&self, args: &BenchArgs) -> String {
        let (eps, mbps) = self.rates();
        let mut line = format!(
            "run {}: sent {} events, {} resends ({} events), {:.1} MB in {:.2} s: {:.0} events/s, {:.1} MB/s ({} connections, {} mode, ack {}",
            self.run,
            self.totals.events,
            self.totals.resent_chunks,
            self.totals.resent_events,
            self.totals.bytes as f64 / 1e6,
            self.secs,
            eps,
            mbps,
            args.connections,
            args.mode.name(),
            args.ack,
        );
        if args.ack {
            line += &format!(
                ", in flight {}, acked {}, unacked {}",
                args.in_flight, self.totals.acked, self.totals.unacked
            );
        } else if self.totals.failed_writes > 0 {
            line += &format!(", lost in failed writes {}", self.totals.failed_writes);
        }
        line += &format!(", reconnects {})", self.totals.reconnects);
        if let Some(corpus) = &self.corpus {
            line += "\n";
            line += &corpus.to_text();
        }
        line
    }

    pub fn to_json(&self, args: &BenchArgs) -> serde_json::Value {
        let (eps, mbps) = self.rates();
        json!({
            "run": self.run,
            "events": self.totals.events,
            "acked": self.totals.acked,
            "unacked": self.totals.unacked,
            "failed_writes": self.totals.failed_writes,
            "resent_chunks": self.totals.resent_chunks,
            "resent_events": self.totals.resent_events,
            "reconnects": self.totals.reconnects,
            "bytes": self.totals.bytes,
            "secs": self.secs,
            "events_per_sec": eps,
            "mb_per_sec": mbps,
            "connections": args.connections,
            "mode": args.mode.name(),
            "batch": args.batch,
            "ack": args.ack,
            "in_flight": args.in_flight,
            "per_connection": self.per_connection.iter().enumerate().map(|(c, s)| json!({
                "conn": c,
                "events": s.counts.events,
                "acked": s.counts.acked,
                "unacked": s.counts.unacked,
                "resent_chunks": s.counts.resent_chunks,
                "reconnects": s.counts.reconnects,
                "error": s.error,
            })).collect::<Vec<_>>(),
            "corpus": self.corpus.as_ref().map(corpus::Info::to_json),
        })
    }
}

/// One connection's share of the corpus: its `seq` number n is the corpus's event
/// `n * connections + conn`.
struct CorpusShare<'a> {
    corpus: &'a Corpus,
    conn: u64,
    connections: u64,
    event: std::cell::RefCell<corpus::Event>,
}

impl Records for CorpusShare<'_> {
    fn write(&self, out: &mut Vec<u8>, seq: u64, _sent_ns: u64) -> flumen_event::EventTime {
        self.corpus.write_record(
            seq * self.connections + self.conn,
            &mut self.event.borrow_mut(),
            out,
        )
    }
}

/// A token bucket holding at most one chunk's worth of events.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Waits until `n` events may leave; false if `deadline` comes first.
    fn take(&mut self, n: u32, deadline: Option<Instant>) -> bool {
        let n = f64::from(n);
        loop {
            let now = Instant::now();
            self.tokens = (self.tokens + (now - self.last).as_secs_f64() * self.rate).min(n);
            self.last = now;
            if self.tokens >= n {
                self.tokens -= n;
                return true;
            }
            let mut wait = Duration::from_secs_f64((n - self.tokens) / self.rate);
            if let Some(deadline) = deadline {
                if now >= deadline {
                    return false;
                }
                wait = wait.min(deadline - now);
            }
            std::thread::sleep(wait);
        }
    }
}

/// One connection's socket and the acks read but not used yet.
#[derive(Debug)]
struct Link {
    stream: Option<TcpStream>,
    acks: Vec<u8>,
    ever_connected: bool,
    /// How many chunks at the front of the window this socket has been sent: a new socket
    /// has been sent none of them.
    sent: usize,
}

/// A chunk on its way: encoded once, written until it is acknowledged (or, without acks, once).
#[derive(Debug)]
struct Chunk {
    bytes: Vec<u8>,
    events: u32,
    /// Its chunk id, with acks.
    id: Option<String>,
    /// Written at least once: writing it again is a resend.
    written: bool,
}

fn connect(to: &str, timeout: Duration) -> io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = to.to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{to} resolves to nothing"));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                stream.set_write_timeout(Some(timeout))?;
                return Ok(stream);
            }
            Err(error) => last = error,
        }
    }
    Err(last)
}

fn wait_for_ack(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    id: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    let until = Instant::now() + timeout;
    let mut tmp = [0u8; 512];
    loop {
        while let Some((ack, used)) =
            decode_ack(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        {
            // An ack for another chunk is stale: keep waiting for ours.
            let ours = ack == id;
            buf.drain(..used);
            if ours {
                return Ok(());
            }
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no ack in time"));
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut tmp)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the receiver closed the connection before acknowledging",
            ));
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// How the chunks at the front of the window fared.
enum Outcome {
    /// Every chunk in the window is written; none is waited for yet.
    Sent,
    /// The oldest chunk is acknowledged, or written without acks.
    Delivered,
    /// Written at least once, the deadline came before an ack.
    Unacked,
    /// Without acks: the write failed.
    WriteFailed,
    /// Never written: the deadline came while connecting.
    NotSent,
}

fn drive(plan: &Plan<'_>, conn: u32, quota: u64) -> ConnSummary {
    let args = plan.args;
    let records: Box<dyn Records + '_> = match &plan.corpus {
        Some(corpus) => Box::new(CorpusShare {
            corpus,
            conn: u64::from(conn),
            connections: u64::from(args.connections),
            event: Default::default(),
        }),
        None => {
            let template = Template::new(&plan.run, conn, args.record_size)
                .with_lines(&plan.log_lines)
                .with_deployments(args.deployments.unwrap_or(0));
            Box::new(template)
        }
    };
    let mut bucket = plan.rate.map(|rate| Bucket {
        rate,
        tokens: 0.0,
        last: Instant::now(),
    });
    let mut link = Link {
        stream: None,
        acks: Vec::new(),
        ever_connected: false,
        sent: 0,
    };
    let in_flight = if args.ack { args.in_flight as usize } else { 1 };
    let mut window: VecDeque<Chunk> = VecDeque::with_capacity(in_flight);
    let (mut spare, mut scratch) = (Vec::new(), Vec::new());
    let mut s = ConnSummary::default();
    let mut next_seq = 0;
    let mut all_made = false;
    let past = |deadline: Option<Instant>| deadline.is_some_and(|d| Instant::now() >= d);
    while !(all_made && window.is_empty()) {
        if !all_made && window.len() < in_flight {
            all_made = next_seq >= quota || past(plan.deadline);
            let n = (quota - next_seq).min(u64::from(plan.batch)) as u32;
            if let Some(bucket) = &mut bucket
                && !all_made
                && !bucket.take(n, plan.deadline)
            {
                all_made = true;
            }
            if !all_made {
                let id = args.ack.then(|| format!("{}-{conn}-{next_seq}", plan.run));
                let mut bytes = std::mem::take(&mut spare);
                encode_chunk(
                    &mut bytes,
                    &mut scratch,
                    records.as_ref(),
                    args.mode,
                    &args.tag,
                    next_seq,
                    n,
                    unix_nanos(),
                    id.as_deref(),
                );
                next_seq += u64::from(n);
                window.push_back(Chunk {
                    bytes,
                    events: n,
                    id,
                    written: false,
                });
            }
            if window.is_empty() {
                break;
            }
        }
        // Wait for the oldest ack only once the window is full or nothing more will join it.
        let wait = all_made || window.len() == in_flight;
        match deliver(plan, &mut link, &mut window, wait, &mut s) {
            Ok(Outcome::Sent) => {}
            Ok(Outcome::Delivered) => {
                let chunk = window.pop_front().expect("a delivered chunk");
                link.sent -= 1;
                if args.ack {
                    s.counts.acked += u64::from(chunk.events);
                    plan.live
                        .acked
                        .fetch_add(u64::from(chunk.events), Ordering::Relaxed);
                }
                spare = chunk.bytes;
            }
            Ok(Outcome::Unacked) => {
                s.counts.unacked += window
                    .iter()
                    .filter(|c| c.written)
                    .map(|c| u64::from(c.events))
                    .sum::<u64>();
                break;
            }
            Ok(Outcome::WriteFailed) => {
                let chunk = window.pop_front().expect("a failed chunk");
                s.counts.failed_writes += u64::from(chunk.events);
            }
            Ok(Outcome::NotSent) => break,
            Err(error) => {
                s.error = Some(error);
                break;
            }
        }
    }
    if let Some(mut stream) = link.stream.take() {
        let _ = stream.flush();
        let _ = stream.shutdown(std::net::Shutdown::Write);
        if !args.ack {
            // Let the receiver read everything before the socket goes: wait for its close.
            let _ = stream.set_read_timeout(Some(args.ack_timeout));
            let _ = stream.read(&mut [0u8; 64]);
        }
    }
    s
}

/// Writes every chunk of the window the socket has not been sent yet, and, if `wait`, waits
/// for the oldest one's ack; reconnects and resends the whole window as needed.
fn deliver(
    plan: &Plan<'_>,
    link: &mut Link,
    window: &mut VecDeque<Chunk>,
    wait: bool,
    s: &mut ConnSummary,
) -> Result<Outcome, String> {
    let args = plan.args;
    let mut failing_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(50);
    let mut last_error = String::new();
    'attempt: loop {
        if let Some(since) = failing_since {
            if plan.deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(if window.front().is_some_and(|c| c.written) {
                    Outcome::Unacked
                } else {
                    Outcome::NotSent
                });
            }
            if since.elapsed() >= args.give_up_after {
                return Err(format!(
                    "gave up after {:?} of failures: {last_error}",
                    args.give_up_after
                ));
            }
            let mut wait = backoff;
            if let Some(d) = plan.deadline {
                wait = wait.min(d.saturating_duration_since(Instant::now()));
            }
            std::thread::sleep(wait);
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        let stream = match &mut link.stream {
            Some(stream) => stream,
            None => match connect(&args.to, args.ack_timeout) {
                Ok(stream) => {
                    if link.ever_connected {
                        s.counts.reconnects += 1;
                    }
                    link.ever_connected = true;
                    link.acks.clear();
                    link.sent = 0;
                    link.stream.insert(stream)
                }
                Err(error) => {
                    last_error = format!("connecting to {}: {error}", args.to);
                    failing_since.get_or_insert_with(Instant::now);
                    continue;
                }
            },
        };
        while let Some(chunk) = window.get_mut(link.sent) {
            if chunk.written {
                s.counts.resent_chunks += 1;
                s.counts.resent_events += u64::from(chunk.events);
                plan.live
                    .resent
                    .fetch_add(u64::from(chunk.events), Ordering::Relaxed);
            } else {
                chunk.written = true;
                s.counts.events += u64::from(chunk.events);
                plan.live
                    .sent
                    .fetch_add(u64::from(chunk.events), Ordering::Relaxed);
            }
            if let Err(error) = stream.write_all(&chunk.bytes) {
                link.stream = None;
                if chunk.id.is_none() {
                    return Ok(Outcome::WriteFailed);
                }
                last_error = format!("writing: {error}");
                failing_since.get_or_insert_with(Instant::now);
                continue 'attempt;
            }
            s.counts.bytes += chunk.bytes.len() as u64;
            link.sent += 1;
        }
        let Some(id) = window.front().and_then(|c| c.id.as_deref()) else {
            return Ok(Outcome::Delivered);
        };
        if !wait {
            return Ok(Outcome::Sent);
        }
        match wait_for_ack(stream, &mut link.acks, id.as_bytes(), args.ack_timeout) {
            Ok(()) => return Ok(Outcome::Delivered),
            Err(error) => {
                link.stream = None;
                last_error = format!("waiting for the ack of {id}: {error}");
                failing_since.get_or_insert_with(Instant::now);
            }
        }
    }
}
