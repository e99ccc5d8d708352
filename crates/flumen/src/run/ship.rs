//! Shipping: an in-process flumen (a Forward source on a loopback port, the durable log in the
//! buffer directory, a forward output with acknowledgements to `--to`) and the sender that
//! writes the queued lines to that source.
//!
//! The sender is the only writer of the source: it turns the queue into PackedForward chunks
//! (as many events as are waiting, up to a limit), sends one, waits for its acknowledgement —
//! which the source sends once the chunk is durable in the log — and sends the next. The
//! forward output does the rest: delivery to the aggregator with acknowledgements, retries,
//! and resends with the same chunk ids, so that the aggregator stores a resend once. What is
//! not delivered when `flumen run` exits stays in the log, and the next `flumen run` with the
//! same buffer slot delivers it first.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use flumen_codec::forward::{Compression, decode_ack, encode_packed_forward};
use flumen_event::entry::write_entry;
use flumen_server::Server;
use tokio::sync::Notify;

use super::buffer::{self, Slot};
use super::events::StaticFields;
use super::output::{Message, Queue};

/// The most entry bytes in one chunk to the loopback source.
const MAX_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// The most events in one chunk to the loopback source.
const MAX_CHUNK_EVENTS: u32 = 20_000;
/// How often blocked socket operations look at the deadlines.
const SLICE: Duration = Duration::from_millis(250);

/// What the shipping side, the readers and the main thread share.
#[derive(Debug, Default)]
pub struct Shared {
    pub queue: Queue,
    /// When to stop waiting for delivery to the aggregator.
    deliver_by: OnceLock<Instant>,
    /// When to stop trying to put the last lines into the buffer.
    buffer_by: OnceLock<Instant>,
    /// A signal arrived after the command ended: stop waiting for delivery.
    stop: Notify,
    stopped: AtomicBool,
}

impl Shared {
    /// The command ended at `end`: wait at most `flush_timeout` for delivery, and at least a
    /// second to put the last lines into the buffer.
    pub fn set_deadlines(&self, end: Instant, flush_timeout: Duration) {
        let _ = self.deliver_by.set(end + flush_timeout);
        let _ = self
            .buffer_by
            .set(end + flush_timeout.max(Duration::from_secs(1)));
    }

    /// When the buffer stops being waited for, once known.
    pub fn buffer_by(&self) -> Option<Instant> {
        self.buffer_by.get().copied()
    }

    fn buffer_expired(&self) -> bool {
        self.buffer_by.get().is_some_and(|&by| Instant::now() >= by)
    }

    /// Stop waiting for delivery.
    pub fn stop_waiting(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.stop.notify_one();
    }
}

/// How the wait for delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Everything in the buffer reached the aggregator.
    Delivered,
    /// The flush timeout passed first.
    TimedOut,
    /// The aggregator refused connections (or its name did not resolve).
    Unreachable(String),
    /// A signal asked flumen run to stop waiting.
    Interrupted,
    /// Nothing was sent: the buffer or the in-process flumen could not be set up.
    NotStarted,
}

/// What the shipping side did.
#[derive(Debug)]
pub struct Report {
    /// The buffer slot used.
    pub slot: Option<PathBuf>,
    pub delivery: Delivery,
    /// Lines that never made it into the buffer (still queued when time ran out).
    pub unbuffered: u64,
}

/// What the shipping side needs to know.
#[derive(Debug)]
pub struct Plan {
    pub to: String,
    pub root: PathBuf,
    pub tag: String,
    pub run_id: String,
}

/// Starts shipping on a thread of its own; its report arrives on the returned channel.
pub fn spawn(
    plan: Plan,
    rx: Receiver<Message>,
    shared: Arc<Shared>,
    fields: Arc<OnceLock<StaticFields>>,
) -> anyhow::Result<Receiver<Report>> {
    let (report_tx, report_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("flumen-run-ship".into())
        .spawn(move || {
            let report = ship(&plan, &rx, &shared, &fields);
            let _ = report_tx.send(report);
        })?;
    Ok(report_rx)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("flumen-run")
        .build()?)
}

