//! `flumen bench`: a Forward-protocol load generator and a tracing receiver.
//!
//! This is the tracer method for measuring lost and duplicated events, e.g. across restarts of
//! a flumen between the two ends:
//!
//! - The **sender** (`flumen bench --to ADDR`) drives Forward traffic over one or more
//!   connections. Every record carries `run` (a random id per invocation), `conn` (the
//!   connection number), `seq` (a per-connection sequence number, contiguous from 0) and
//!   `sent_ns` (when it was first sent, Unix nanoseconds). With `--ack` it behaves like the
//!   fluent-logger libraries: one chunk in flight per connection (`--in-flight N` for a window
//!   of N, as Fluent Bit and Fluentd keep), and on an ack timeout or a connection error it
//!   reconnects and resends every unacknowledged chunk under its chunk id.
//! - The **receiver** (`flumen bench --listen ADDR`) is a Forward server that acknowledges every
//!   chunk that asks, reads those four fields from each record, and reports per run how many
//!   events arrived, how many were unique, duplicated or missing (gaps below the highest `seq`
//!   seen), and the latency from `sent_ns` to receipt.
//! - The **live-tail receiver** (`flumen bench --tail URL --subscribers N`) opens N WebSocket
//!   subscriptions to a flumen's `/api/v1/tail`, keeps the receiver's books per subscriber and
//!   reports which subscribers missed events, and the latency from `sent_ns` to receipt over
//!   all of them (see `tail.rs`).
//! - With `--corpus day` the sender sends a generated corpus that looks like production
//!   instead of tracer records (see `corpus.rs`), for benchmarks of the store; with
//!   `--write-jsonl PATH` it writes that corpus as JSON lines instead of sending it.

mod corpus;
mod progress;
mod receive;
mod record;
mod send;
mod tail;
mod track;

use anyhow::Context as _;
use std::time::Duration;

use clap::{ArgGroup, Args, ValueEnum};

/// The sender's arguments, which the receivers take none of.
const SENDER_ARGS: [&str; 19] = [
    "to",
    "events",
    "duration",
    "rate",
    "batch",
    "record_size",
    "log_lines",
    "connections",
    "mode",
    "ack",
    "in_flight",
    "ack_timeout",
    "give_up_after",
    "progress_every",
    "run_id",
    "tag",
    "corpus",
    "seed",
    "write_jsonl",
];

/// Arguments of `flumen bench`: the sender's by default, the receiver's with `--listen`, the
/// live-tail receiver's with `--tail`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("receiver").args(["listen", "tail"])))]
#[command(after_long_help = "\
Examples:
  flumen bench --listen 127.0.0.1:24230 --until-idle 5s --json
  flumen bench --tail 'ws://127.0.0.1:8080/api/v1/tail?query={}&limit=0' --until-idle 2s
  flumen bench --tail 'ws://127.0.0.1:8080/api/v1/tail?query={conn=\"0\"}&limit=0' \\
    --tail 'ws://127.0.0.1:8080/api/v1/tail?query={conn=\"1\"}&limit=0' --subscribers 1000
  flumen bench --to 127.0.0.1:24230 --events 2000000 --ack --connections 2
  flumen bench --to 127.0.0.1:24224 --duration 30s --rate 50000 --ack --mode compressed
  flumen bench --to 127.0.0.1:24224 --corpus day --events 20000000 --seed 1
  flumen bench --corpus day --events 20000000 --seed 1 --write-jsonl corpus.jsonl

The receiver counts, per run and connection, the unique sequence numbers it saw, duplicates,
and missing ones (gaps below the highest seq seen). Events lost after the last one that
arrived are not visible to it: compare its unique count with the sender's event count.

