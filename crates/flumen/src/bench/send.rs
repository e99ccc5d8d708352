//! The sender: one thread and one blocking socket per connection.
//!
//! Each connection numbers its events from 0 and encodes every chunk when it is first sent,
//! stamping `sent_ns`. With acks it keeps one chunk in flight, as the fluent-logger libraries
//! do: write it, wait for `{"ack": id}`; on a timeout or a connection error, reconnect (with a
//! backoff) and write the very same bytes again. Without acks a failed write loses the chunk
//! (the receiver will count the gap) and the next chunk goes out on a new connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flumen_codec::forward::decode_ack;
use serde_json::json;

use super::record::{Template, encode_chunk};
use super::{BenchArgs, Mode};

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
    };
    eprintln!(
        "flumen bench: run {} to {}: {} connections, {} mode, batch {}, ack {}",
        plan.run,
        args.to,
        args.connections,
        args.mode.name(),
        plan.batch,
        args.ack
    );
    let per_connection: Vec<ConnSummary> = std::thread::scope(|scope| {
        let plan = &plan;
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
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let mut totals = Counts::default();
    for connection in &per_connection {
        totals += connection.counts;
    }
    Ok(Summary {
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
                ", acked {}, unacked {}",
                self.totals.acked, self.totals.unacked
            );
        } else if self.totals.failed_writes > 0 {
            line += &format!(", lost in failed writes {}", self.totals.failed_writes);
        }
        line += &format!(", reconnects {})", self.totals.reconnects);
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
            "per_connection": self.per_connection.iter().enumerate().map(|(c, s)| json!({
                "conn": c,
                "events": s.counts.events,
                "acked": s.counts.acked,
                "unacked": s.counts.unacked,
                "resent_chunks": s.counts.resent_chunks,
                "reconnects": s.counts.reconnects,
                "error": s.error,
            })).collect::<Vec<_>>(),
        })
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

/// How one chunk ended.
enum Outcome {
    /// Acknowledged, or written without acks.
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
    let template = Template::new(&plan.run, conn, args.record_size).with_lines(&plan.log_lines);
    let mut bucket = plan.rate.map(|rate| Bucket {
        rate,
        tokens: 0.0,
        last: Instant::now(),
    });
    let mut link = Link {
        stream: None,
        acks: Vec::new(),
        ever_connected: false,
    };
    let (mut bytes, mut scratch) = (Vec::new(), Vec::new());
    let mut s = ConnSummary::default();
    let past = |deadline: Option<Instant>| deadline.is_some_and(|d| Instant::now() >= d);
    while s.counts.events < quota && !past(plan.deadline) {
        let n = (quota - s.counts.events).min(u64::from(plan.batch)) as u32;
        if let Some(bucket) = &mut bucket
            && !bucket.take(n, plan.deadline)
        {
            break;
        }
        let seq = s.counts.events;
        let id = args.ack.then(|| format!("{}-{conn}-{seq}", plan.run));
        encode_chunk(
            &mut bytes,
            &mut scratch,
            &template,
            args.mode,
            &args.tag,
            seq,
            n,
            unix_nanos(),
            id.as_deref(),
        );
        match deliver(plan, &mut link, &bytes, n, id.as_deref(), &mut s) {
            Ok(Outcome::Delivered) => {
                s.counts.events += u64::from(n);
                if args.ack {
                    s.counts.acked += u64::from(n);
                }
            }
            Ok(Outcome::Unacked) => {
                s.counts.events += u64::from(n);
                s.counts.unacked += u64::from(n);
                break;
            }
            Ok(Outcome::WriteFailed) => {
                s.counts.events += u64::from(n);
                s.counts.failed_writes += u64::from(n);
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

/// Writes one chunk (and waits for its ack), reconnecting and resending as needed.
fn deliver(
    plan: &Plan<'_>,
    link: &mut Link,
    bytes: &[u8],
    n: u32,
    id: Option<&str>,
    s: &mut ConnSummary,
) -> Result<Outcome, String> {
    let args = plan.args;
    let mut written = false;
    let mut failing_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(50);
    let mut last_error = String::new();
    loop {
        if let Some(since) = failing_since {
            if plan.deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(if written {
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
                    link.stream.insert(stream)
                }
                Err(error) => {
                    last_error = format!("connecting to {}: {error}", args.to);
                    failing_since.get_or_insert_with(Instant::now);
                    continue;
                }
            },
        };
        if written {
            s.counts.resent_chunks += 1;
            s.counts.resent_events += u64::from(n);
        }
        written = true;
        if let Err(error) = stream.write_all(bytes) {
            link.stream = None;
            if id.is_none() {
                return Ok(Outcome::WriteFailed);
            }
            last_error = format!("writing: {error}");
            failing_since.get_or_insert_with(Instant::now);
            continue;
        }
        s.counts.bytes += bytes.len() as u64;
        let Some(id) = id else {
            return Ok(Outcome::Delivered);
        };
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