fn ship(
    plan: &Plan,
    rx: &Receiver<Message>,
    shared: &Shared,
    fields: &OnceLock<StaticFields>,
) -> Report {
    let started = (|| {
        let runtime = runtime()?;
        let target = buffer::target_dir(&plan.root, &plan.to)?;
        let slot = Slot::acquire(&target)?;
        slot.mark_pending()?;
        let spec = slot.server_spec(&plan.to, true)?;
        let server = runtime
            .block_on(Server::start(&spec, None))
            .with_context(|| format!("cannot start the buffer in {}", slot.dir.display()))?;
        let addr = server
            .source_addr(buffer::LOOPBACK_SOURCE)
            .context("the buffer's source has no address")?;
        anyhow::Ok((runtime, slot, server, addr))
    })();
    let (runtime, slot, server, addr) = match started {
        Ok(started) => started,
        Err(error) => {
            shared.queue.closed.store(true, Ordering::Relaxed);
            tracing::warn!(
                message = "The command's output is not being sent.",
                error = format!("{error:#}")
            );
            return Report {
                slot: None,
                delivery: Delivery::NotStarted,
                unbuffered: 0,
            };
        }
    };
    tracing::debug!(message = "Buffer started.", dir = %slot.dir.display(), source = %addr);
    let fields = fields.wait();
    let unbuffered = send_lines(addr, rx, plan, shared, fields);
    let delivery = runtime.block_on(flush(server, &plan.to, shared));
    if delivery == Delivery::Delivered {
        slot.clear_pending();
    }
    // Whatever is still running (an output still trying) stops with the process; the log is
    // consistent at any point (what was acknowledged is durable, cursors only move past
    // delivered batches).
    runtime.shutdown_background();
    let dir = slot.dir.clone();
    // Held until the process exits: no other flumen run may open the log while a task of
    // this one may still touch it.
    std::mem::forget(slot);
    Report {
        slot: Some(dir),
        delivery,
        unbuffered,
    }
}

/// Waits until everything in the log was delivered, the deadline passes, a signal says stop,
/// or the aggregator turns out to refuse connections.
async fn flush(server: Server, to: &str, shared: &Shared) -> Delivery {
    let deliver_by = shared
        .deliver_by
        .get()
        .copied()
        .unwrap_or_else(Instant::now);
    if shared.stopped.load(Ordering::Relaxed) {
        return Delivery::Interrupted;
    }
    tokio::select! {
        () = server.shutdown() => Delivery::Delivered,
        () = tokio::time::sleep_until(deliver_by.into()) => Delivery::TimedOut,
        () = shared.stop.notified() => Delivery::Interrupted,
        reason = refused(to) => Delivery::Unreachable(reason),
    }
}

