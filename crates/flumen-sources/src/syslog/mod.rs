//! The syslog source: RFC 5424 and RFC 3164 (BSD) messages over UDP, TCP and TLS — what
//! `logger`, rsyslog, syslog-ng, network devices and most daemons send.
//!
//! Each message is parsed with `flumen_parse::syslog` into fields (see [`SyslogConfig`] and
//! `docs/configuration.md`): `facility`, `severity`, `level` (canonical), `timestamp`,
//! `hostname`, `app_name`, `proc_id`, `msg_id`, `structured_data`, `message`, plus `host` (the
//! hostname, under its canonical name) and `source_address` (the sender's IP address). The
//! event time is the message's timestamp, or the time flumen received it when the message has
//! none. A message that does not parse is kept: the whole line in `message`, the reason in
//! `parse_error`, counted in `flumen_source_malformed_events_total`.
//!
//! - **UDP**: one datagram is one message (newlines inside it stay in the message; one trailing
//!   newline is dropped). Datagrams waiting in the socket are taken together in one append.
//! - **TCP and TLS** (RFC 6587, RFC 5425): one task per connection. Frames are octet-counted
//!   (`LEN SP MSG`) or newline-delimited; with `framing = "auto"` each frame that starts with
//!   digits and a space is octet-counted, any other is a line, as rsyslog and Vector read them.
//!   The messages of one socket read are appended together; while the log is full, appending
//!   waits, so the connection stops reading and TCP pushes back on the sender.
//! - **Limits**: a newline-delimited message or a datagram longer than `max_message_size` is cut
//!   there, kept with `truncated = true` (counted in `flumen_source_truncated_events_total`), and
//!   the rest of it is discarded; the connection carries on. An octet count that is not a count,
//!   is zero or is above `max_message_size`, or a connection that closes inside an
//!   octet-counted frame, cannot be resynchronised: the connection is closed with a warning
//!   naming the peer (counted in `flumen_source_rejected_total`); other connections are not
//!   affected, and the messages before the bad frame are kept.
//!
//! On stop, the source stops accepting and reading, stores what it read (lines a multiline
//! filter holds included) and returns; syslog has no acknowledgements to send.

mod config;
pub use config::{Framing, SyslogConfig, SyslogMode};

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use flumen_event::EventTime;
use flumen_event::record::{Event, Record, Value};
use flumen_parse::TimeParser;
use flumen_parse::syslog::{FACILITY_NAMES, SEVERITY_NAMES, SyslogMessage, parse_line};
use metrics::Counter;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::{Ingest, IngestError, SourceShared, far_future, stopped};
use crate::ingest::IngestCounters;
use crate::net::{
    Closing, ConnectionLimits, FrameProtocol, FramedConnection, Link, Listener as StreamListener,
    Peer, StreamEnd, bind_udp, count_rejected, invalid,
};

/// Datagrams taken into one append, at most (and bytes).
const UDP_BATCH_MESSAGES: usize = 1024;
const UDP_BATCH_BYTES: usize = 1024 * 1024;

/// What is bound to listen.
enum Listener {
    Udp(UdpSocket),
    /// TCP, or TLS when the listener has a certificate.
    Stream(StreamListener),
}

/// A bound syslog source.
pub struct SyslogSource {
    name: Arc<str>,
    label: String,
    listener: Listener,
    tag: TagTemplate,
    time: TimeParser,
    framing: Framing,
    max_message_size: usize,
    max_connections: Option<usize>,
    idle_timeout: Option<Duration>,
}

