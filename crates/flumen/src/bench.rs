//! `flumen bench`: a Forward-protocol load generator.
//!
//! Each connection runs on its own thread with a blocking socket and sends pre-encoded chunks
//! flat out (or, with `--ack`, waits for each chunk's acknowledgement before the next, as the
//! fluent-logger libraries do). Records look like what the Docker fluentd driver sends
//! (`container_id`, `container_name`, `source`, `log`) padded to `--record-size` bytes, and
//! carry a sequence number.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use flumen_codec::forward::{Compression, decode_ack, encode_packed_forward, write_message};
use flumen_event::EventTime;
use flumen_event::entry::write_entry;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Where to send: host:port of a Forward receiver.
    #[arg(long, default_value = "127.0.0.1:24224")]
    to: String,
    /// Events to send in all.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Events per chunk.
    #[arg(long, default_value_t = 1000)]
    batch: u32,
    /// Approximate size of each record, msgpack bytes.
    #[arg(long, default_value_t = 200)]
    record_size: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 2)]
    connections: u32,
    /// Forward-protocol mode.
    #[arg(long, value_enum, default_value = "packed")]
    mode: Mode,
    /// Ask for an acknowledgement of every chunk and wait for it.
    #[arg(long)]
    ack: bool,
    /// Tag of the events.
    #[arg(long, default_value = "bench")]
    tag: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// PackedForward chunks.
    Packed,
    /// CompressedPackedForward chunks (gzip).
    Compressed,
    /// Message mode: one event per frame.
    Message,
}

fn record(seq: u64, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 16);
    rmp::encode::write_map_len(&mut out, 5).expect("Vec write");
    for (key, value) in [
        (
            "container_id",
            "4f1a9c2b7d3e8f60a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718",
        ),
        ("container_name", "/bench-web-1"),
        ("source", "stdout"),
    ] {
        rmp::encode::write_str(&mut out, key).expect("Vec write");
        rmp::encode::write_str(&mut out, value).expect("Vec write");
    }
    rmp::encode::write_str(&mut out, "seq").expect("Vec write");
    rmp::encode::write_uint(&mut out, seq).expect("Vec write");
    rmp::encode::write_str(&mut out, "log").expect("Vec write");
    let used = out.len() + 3;
    let log = format!(
        "{seq:>12} GET /api/v1/items?page=2 200 {}",
        "x".repeat(size.saturating_sub(used + 45))
    );
    rmp::encode::write_str(&mut out, &log).expect("Vec write");
    out
}

/// One pre-encoded chunk and the ack it expects.
struct Chunk {
    bytes: Vec<u8>,
    events: u32,
}

fn encode_chunks(args: &BenchArgs, connection: u32) -> Vec<Chunk> {
    // A handful of distinct chunks, reused: encoding is not what is measured.
    (0..8u64)
        .map(|i| {
            let base = (u64::from(connection) << 40) | (i * u64::from(args.batch));
            let chunk_id = args.ack.then(|| format!("bench-{connection}-{i}"));
            let now = EventTime::now();
            let mut bytes = Vec::new();
            match args.mode {
                Mode::Message => {
                    write_message(
                        &mut bytes,
                        &args.tag,
                        now,
                        &record(base, args.record_size),
                        chunk_id.as_deref(),
                    );
                    Chunk { bytes, events: 1 }
                }
                Mode::Packed | Mode::Compressed => {
                    let mut entries = Vec::new();
                    for n in 0..u64::from(args.batch) {
                        write_entry(&mut entries, now, &record(base + n, args.record_size));
                    }
                    let compression = match args.mode {
                        Mode::Compressed => Compression::Gzip,
                        _ => Compression::None,
                    };
                    encode_packed_forward(
                        &mut bytes,
                        &args.tag,
                        &entries,
                        args.batch,
                        chunk_id.as_deref(),
                        compression,
                    );
                    Chunk {
                        bytes,
                        events: args.batch,
                    }
                }
            }
        })
        .collect()
}

fn drive(args: &BenchArgs, connection: u32, quota: u64) -> anyhow::Result<(u64, u64)> {
    let chunks = encode_chunks(args, connection);
    let mut stream =
        TcpStream::connect(&args.to).with_context(|| format!("connecting to {}", args.to))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let (mut events, mut bytes) = (0u64, 0u64);
    let mut ack_buf = Vec::new();
    let mut i = 0;
    while events < quota {
        let chunk = &chunks[i % chunks.len()];
        i += 1;
        stream.write_all(&chunk.bytes)?;
        if args.ack {
            wait_for_ack(&mut stream, &mut ack_buf)?;
        }
        events += u64::from(chunk.events);
        bytes += chunk.bytes.len() as u64;
    }
    stream.flush()?;
    Ok((events, bytes))
}

fn wait_for_ack(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    loop {
        if let Some((_, used)) = decode_ack(buf).map_err(|e| anyhow::anyhow!("{e}"))? {
            buf.drain(..used);
            return Ok(());
        }
        let mut tmp = [0u8; 256];
        let n = stream.read(&mut tmp).context("waiting for an ack")?;
        anyhow::ensure!(
            n > 0,
            "the receiver closed the connection before acknowledging"
        );
        buf.extend_from_slice(&tmp[..n]);
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.connections > 0 && args.batch > 0,
        "--connections and --batch must be at least 1"
    );
    let started = Instant::now();
    let per_connection = args.events.div_ceil(u64::from(args.connections));
    let results: Vec<anyhow::Result<(u64, u64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.connections)
            .map(|c| scope.spawn(move || drive(args, c, per_connection)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (mut events, mut bytes) = (0, 0);
    for result in results {
        let (e, b) = result?;
        events += e;
        bytes += b;
    }
    println!(
        "sent {events} events, {:.1} MB in {elapsed:.2} s: {:.0} events/s, {:.1} MB/s ({} connections, {:?} mode, batch {}, ack {})",
        bytes as f64 / 1e6,
        events as f64 / elapsed,
        bytes as f64 / 1e6 / elapsed,
        args.connections,
        args.mode,
        args.batch,
        args.ack,
    );
    Ok(())
}