/// Resolves once a connection to `to` fails outright (refused, no route, no such host): no
/// point waiting for delivery then. A connection that succeeds or times out proves nothing.
async fn refused(to: &str) -> String {
    // Delivery usually finishes before this looks at all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    loop {
        if let Ok(Err(error)) =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(to)).await
        {
            return error.to_string();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The loopback connection and the acknowledgement bytes read but not used yet.
#[derive(Debug, Default)]
struct Link {
    stream: Option<TcpStream>,
    acks: Vec<u8>,
}

/// Sends everything queued until [`Message::End`]; returns how many lines could not be put
/// into the buffer before the deadline.
fn send_lines(
    addr: SocketAddr,
    rx: &Receiver<Message>,
    plan: &Plan,
    shared: &Shared,
    fields: &StaticFields,
) -> u64 {
    let mut link = Link::default();
    let (mut entries, mut frame) = (Vec::new(), Vec::new());
    let mut chunks = 0u64;
    let mut ended = false;
    while !ended {
        let Ok(first) = rx.recv() else { break };
        let (mut count, mut lines, mut freed) = (0u32, 0u64, 0usize);
        let mut next = Some(first);
        while let Some(message) = next.take() {
            freed += message.cost();
            match message {
                Message::Line {
                    time,
                    stream,
                    text,
                    partial,
                } => {
                    fields.write_line(&mut entries, time, stream, &text, partial);
                    lines += 1;
                }
                Message::Record { time, record } => write_entry(&mut entries, time, &record),
                Message::End => {
                    ended = true;
                    break;
                }
            }
            count += 1;
            if entries.len() >= MAX_CHUNK_BYTES || count >= MAX_CHUNK_EVENTS {
                break;
            }
            next = rx.try_recv().ok();
        }
        shared.queue.queued.fetch_sub(freed, Ordering::Relaxed);
        if count == 0 {
            continue;
        }
        chunks += 1;
        let id = format!("{}-{chunks}", plan.run_id);
        frame.clear();
        encode_packed_forward(
            &mut frame,
            &plan.tag,
            &entries,
            count,
            Some(&id),
            Compression::None,
        );
        entries.clear();
        if !deliver(&mut link, addr, &frame, id.as_bytes(), shared) {
            // Out of time: this chunk's lines and whatever is still queued are lost.
            let mut lost = lines;
            if !ended {
                for message in rx.iter() {
                    match message {
                        Message::Line { .. } => lost += 1,
                        Message::Record { .. } => {}
                        Message::End => break,
                    }
                }
            }
            return lost;
        }
    }
    if let Some(stream) = link.stream.take() {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    0
}

/// Writes one chunk to the source and waits for its acknowledgement, reconnecting and sending
/// it again as needed (the source stores a resent chunk once); false once the buffer
/// deadline has passed.
fn deliver(link: &mut Link, addr: SocketAddr, frame: &[u8], id: &[u8], shared: &Shared) -> bool {
    let mut backoff = Duration::from_millis(10);
    let mut failing = false;
    loop {
        if failing {
            if shared.buffer_expired() {
                return false;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        failing = true;
        let stream = match &mut link.stream {
            Some(stream) => stream,
            None => match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    link.acks.clear();
                    link.stream.insert(stream)
                }
                Err(error) => {
                    tracing::debug!(message = "Cannot connect to the buffer.", %error);
                    continue;
                }
            },
        };
        let sent = write_frame(stream, frame, shared)
            .and_then(|()| wait_for_ack(stream, &mut link.acks, id, shared));
        match sent {
            Ok(()) => return true,
            Err(error) => {
                tracing::debug!(message = "Sending to the buffer failed.", %error);
                link.stream = None;
            }
        }
    }
}

fn write_frame(stream: &mut TcpStream, frame: &[u8], shared: &Shared) -> std::io::Result<()> {
    stream.set_write_timeout(Some(SLICE))?;
    let mut written = 0;
    while written < frame.len() {
        match stream.write(&frame[written..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                // The log is full and the source stopped reading: wait, unless out of time.
                if shared.buffer_expired() {
                    return Err(e);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn wait_for_ack(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    id: &[u8],
    shared: &Shared,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(SLICE))?;
    let mut tmp = [0u8; 512];
    loop {
        while let Some((ack, used)) =
            decode_ack(buf).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?
        {
            // An ack for an earlier send of another chunk is stale: keep waiting for ours.
            let ours = ack == id;
            buf.drain(..used);
            if ours {
                return Ok(());
            }
        }
        match stream.read(&mut tmp) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if shared.buffer_expired() {
                    return Err(e);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `flumen run --flush`: delivers what earlier runs left in the buffer for `to`, waiting at
/// most `timeout`. Exits 0 when nothing is left.
pub fn flush_buffered(root: PathBuf, to: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    let target = buffer::target_dir(&root, to)?;
    let slots = Slot::acquire_pending(&target)?;
    if slots.is_empty() {
        tracing::info!(message = "Nothing buffered.", dir = %target.display());
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = runtime()?;
    let shared = Shared::default();
    shared.set_deadlines(Instant::now(), timeout);
    let mut left = Vec::new();
    let mut held = Vec::new();
    for slot in slots {
        let spec = slot.server_spec(to, false)?;
        let delivery = match runtime.block_on(Server::start(&spec, None)) {
            Ok(server) => runtime.block_on(flush(server, to, &shared)),
            Err(error) => {
                tracing::warn!(message = "Cannot open a buffer slot.", dir = %slot.dir.display(), error = format!("{error:#}"));
                Delivery::NotStarted
            }
        };
        if delivery == Delivery::Delivered {
            slot.clear_pending();
        } else {
            left.push((slot.dir.clone(), delivery));
        }
        held.push(slot);
    }
    runtime.shutdown_background();
    // Held until the process exits, as in `ship`.
    std::mem::forget(held);
    if left.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for (dir, delivery) in &left {
        eprintln!(
            "flumen run --flush: events in {} are not delivered to {to} yet ({})",
            dir.display(),
            why(delivery, timeout)
        );
    }
    Ok(ExitCode::FAILURE)
}

/// Why delivery did not finish, for people.
pub fn why(delivery: &Delivery, timeout: Duration) -> String {
    match delivery {
        Delivery::Delivered => "delivered".into(),
        Delivery::TimedOut => format!(
            "not within --flush-timeout {}",
            humantime::format_duration(timeout)
        ),
        Delivery::Unreachable(error) => format!("unreachable: {error}"),
        Delivery::Interrupted => "interrupted".into(),
        Delivery::NotStarted => "the buffer could not be opened".into(),
    }
}