impl std::fmt::Debug for SyslogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.listener {
            Listener::Udp(_) => "udp",
            Listener::Stream(listener) if listener.is_tls() => "tls",
            Listener::Stream(_) => "tcp",
        };
        f.debug_struct("SyslogSource")
            .field("name", &self.name)
            .field("mode", &mode)
            .field("address", &self.local_addr())
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// A configuration error (the caller names the source).
impl SyslogSource {
    /// Checks the configuration, loads the TLS certificate and binds what `config` asks for.
    pub async fn bind(name: &str, config: &SyslogConfig) -> std::io::Result<Self> {
        let (tag, time) = config.compile().map_err(invalid)?;
        let default_port = if config.mode == SyslogMode::Tls {
            6514
        } else {
            5140
        };
        let address = config
            .address
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], default_port)));
        // Only `mode = "tls"` has `tls` (checked above); its certificate is read before binding.
        let listener = match config.mode {
            SyslogMode::Udp => Listener::Udp(bind_udp(address).await?),
            SyslogMode::Tcp | SyslogMode::Tls => {
                Listener::Stream(StreamListener::bind(address, config.tls.as_ref()).await?)
            }
        };
        Ok(Self {
            name: name.into(),
            label: config.label.clone(),
            listener,
            tag,
            time,
            framing: config.framing.unwrap_or_default(),
            max_message_size: config.max_message_size.as_u64() as usize,
            max_connections: config.max_connections,
            idle_timeout: config.idle_timeout,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.listener {
            Listener::Udp(socket) => socket.local_addr().ok(),
            Listener::Stream(listener) => listener.local_addr().ok(),
        }
    }

    /// Takes messages until `stop` turns true, then stores what it read and returns.
    pub async fn run(self, shared: SourceShared, stop: watch::Receiver<bool>) {
        let decoder = Arc::new(Decoder {
            source: self.name.clone(),
            tag: self.tag,
            time: self.time,
            malformed: metrics::counter!("flumen_source_malformed_events_total", "source" => self.name.to_string()),
            truncated: metrics::counter!("flumen_source_truncated_events_total", "source" => self.name.to_string()),
        });
        match self.listener {
            Listener::Udp(socket) => {
                let ingest = Ingest::new(&self.name, &self.label, &shared);
                run_udp(socket, ingest, &decoder, self.max_message_size, stop).await;
            }
            Listener::Stream(listener) => {
                let limits = ConnectionLimits {
                    max_age: None,
                    idle_timeout: self.idle_timeout,
                };
                let (framing, max) = (self.framing, self.max_message_size);
                let source = self.name.clone();
                let counters = IngestCounters::new(&source);
                let connect = move |peer: &Peer| {
                    let protocol = SyslogProtocol {
                        peer_ip: peer_ip(peer.address),
                        decoder: decoder.clone(),
                        deframer: Deframer::new(framing, max),
                    };
                    let ingest = Ingest::counted(counters.clone(), &self.label, &shared);
                    FramedConnection::new(source.clone(), peer, protocol, ingest, limits)
                };
                listener
                    .serve(&self.name, self.max_connections, stop, connect)
                    .await;
            }
        }
    }
}

fn peer_ip(peer: SocketAddr) -> String {
    peer.ip().to_canonical().to_string()
}

// ---------------------------------------------------------------------------------------------
// UDP