The live-tail receiver keeps the same books per subscriber. A subscriber is complete when it
has no gap and no duplicate, as many events as any other subscriber of the same URL, and with
--expect N at least N.")]
pub struct BenchArgs {
    // --- Receiver ---
    /// Run as the receiving end instead of sending: a Forward server on this host:port that
    /// acknowledges chunks, tracks the run/conn/seq/sent_ns fields of each record and prints a
    /// report of received, unique, duplicated and missing events and latency when it stops.
    #[arg(
        long,
        value_name = "ADDR",
        help_heading = "Receiver",
        conflicts_with_all = SENDER_ARGS,
    )]
    listen: Option<String>,
    /// Stop after this long without an event, once at least one has arrived
    /// (e.g. 500ms, 5s, 1m). 0 waits for SIGINT/SIGTERM or --expect only.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5s",
        value_parser = humantime::parse_duration,
        requires = "receiver",
        help_heading = "Receiver"
    )]
    until_idle: Duration,
    /// Stop as soon as this many unique events (over all runs) have arrived; with --tail, once
    /// every subscriber has this many.
    #[arg(
        long,
        value_name = "N",
        requires = "receiver",
        help_heading = "Receiver"
    )]
    expect: Option<u64>,

    // --- Live tail ---
    /// Subscribe to a flumen's live stream instead of sending: a WebSocket URL of its
    /// `/api/v1/tail`, such as 'ws://127.0.0.1:8080/api/v1/tail?query={}&limit=0'. Given more
    /// than once, the subscribers take the URLs in turn; `@FILE` reads URLs from a file, one a
    /// line. Each subscription tracks the
    /// run/conn/seq/sent_ns fields of its events' records as the receiver does; the report
    /// names the subscribers that missed events, and the latency from sent_ns to receipt over
    /// all of them. --until-idle (default 5s) and --expect say when to stop.
    #[arg(
        long,
        value_name = "URL",
        help_heading = "Live tail",
        conflicts_with_all = SENDER_ARGS,
    )]
    tail: Vec<String>,
    /// Subscriptions in all, spread over the --tail URLs in turn. Default: one per URL.
    #[arg(long, value_name = "N", requires = "tail", help_heading = "Live tail")]
    subscribers: Option<usize>,

    // --- Sender ---
    /// Where to send: host:port of a Forward receiver (a flumen, or `flumen bench --listen`).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:24224",
        help_heading = "Sender"
    )]
    to: String,
    /// Events to send in all, split evenly over the connections. Default 1000000 unless
    /// --duration is given; with both, whichever ends first.
    #[arg(long, value_name = "N", help_heading = "Sender")]
    events: Option<u64>,
    /// Send for this long (e.g. 30s, 2m) instead of a number of events.
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = humantime::parse_duration,
        help_heading = "Sender"
    )]
    duration: Option<Duration>,
    /// Target rate in events per second over all connections (a token bucket per connection
    /// with an equal share; a chunk leaves when the bucket holds all its events, so lower
    /// --batch for smoother traffic). Default: as fast as the receiver takes them.
    #[arg(long, value_name = "EVENTS_PER_SEC", help_heading = "Sender")]
    rate: Option<f64>,
    /// Events per chunk (per write in message mode; with --ack in message mode every message
    /// is its own chunk).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1000,
        help_heading = "Sender"
    )]
    batch: u32,
    /// Size of each record, msgpack bytes. Records always hold Docker-driver-like fields
    /// (container_id, container_name, source, log) and the tracer fields, so they are at least
    /// about 215 bytes with a 16-digit run id.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 200,
        help_heading = "Sender"
    )]
    record_size: usize,
    /// Take each record's `log` field from the lines of this file, in turn (a real access log,
    /// say, to measure parsing filters), instead of padding records to --record-size.
    #[arg(long, value_name = "FILE", help_heading = "Sender")]
    log_lines: Option<std::path::PathBuf>,
    /// Give each record a `deployment_id` field, `d-<seq mod N>`: N deployments that live-stream
    /// subscribers can each watch (`{deployment_id="d-7"}`), as people watch theirs. With
    /// --tail: the subscribers watch one deployment each, and count every N-th sequence number
    /// as their own sequence.
    #[arg(long, value_name = "N", help_heading = "Sender")]
    deployments: Option<u32>,
    /// Concurrent connections, each with its own `conn` number and sequence.
    #[arg(long, value_name = "N", default_value_t = 2, help_heading = "Sender")]
    connections: u32,
    /// Forward-protocol mode.
    #[arg(long, value_enum, default_value = "packed", help_heading = "Sender")]
    mode: Mode,
    /// Ask for an acknowledgement of every chunk and wait for it before sending the next (see
    /// --in-flight for a window); on a timeout or a connection error, reconnect and resend the
    /// same chunk with the same id.
    #[arg(long, help_heading = "Sender")]
    ack: bool,
    /// With --ack, how many chunks a connection writes before it waits for the oldest one's
    /// ack, as Fluent Bit's and Fluentd's `require_ack_response` do; 1 (the default) waits for
    /// each ack before the next chunk, as the fluent-logger libraries and the Docker driver's
    /// `fluentd-request-ack` do. On a timeout or a connection error every chunk not yet
    /// acknowledged is resent, in order, with its id.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        requires = "ack",
        value_parser = clap::value_parser!(u32).range(1..),
        help_heading = "Sender"
    )]
    in_flight: u32,
    /// How long to wait for a chunk's ack (and for a write or a connect) before reconnecting
    /// and resending.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        value_parser = humantime::parse_duration,
        help_heading = "Sender"
    )]
    ack_timeout: Duration,
    /// Give up (and fail) when a connection has not managed to deliver a chunk for this long,
    /// retrying all the while. --duration ends retries earlier.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "60s",
        value_parser = humantime::parse_duration,
        help_heading = "Sender"
    )]
    give_up_after: Duration,
    /// How often to say how far the run is (sent, acknowledged, resent, rate, elapsed, time
    /// left) on stderr when it is not a terminal; 0 says nothing until the end. On a terminal,
    /// a live line shows it instead.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5s",
        value_parser = humantime::parse_duration,
        help_heading = "Sender"
    )]
    progress_every: Duration,
    /// The run id written into every record. Default: 16 random hex digits, printed on stderr
    /// at start.
    #[arg(long, value_name = "ID", help_heading = "Sender")]
    run_id: Option<String>,
    /// Tag of the events.
    #[arg(long, default_value = "bench", help_heading = "Sender")]
    tag: String,

    // --- Corpus ---
    /// Send a generated corpus that looks like production instead of tracer records: `day`
    /// spreads --events events (default 1000000) evenly over 2026-12-01T00:00Z to 24:00Z, in
    /// time order, from 200 services and about 3,000 deployments, with access log lines, JSON
    /// application messages and stack traces, and one event per hour holding the rare token
    /// `needle-7f3a9c`. Connection c of C sends events c, c + C, c + 2C, ... The same seed and
    /// count always give the same corpus.
    #[arg(
        long,
        value_enum,
        value_name = "KIND",
        help_heading = "Corpus",
        conflicts_with_all = ["duration", "record_size", "log_lines", "run_id"],
    )]
    corpus: Option<CorpusKind>,
    /// The corpus's seed.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        requires = "corpus",
        help_heading = "Corpus"
    )]
    seed: u64,
    /// Write the corpus as JSON lines (`{"time": RFC 3339, the record's fields}`) to this file
    /// (`-` for stdout) instead of sending it: its raw size, for the store's compression ratio.
    /// The summary goes to stderr.
    #[arg(
        long,
        value_name = "PATH",
        requires = "corpus",
        help_heading = "Corpus"
    )]
    write_jsonl: Option<std::path::PathBuf>,

    // --- Both ---
    /// Print the summary (sender) or the report (receiver) as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Which generated corpus `--corpus` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CorpusKind {
    /// A simulated day of production logs.
    Day,
}