async fn run_udp(
    socket: UdpSocket,
    mut ingest: Ingest,
    decoder: &Decoder,
    max: usize,
    mut stop: watch::Receiver<bool>,
) {
    // One byte more than the limit, to tell a datagram of exactly `max` bytes from a longer one
    // the kernel cut to fit; no datagram is longer than 64 KiB.
    let mut buf = vec![0u8; max.min(64 * 1024) + 1];
    let far = far_future();
    let take = |batch: &mut Batch, n: usize, peer: SocketAddr, buf: &[u8]| {
        let truncated = n > max;
        let message = &buf[..n.min(max)];
        if !message.iter().all(|b| matches!(b, b'\n' | b'\r' | b'\0')) {
            decoder.push(batch, message, truncated, &peer_ip(peer), EventTime::now());
        }
    };
    loop {
        let flush_at = ingest.next_flush().unwrap_or(far);
        tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            _ = tokio::time::sleep_until(flush_at.into()) => {
                if let Err(error) = ingest.flush_due().await {
                    not_stored(&decoder.source, &error);
                }
            }
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, peer)) => {
                    let mut batch = Batch::default();
                    take(&mut batch, n, peer, &buf);
                    // Take the datagrams already waiting in the same append.
                    for _ in 1..UDP_BATCH_MESSAGES {
                        if batch.bytes >= UDP_BATCH_BYTES {
                            break;
                        }
                        match socket.try_recv_from(&mut buf) {
                            Ok((n, peer)) => take(&mut batch, n, peer, &buf),
                            Err(_) => break,
                        }
                    }
                    if let Err(error) = batch.append(&mut ingest).await {
                        not_stored(&decoder.source, &error);
                    }
                }
                Err(error) => {
                    tracing::debug!(message = "Syslog UDP receive failed.", source = %decoder.source, %error);
                }
            },
        }
    }
    // The datagrams that arrived before the stop are stored too.
    let mut batch = Batch::default();
    for _ in 0..UDP_BATCH_MESSAGES * 16 {
        match socket.try_recv_from(&mut buf) {
            Ok((n, peer)) => take(&mut batch, n, peer, &buf),
            Err(_) => break,
        }
    }
    if let Err(error) = batch.append(&mut ingest).await {
        not_stored(&decoder.source, &error);
    }
    if let Err(error) = ingest.flush_all().await {
        not_stored(&decoder.source, &error);
    }
}

fn not_stored(source: &str, error: &IngestError) {
    count_rejected(source, "not_stored");
    tracing::error!(message = "Syslog messages could not be stored.", source = %source, %error);
}

// ---------------------------------------------------------------------------------------------
// TCP and TLS

/// The syslog protocol of one TCP or TLS connection: RFC 6587 frames to events.
struct SyslogProtocol {
    /// The sender's IP address, as the events' `source_address`.
    peer_ip: String,
    decoder: Arc<Decoder>,
    deframer: Deframer,
}

impl FrameProtocol for SyslogProtocol {
    const NAME: &'static str = "syslog";
    const READ_BUFFER: usize = 64 * 1024;

    /// Appends every whole message at the front of `buf`; closes the connection after
    /// appending the messages before a bad frame.
    async fn take_frames(&mut self, buf: &mut BytesMut, link: &mut Link) -> Result<(), Closing> {
        let mut batch = Batch::default();
        let received = EventTime::now();
        let result = loop {
            match self.deframer.next(buf) {
                Ok(Some((message, truncated))) => {
                    self.decoder
                        .push(&mut batch, &message, truncated, &self.peer_ip, received);
                }
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        if let Err(error) = batch.append(&mut link.ingest).await {
            link.reject("not_stored", &error.to_string());
            return Err(Closing);
        }
        result.map_err(|error| {
            link.reject(error.kind, &error.reason);
            Closing
        })
    }

    /// Takes a last unterminated line (a newline-delimited message the sender did not end is
    /// complete); false (counted and logged) if the stream stopped inside an octet-counted
    /// frame.
    async fn finish(&mut self, buf: &mut BytesMut, link: &mut Link, end: StreamEnd) -> bool {
        match self.deframer.finish(buf) {
            Ok(None) => true,
            Ok(Some((message, truncated))) => {
                let mut batch = Batch::default();
                self.decoder.push(
                    &mut batch,
                    &message,
                    truncated,
                    &self.peer_ip,
                    EventTime::now(),
                );
                if let Err(error) = batch.append(&mut link.ingest).await {
                    link.reject("not_stored", &error.to_string());
                }
                true
            }
            Err(error) if end == StreamEnd::Idle => {
                let reason = format!("idle timeout inside a frame: {}", error.reason);
                link.reject("idle", &reason);
                false
            }
            Err(error) => {
                link.reject(error.kind, &error.reason);
                false
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Framing (RFC 6587)

/// Why a stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FrameError {
    /// `malformed`, `too_large` or `truncated` (the `reason` label of the metric).
    kind: &'static str,
    /// For the log.
    reason: String,
}

/// Digits of an octet count, at most; a longer run is not a count.
const MAX_COUNT_DIGITS: usize = 10;

/// How the frame at the front of the buffer is delimited.
enum Start {
    /// `LEN SP`: the header's length and `LEN`.
    Octets(usize, usize),
    /// Up to the next newline.
    Line,
    /// Not known yet (only digits so far).
    NeedMore,
}

/// Splits a TCP stream into messages; sans I/O.
#[derive(Debug)]
struct Deframer {
    framing: Framing,
    max: usize,
    /// The rest of a line longer than `max` is being skipped, up to its newline.
    discarding: bool,
    /// Bytes at the front of the buffer known to hold no newline (within the current line).
    scanned: usize,
}

/// A message cut from the stream, and whether it was cut at `max_message_size`.
type Framed = (BytesMut, bool);

impl Deframer {
    fn new(framing: Framing, max: usize) -> Self {
        Self {
            framing,
            max,
            discarding: false,
            scanned: 0,
        }
    }

    /// Removes the next whole message from the front of `buf`; `None` when more bytes are
    /// needed. An error means the stream cannot be resynchronised.
    fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Framed>, FrameError> {
        if self.discarding {
            match memchr::memchr(b'\n', buf) {
                Some(end) => {
                    buf.advance(end + 1);
                    self.discarding = false;
                }
                None => {
                    buf.clear();
                    return Ok(None);
                }
            }
        }
        if self.scanned == 0 {
            skip_separators(buf);
        }
        if buf.is_empty() {
            return Ok(None);
        }
        match self.start(buf)? {
            Start::NeedMore => Ok(None),
            Start::Octets(header, len) => {
                if buf.len() < header + len {
                    buf.reserve(header + len - buf.len());
                    return Ok(None);
                }
                buf.advance(header);
                Ok(Some((buf.split_to(len), false)))
            }
            Start::Line => Ok(self.line(buf)),
        }
    }

    /// At the end of the stream (after [`Deframer::next`] returned `None`): the last,
    /// unterminated line, or an error if the stream ended inside an octet-counted frame.
    fn finish(&mut self, buf: &mut BytesMut) -> Result<Option<Framed>, FrameError> {
        self.scanned = 0;
        if std::mem::take(&mut self.discarding) {
            buf.clear();
            return Ok(None);
        }
        skip_separators(buf);
        if buf.is_empty() {
            return Ok(None);
        }
        let truncated = |have: usize, what: String| FrameError {
            kind: "truncated",
            reason: format!("the stream ended inside {what} ({have} bytes dropped)"),
        };
        match self.start(buf)? {
            Start::Octets(header, len) => Err(truncated(
                buf.len(),
                format!(
                    "an octet-counted frame: {} of {len} bytes",
                    buf.len() - header
                ),
            )),
            Start::NeedMore if self.framing == Framing::OctetCounting => {
                Err(truncated(buf.len(), "an octet count".to_owned()))
            }
            Start::NeedMore | Start::Line => {
                let len = buf.len().min(self.max);
                let truncated = buf.len() > self.max;
                let message = buf.split_to(len);
                buf.clear();
                Ok(Some((message, truncated)))
            }
        }
    }

    fn start(&self, buf: &[u8]) -> Result<Start, FrameError> {
        let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
        match self.framing {
            Framing::Newline => Ok(Start::Line),
            Framing::Auto => {
                if digits == 0 {
                    Ok(Start::Line)
                } else if digits == buf.len() {
                    Ok(if digits <= MAX_COUNT_DIGITS {
                        Start::NeedMore
                    } else {
                        Start::Line
                    })
                } else if buf[digits] == b' ' {
                    self.count(buf, digits)
                } else {
                    Ok(Start::Line)
                }
            }
            Framing::OctetCounting => {
                if digits == buf.len() && digits <= MAX_COUNT_DIGITS {
                    Ok(Start::NeedMore)
                } else if digits == 0 || buf.get(digits) != Some(&b' ') {
                    Err(FrameError {
                        kind: "malformed",
                        reason: format!(
                            "expected an octet count and a space (RFC 6587 `LEN SP MSG`), got {}",
                            preview(buf)
                        ),
                    })
                } else {
                    self.count(buf, digits)
                }
            }
        }
    }

    /// Reads the octet count of `digits` digits at the front of `buf`.
    fn count(&self, buf: &[u8], digits: usize) -> Result<Start, FrameError> {
        let text = std::str::from_utf8(&buf[..digits]).expect("ASCII digits");
        let len = if digits > MAX_COUNT_DIGITS {
            None
        } else {
            text.parse::<usize>().ok()
        };
        match len {
            Some(0) => Err(FrameError {
                kind: "malformed",
                reason: "octet count 0: a frame holds at least one byte".to_owned(),
            }),
            Some(len) if len <= self.max => Ok(Start::Octets(digits + 1, len)),
            _ => Err(FrameError {
                kind: "too_large",
                reason: format!(
                    "octet count {} is above max_message_size ({} bytes)",
                    preview(&buf[..digits]),
                    self.max
                ),
            }),
        }
    }

    /// The line at the front of `buf`, cut at `max` bytes; `None` if its newline has not
    /// arrived yet.
    fn line(&mut self, buf: &mut BytesMut) -> Option<Framed> {
        let limit = buf.len().min(self.max + 1);
        let from = self.scanned.min(limit);
        if let Some(at) = memchr::memchr(b'\n', &buf[from..limit]) {
            self.scanned = 0;
            let message = buf.split_to(from + at);
            buf.advance(1);
            return Some((message, false));
        }
        if buf.len() > self.max {
            self.scanned = 0;
            self.discarding = true;
            return Some((buf.split_to(self.max), true));
        }
        self.scanned = buf.len();
        None
    }
}

/// Drops the newlines, carriage returns and NULs between frames.
fn skip_separators(buf: &mut BytesMut) {
    let gap = buf
        .iter()
        .take_while(|b| matches!(b, b'\n' | b'\r' | b'\0'))
        .count();
    buf.advance(gap);
}

/// The first bytes of `bytes`, quoted, for error messages.
fn preview(bytes: &[u8]) -> String {
    const SHOWN: usize = 24;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN)]);
    if bytes.len() > SHOWN {
        format!("{text:?}…")
    } else {
        format!("{text:?}")
    }
}

// ---------------------------------------------------------------------------------------------
// Messages to events

/// Turns messages into events; shared by the connections of one source.
#[derive(Debug)]
struct Decoder {
    source: Arc<str>,
    tag: TagTemplate,
    time: TimeParser,
    malformed: Counter,
    truncated: Counter,
}

impl Decoder {
    /// Parses one message into an event of `batch`.
    fn push(
        &self,
        batch: &mut Batch,
        bytes: &[u8],
        truncated: bool,
        peer_ip: &str,
        received: EventTime,
    ) {
        let (text, utf8) = match std::str::from_utf8(bytes) {
            Ok(text) => (Cow::Borrowed(text), true),
            Err(_) => (String::from_utf8_lossy(bytes), false),
        };
        let line = text.trim_end_matches(['\n', '\r', '\0']);
        let mut errors = Vec::new();
        let (tag, mut fields, time) = match parse_line(line) {
            Ok(message) => {
                let tag = self.tag.render(Some(&message));
                let time = match message.timestamp {
                    None => received,
                    Some(ts) => self.time.parse(ts).unwrap_or_else(|| {
                        errors.push(format!(
                            "timestamp {ts:?} not understood; the receive time is used"
                        ));
                        received
                    }),
                };
                let host = message.hostname.map(Value::from);
                let mut fields = message.into_fields();
                if let Some(host) = host {
                    fields.push(("host".to_owned(), host));
                }
                (tag, fields, time)
            }
            Err(reason) => {
                errors.push(reason);
                (
                    self.tag.render(None),
                    vec![("message".to_owned(), Value::from(line))],
                    received,
                )
            }
        };
        fields.push(("source_address".to_owned(), Value::from(peer_ip)));
        if !utf8 {
            errors.push("not UTF-8; invalid bytes replaced".to_owned());
        }
        if truncated {
            self.truncated.increment(1);
            fields.push(("truncated".to_owned(), Value::Bool(true)));
        }
        if !errors.is_empty() {
            self.malformed.increment(1);
            fields.push(("parse_error".to_owned(), Value::from(errors.join("; "))));
        }
        let event = Event {
            time,
            record: Record::from(fields),
            metadata: None,
        };
        batch.push(tag, &event, bytes.len());
    }
}

/// The events of one read (or of the datagrams waiting together), by tag.
#[derive(Debug, Default)]
struct Batch {
    groups: Vec<Group>,
    /// Message bytes taken.
    bytes: usize,
}

#[derive(Debug)]
struct Group {
    tag: String,
    count: u32,
    entries: Vec<u8>,
}

impl Batch {
    fn push(&mut self, tag: Cow<'_, str>, event: &Event, size: usize) {
        self.bytes += size;
        let group = match self.groups.iter().rposition(|g| g.tag == tag) {
            Some(at) => &mut self.groups[at],
            None => {
                self.groups.push(Group {
                    tag: tag.into_owned(),
                    count: 0,
                    entries: Vec::with_capacity(4096),
                });
                self.groups.last_mut().expect("just pushed")
            }
        };
        group.count += 1;
        event.write_entry(&mut group.entries);
    }

    /// Appends each tag's events; waits while the log is full.
    async fn append(self, ingest: &mut Ingest) -> Result<(), IngestError> {
        for group in self.groups {
            ingest
                .append(&group.tag, None, group.count, &group.entries)
                .await?;
        }
        Ok(())
    }
}

/// A tag with `{facility}`, `{severity}`, `{app_name}` and `{hostname}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TagTemplate(crate::tag_template::TagTemplate<TagPart>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagPart {
    Facility,
    Severity,
    AppName,
    Hostname,
}

impl TagTemplate {
    fn parse(text: &str) -> Result<Self, String> {
        crate::tag_template::TagTemplate::parse(text, |name| match name {
            "facility" => Ok(TagPart::Facility),
            "severity" => Ok(TagPart::Severity),
            "app_name" => Ok(TagPart::AppName),
            "hostname" => Ok(TagPart::Hostname),
            other => Err(format!(
                "unknown placeholder {{{other}}}; expected {{facility}}, {{severity}}, \
                 {{app_name}} or {{hostname}}"
            )),
        })
        .map(Self)
    }