/// How the sender frames events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// PackedForward chunks: `[tag, bin(entries), options]`.
    Packed,
    /// CompressedPackedForward chunks (gzip).
    Compressed,
    /// Message mode: one event per frame, `[tag, time, record, options?]`.
    Message,
    /// Forward mode: `[tag, [[time, record], ...], options]`.
    Forward,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Packed => "packed",
            Mode::Compressed => "compressed",
            Mode::Message => "message",
            Mode::Forward => "forward",
        }
    }
}

/// The `--tail` URLs, those of `@FILE` read from the file (one a line): ten thousand URLs do
/// not fit on a command line.
fn tail_urls(args: &[String]) -> anyhow::Result<Vec<String>> {
    let mut urls = Vec::new();
    for arg in args {
        match arg.strip_prefix('@') {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the URLs in {path}"))?;
                urls.extend(
                    text.lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(str::to_owned),
                );
            }
            None => urls.push(arg.clone()),
        }
    }
    Ok(urls)
}

/// Runs the receiver with `--listen`, the live-tail receiver with `--tail`, the sender
/// otherwise.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let until_idle = (!args.until_idle.is_zero()).then_some(args.until_idle);
    if !args.tail.is_empty() {
        let urls = tail_urls(&args.tail)?;
        let options = tail::Options {
            subscribers: args.subscribers.unwrap_or(urls.len()),
            urls,
            until_idle,
            expect: args.expect,
            deployments: args.deployments,
        };
        return tail::run(&options, args.json);
    }
    match &args.listen {
        Some(addr) => receive::run(
            addr,
            receive::Options {
                until_idle,
                expect: args.expect,
            },
            args.json,
        ),
        None => match (&args.write_jsonl, args.corpus) {
            (Some(path), Some(CorpusKind::Day)) => {
                let started = std::time::Instant::now();
                let corpus = corpus::Corpus::new(args.seed, args.events.unwrap_or(1_000_000));
                let info = corpus::write_jsonl(&corpus, path)?;
                let secs = started.elapsed().as_secs_f64();
                if args.json {
                    let mut summary = info.to_json();
                    summary["secs"] = serde_json::json!(secs);
                    eprintln!("{summary}");
                } else {
                    eprintln!("{} in {secs:.2} s", info.to_text());
                }
                Ok(())
            }
            _ => send::run(args),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> BenchArgs {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .unwrap()
            .bench
    }

    #[test]
    fn parses_sender_and_receiver_flags() {
        let a = parse(&[
            "--to",
            "h:1",
            "--duration",
            "30s",
            "--rate",
            "1000",
            "--ack",
        ]);
        assert_eq!(a.duration, Some(Duration::from_secs(30)));
        assert_eq!(a.rate, Some(1000.0));
        assert!(a.ack && a.listen.is_none());
        let r = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--until-idle",
            "3s",
            "--expect",
            "5",
        ]);
        assert_eq!(r.until_idle, Duration::from_secs(3));
        assert_eq!(r.expect, Some(5));
        assert!(
            Cli::try_parse_from(["bench", "--listen", "x:1", "--events", "5"]).is_err(),
            "receiver flags and sender flags do not mix"
        );
        assert!(Cli::try_parse_from(["bench", "--expect", "5"]).is_err());
    }

    #[test]
    fn parses_live_tail_flags() {
        let t = parse(&[
            "--tail",
            "ws://h/a",
            "--tail",
            "ws://h/b",
            "--subscribers",
            "10",
            "--expect",
            "5",
        ]);
        assert_eq!(t.tail, ["ws://h/a", "ws://h/b"]);
        assert_eq!((t.subscribers, t.expect), (Some(10), Some(5)));
        let mixed = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).is_err()
        };
        assert!(mixed(&["--tail", "ws://h/a", "--listen", "x:1"]));
        assert!(mixed(&["--tail", "ws://h/a", "--rate", "5"]));
        assert!(mixed(&["--subscribers", "5"]));
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// The receiver in-process on an ephemeral port, until `expect` unique events arrived.
    async fn start_receiver(
        expect: u64,
    ) -> (
        std::net::SocketAddr,
        tokio::task::JoinHandle<receive::Report>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = tokio::spawn(receive::receive(
            listener,
            receive::Options {
                until_idle: Some(Duration::from_secs(10)),
                expect: Some(expect),
            },
            std::future::pending(),
        ));
        (addr, receiver)
    }

    /// The receiver in-process on an ephemeral port, the sender against it.
    fn round_trip(args: &[&str], expect: u64) -> (send::Summary, receive::Report) {
        runtime().block_on(async {
            let (addr, receiver) = start_receiver(expect).await;
            let addr = addr.to_string();
            let mut full = vec!["--to", addr.as_str()];
            full.extend_from_slice(args);
            let bench = parse(&full);
            let summary = tokio::task::spawn_blocking(move || send::send(&bench))
                .await
                .unwrap()
                .unwrap();
            let report = receiver.await.unwrap();
            (summary, report)
        })
    }

    #[test]
    fn sender_against_receiver_with_acks_loses_nothing() {
        let (summary, report) = round_trip(
            &[
                "--events",
                "20000",
                "--connections",
                "2",
                "--ack",
                "--batch",
                "500",
                "--run-id",
                "t1",
            ],
            20_000,
        );
        assert_eq!(summary.totals.events, 20_000);
        assert_eq!(summary.totals.acked, 20_000);
        assert_eq!(summary.totals.resent_chunks, 0);
        assert_eq!(report.runs.len(), 1);
        let run = &report.runs[0];
        assert_eq!(run.run, "t1");
        assert_eq!(run.unique, 20_000);
        assert_eq!(run.received, 20_000);
        assert_eq!(run.duplicated, 0);
        assert_eq!(run.missing, 0);
        assert_eq!(run.connections.len(), 2);
        assert!(run.connections.iter().all(|c| c.max_seq == Some(9_999)));
        assert_eq!(report.foreign, 0);
        assert_eq!(report.stopped_by, "expect");
    }

    /// A lost ack: a proxy that passes the first connection's first chunk to the receiver, then
    /// cuts the connection when the ack comes back, instead of passing it on. The sender must
    /// resend that chunk under the same id, and the receiver count it twice.
    #[test]
    fn a_lost_ack_means_a_resend_and_a_duplicate() {
        let (summary, report) = through_a_proxy_that_loses_the_first_ack(&[]);
        assert_eq!(
            (
                summary.totals.events,
                summary.totals.acked,
                summary.totals.resent_chunks
            ),
            (5000, 5000, 1)
        );
        assert_eq!(
            (summary.totals.resent_events, summary.totals.reconnects),
            (500, 1)
        );
        let run = &report.runs[0];
        assert_eq!(
            (run.received, run.unique, run.duplicated, run.missing),
            (5500, 5000, 500, 0)
        );
    }

    /// With a window, every chunk the first connection wrote and had no ack for is resent on
    /// the next, in order, and nothing is missing.
    #[test]
    fn a_lost_ack_with_chunks_in_flight_resends_the_window() {
        let (summary, report) = through_a_proxy_that_loses_the_first_ack(&["--in-flight", "4"]);
        let resent = summary.totals.resent_chunks;
        assert!((1..=4).contains(&resent), "resent {resent} chunks");
        assert_eq!((summary.totals.events, summary.totals.acked), (5000, 5000));
        assert_eq!(
            (summary.totals.resent_events, summary.totals.reconnects),
            (500 * resent, 1)
        );
        let run = &report.runs[0];
        assert_eq!((run.unique, run.missing), (5000, 0));
        // The proxy may cut the connection before passing on all the chunks it read.
        assert!(
            (500..=500 * resent).contains(&run.duplicated),
            "{} duplicates of {resent} resent chunks",
            run.duplicated
        );
    }

    #[test]
    fn chunks_in_flight_arrive_whole_and_acknowledged() {
        let (summary, report) = round_trip(
            &[
                "--events",
                "20000",
                "--connections",
                "2",
                "--ack",
                "--in-flight",
                "4",
                "--batch",
                "500",
            ],
            20_000,
        );
        assert_eq!(
            (
                summary.totals.events,
                summary.totals.acked,
                summary.totals.unacked,
                summary.totals.resent_chunks
            ),
            (20_000, 20_000, 0, 0)
        );
        let run = &report.runs[0];
        assert_eq!(
            (run.received, run.unique, run.duplicated, run.missing),
            (20_000, 20_000, 0, 0)
        );
    }

    #[test]
    fn in_flight_needs_ack_and_at_least_one() {
        let parsed = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
                .map(|cli| cli.bench.in_flight)
        };
        assert_eq!(parsed(&["--to", "h:1", "--ack"]).unwrap(), 1);
        assert!(parsed(&["--to", "h:1", "--in-flight", "4"]).is_err());
        assert!(parsed(&["--to", "h:1", "--ack", "--in-flight", "0"]).is_err());
    }

    /// Sends 5,000 events in chunks of 500 on one connection with acks (and `extra` flags)
    /// through a proxy that passes the first connection's chunks to the receiver, then cuts the
    /// connection when the first ack comes back, instead of passing it on.
    fn through_a_proxy_that_loses_the_first_ack(
        extra: &[&str],
    ) -> (send::Summary, receive::Report) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        runtime().block_on(async {
            let (upstream, receiver) = start_receiver(5000).await;
            let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = proxy.local_addr().unwrap().to_string();
            tokio::spawn(async move {
                let mut first = true;
                loop {
                    let (mut client, _) = proxy.accept().await.unwrap();
                    let mut server = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    if std::mem::take(&mut first) {
                        let (mut cr, _cw) = client.split();
                        let (mut sr, mut sw) = server.split();
                        let pass = async {
                            let mut buf = vec![0u8; 1 << 16];
                            loop {
                                let n = cr.read(&mut buf).await.unwrap();
                                if n == 0 {
                                    break;
                                }
                                sw.write_all(&buf[..n]).await.unwrap();
                            }
                        };
                        tokio::select! {
                            () = pass => {}
                            _ = sr.read_u8() => {} // the ack: swallow it and hang up
                        }
                    } else {
                        tokio::spawn(async move {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        });
                    }
                }
            });
            let mut args = vec![
                "--to",
                &addr,
                "--events",
                "5000",
                "--connections",
                "1",
                "--batch",
                "500",
                "--ack",
            ];
            args.extend_from_slice(extra);
            let bench = parse(&args);
            let summary = tokio::task::spawn_blocking(move || send::send(&bench))
                .await
                .unwrap()
                .unwrap();
            (summary, receiver.await.unwrap())
        })
    }

    #[test]
    fn every_mode_arrives_whole() {
        for mode in ["packed", "compressed", "message", "forward"] {
            let (summary, report) = round_trip(
                &[
                    "--events",
                    "3001",
                    "--connections",
                    "3",
                    "--batch",
                    "100",
                    "--mode",
                    mode,
                ],
                3001,
            );
            assert_eq!(summary.totals.events, 3001, "{mode}");
            let run = &report.runs[0];
            assert_eq!(
                (run.unique, run.duplicated, run.missing),
                (3001, 0, 0),
                "{mode}"
            );
        }
    }
}