    /// The tag of `message` (`None`: a message that did not parse).
    fn render(&self, message: Option<&SyslogMessage<'_>>) -> Cow<'_, str> {
        self.0.render(|part| {
            let value = match part {
                TagPart::Facility => message
                    .and_then(|m| m.facility)
                    .map(|f| FACILITY_NAMES[usize::from(f)]),
                TagPart::Severity => message
                    .and_then(|m| m.severity)
                    .map(|s| SEVERITY_NAMES[usize::from(s)]),
                TagPart::AppName => message.and_then(|m| m.app_name),
                TagPart::Hostname => message.and_then(|m| m.hostname),
            };
            value.map(Cow::Borrowed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(
        framing: Framing,
        max: usize,
        chunks: &[&[u8]],
    ) -> (Vec<(String, bool)>, Option<FrameError>) {
        let mut deframer = Deframer::new(framing, max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let text = |(m, t): Framed| (String::from_utf8_lossy(&m).into_owned(), t);
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match deframer.next(&mut buf) {
                    Ok(Some(framed)) => out.push(text(framed)),
                    Ok(None) => break,
                    Err(error) => return (out, Some(error)),
                }
            }
        }
        match deframer.finish(&mut buf) {
            Ok(Some(framed)) => out.push(text(framed)),
            Ok(None) => {}
            Err(error) => return (out, Some(error)),
        }
        (out, None)
    }

    fn whole(messages: &[&str]) -> Vec<(String, bool)> {
        messages.iter().map(|m| ((*m).to_owned(), false)).collect()
    }

    #[test]
    fn auto_framing_reads_octet_counts_and_lines_byte_by_byte() {
        let stream = b"5 <13>a3 xyz\n<13>line one\r\n\n<13>line two\n11 <13>1 - - -2024-01-01 not a count\nlast";
        let expected = whole(&[
            "<13>a",
            "xyz",
            "<13>line one\r",
            "<13>line two",
            "<13>1 - - -",
            "2024-01-01 not a count",
            "last",
        ]);
        let (all, error) = frames(Framing::Auto, 1024, &[stream]);
        assert_eq!((all, error), (expected.clone(), None));
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        let (split, error) = frames(Framing::Auto, 1024, &bytes);
        assert_eq!((split, error), (expected, None));
    }

    #[test]
    fn octet_counting_rejects_what_is_not_a_count() {
        let (got, error) = frames(Framing::OctetCounting, 100, &[b"3 abc<13>hello\n"]);
        assert_eq!(got, whole(&["abc"]));
        assert_eq!(error.unwrap().kind, "malformed");
        let (_, error) = frames(Framing::OctetCounting, 100, &[b"0 x"]);
        assert_eq!(error.unwrap().kind, "malformed");
        let (_, error) = frames(Framing::OctetCounting, 100, &[b"101 x"]);
        assert_eq!(error.unwrap().kind, "too_large");
        let (_, error) = frames(Framing::Auto, 100, &[b"99999999999999999999 x"]);
        assert_eq!(error.unwrap().kind, "too_large");
        let (got, error) = frames(Framing::OctetCounting, 100, &[b"3 abc10 <13>x"]);
        assert_eq!(got, whole(&["abc"]));
        let error = error.unwrap();
        assert_eq!(error.kind, "truncated");
        assert!(error.reason.contains("5 of 10 bytes"), "{}", error.reason);
        let (_, error) = frames(Framing::OctetCounting, 100, &[b"12"]);
        assert_eq!(error.unwrap().kind, "truncated");
        // In auto mode digits alone at the end are a line.
        let (got, error) = frames(Framing::Auto, 100, &[b"12"]);
        assert_eq!((got, error), (whole(&["12"]), None));
    }

    #[test]
    fn newline_framing_cuts_long_lines_and_carries_on() {
        let (got, error) = frames(
            Framing::Newline,
            8,
            &[b"12345678\n123456789abc", b"def\nshort\n", b"0123456789"],
        );
        assert_eq!(error, None);
        assert_eq!(
            got,
            vec![
                ("12345678".to_owned(), false),
                ("12345678".to_owned(), true),
                ("short".to_owned(), false),
                ("01234567".to_owned(), true),
            ]
        );
        // Newline framing never reads counts.
        let (got, _) = frames(Framing::Newline, 100, &[b"3 abc\n"]);
        assert_eq!(got, whole(&["3 abc"]));
    }

    #[test]
    fn tag_templates() {
        let t = TagTemplate::parse("syslog.{facility}.{severity}").unwrap();
        let m = parse_line("<131>1 - host my.app - - - hi").unwrap();
        assert_eq!(t.render(Some(&m)), "syslog.local0.err");
        assert_eq!(t.render(None), "syslog.unknown.unknown");
        let t = TagTemplate::parse("s.{app_name}@{hostname}").unwrap();
        assert_eq!(t.render(Some(&m)), "s.my_app@host");
        assert!(matches!(
            TagTemplate::parse("syslog").unwrap().render(None),
            Cow::Borrowed("syslog")
        ));
        assert!(
            TagTemplate::parse("x.{nope}")
                .unwrap_err()
                .contains("unknown placeholder {nope}")
        );
        assert!(TagTemplate::parse("x.{app_name").is_err());
        assert!(TagTemplate::parse("").is_err());
    }
}
