//! The framed-stream driver: the one connection loop of the stream sources (Forward, syslog
//! over TCP and TLS).
//!
//! A [`FramedConnection`] reads the stream into a buffer and hands the bytes to its
//! [`FrameProtocol`], which takes the whole frames at the front of the buffer and appends them
//! through the connection's [`Ingest`]. The driver owns everything else: the read buffer, the
//! idle timeout and the maximum age, the flush timer of lines a filter holds, the
//! acknowledgements queued by the protocol (sent in order once each frame is durable, while
//! reading goes on), the stop at a frame boundary, and the counters and log lines of a closing
//! connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::Peer;
use crate::ingest::chunks::AckQueue;
use crate::{Ingest, far_future, stopped};

/// Why the sender stopped sending, when the protocol is asked to [`finish`] its frames.
///
/// [`finish`]: FrameProtocol::finish
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The sender closed the stream.
    Closed,
    /// Nothing arrived for the idle timeout.
    Idle,
}

/// The connection must close; the protocol has counted and logged why (with [`Link::reject`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closing;

/// What a protocol speaks: how frames are cut from the stream and what each becomes. The
/// protocol is sans I/O except for appending through the [`Link`].
pub trait FrameProtocol: Send + 'static {
    /// The protocol's name in log lines (`"forward"`: "Closing a forward connection.").
    const NAME: &'static str;
    /// Bytes the read buffer grows by; it grows again once less than a quarter is free.
    const READ_BUFFER: usize;

    /// Takes (removes and appends) every whole frame at the front of `buf`. Frames that ask
    /// for an acknowledgement go into [`Link::acks`].
    fn take_frames(
        &mut self,
        buf: &mut BytesMut,
        link: &mut Link,
    ) -> impl Future<Output = Result<(), Closing>> + Send;

    /// The sender stopped (`end`) after every whole frame was taken; `buf` holds what is left.
    /// True when the connection ends cleanly (then an idle one is counted as retired).
    fn finish(
        &mut self,
        buf: &mut BytesMut,
        link: &mut Link,
        end: StreamEnd,
    ) -> impl Future<Output = bool> + Send;

    /// Encodes the acknowledgement of the frame that carried `chunk`. Only called for what the
    /// protocol put in [`Link::acks`]; a protocol without acknowledgements queues none.
    fn encode_ack(&self, _chunk: &[u8], _out: &mut Vec<u8>) {}
}

/// What a protocol sees of its connection: the append path, the acknowledgements it owes, and
/// the connection's name for metrics and logs.
#[derive(Debug)]
pub struct Link {
    /// The source's name.
    source: Arc<str>,
    /// The sender's address.
    peer: SocketAddr,
    /// The protocol's name, for log lines.
    protocol: &'static str,
    /// Where frames are appended.
    pub ingest: Ingest,
    /// Appended frames whose acknowledgement is sent once they are durable, in order.
    pub acks: AckQueue,
}

impl Link {
    /// The source's name.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The sender's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Counts (in `flumen_source_rejected_total{reason=kind}`) and logs why the connection
    /// closes; the caller closes it.
    pub fn reject(&self, kind: &'static str, reason: &str) {
        count_rejected(&self.source, kind);
        log_closing(&self.source, self.protocol, self.peer, kind, reason);
    }

    /// Counts and logs a connection closed on purpose (not for an error).
    fn retired(&self, reason: &'static str) {
        metrics::counter!("flumen_source_connections_retired_total", "source" => self.source.to_string(), "reason" => reason)
            .increment(1);
        tracing::debug!(message = %format!("Closing a {} connection.", self.protocol), source = %self.source, peer = %self.peer, reason);
    }
}

/// Logs why a connection of `source` closes (a warning: something went wrong).
pub(super) fn log_closing(
    source: &str,
    protocol: &str,
    peer: SocketAddr,
    kind: &'static str,
    reason: &str,
) {
    tracing::warn!(message = %format!("Closing a {protocol} connection."), source = %source, peer = %peer, kind, %reason);
}

/// Counts a refused frame, request or connection of `source`.
pub(crate) fn count_rejected(source: &str, reason: &'static str) {
    metrics::counter!("flumen_source_rejected_total", "source" => source.to_owned(), "reason" => reason)
        .increment(1);
}

/// When a connection closes on its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectionLimits {
    /// Close gracefully once this old: at the next frame boundary, after acknowledging what it
    /// read, so that the sender reconnects (through its load balancer).
    pub max_age: Option<Duration>,
    /// Close once nothing arrived for this long.
    pub idle_timeout: Option<Duration>,
}

/// One connection of a stream source, driven from its first byte to its close.
#[derive(Debug)]
pub struct FramedConnection<P> {
    protocol: P,
    link: Link,
    limits: ConnectionLimits,
}

impl<P: FrameProtocol> FramedConnection<P> {
    /// A connection of `source` from `peer`, speaking `protocol`, appending through `ingest`.
    pub fn new(
        source: Arc<str>,
        peer: &Peer,
        protocol: P,
        ingest: Ingest,
        limits: ConnectionLimits,
    ) -> Self {
        let link = Link {
            source,
            peer: peer.address,
            protocol: P::NAME,
            ingest,
            acks: AckQueue::default(),
        };
        Self {
            protocol,
            link,
            limits,
        }
    }

    /// Reads, takes frames and acknowledges until the sender stops, a limit closes the
    /// connection, a frame cannot be read on, or `stop` turns true; then stores what was read
    /// (held lines included), sends the acknowledgements still due and closes.
    pub async fn serve<S>(mut self, mut stream: S, mut stop: watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut buf = BytesMut::with_capacity(P::READ_BUFFER);
        let mut out = Vec::new();
        let far = far_future();
        let retire_at = self.limits.max_age.map_or(far, |age| Instant::now() + age);
        // Past its maximum age the connection closes at the next frame boundary, once every
        // frame it read is acknowledged.
        let mut retiring = false;
        let idle_deadline = |timeout: Option<Duration>| timeout.map(|t| Instant::now() + t);
        let mut idle_at = idle_deadline(self.limits.idle_timeout).unwrap_or(far);
        loop {
            if buf.capacity() - buf.len() < P::READ_BUFFER / 4 {
                buf.reserve(P::READ_BUFFER);
            }
            // Lines a multiline filter holds are stored when their flush timeout passes.
            let flush_at = self.link.ingest.next_flush().unwrap_or(far);
            let acks = &mut self.link.acks;
            tokio::select! {
                biased;
                durable = async { acks.front_mut().expect("non-empty").1.durable().await }, if !acks.is_empty() => {
                    let was_full = self.link.acks.is_full();
                    let (chunk, _) = self.link.acks.pop_front().expect("non-empty");
                    // Reading resumes: the time spent not reading does not count as idle.
                    if was_full && let Some(deadline) = idle_deadline(self.limits.idle_timeout) {
                        idle_at = deadline;
                    }
                    // A sender that does not read its acknowledgements blocks this write, and
                    // with it the stop; the server aborts such a connection at its shutdown
                    // deadline. Racing the write against the stop instead would drop acks of
                    // stored frames that could have gone out at once.
                    if !self.answer(&mut stream, &mut out, &chunk, durable).await {
                        return;
                    }
                }
                _ = stopped(&mut stop) => break,
                _ = tokio::time::sleep_until(flush_at.into()) => {
                    if let Err(error) = self.link.ingest.flush_due().await {
                        self.link.reject("not_stored", &error.to_string());
                        break;
                    }
                }
                _ = tokio::time::sleep_until(retire_at.into()), if !retiring => {
                    retiring = true;
                    self.link.retired("max_age");
                    if buf.is_empty() {
                        break;
                    }
                }
                // Not reading while acknowledgements back up is no sign of an idle sender.
                _ = tokio::time::sleep_until(idle_at.into()), if !acks.is_full() => {
                    if self.protocol.finish(&mut buf, &mut self.link, StreamEnd::Idle).await {
                        self.link.retired("idle");
                    }
                    break;
                }
                // Waiting acknowledgements are bounded in bytes: past the bound, no new frames
                // are read until some go out, and TCP pushes back on the sender.
                read = stream.read_buf(&mut buf), if !acks.is_full() => match read {
                    Ok(0) => {
                        self.protocol.finish(&mut buf, &mut self.link, StreamEnd::Closed).await;
                        break;
                    }
                    Ok(_) => {
                        if let Some(deadline) = idle_deadline(self.limits.idle_timeout) {
                            idle_at = deadline;
                        }
                        let taken = self.protocol.take_frames(&mut buf, &mut self.link).await;
                        if taken.is_err() || (retiring && buf.is_empty()) {
                            break;
                        }
                    }
                    // A TLS peer that closes without close_notify.
                    Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                        self.protocol.finish(&mut buf, &mut self.link, StreamEnd::Closed).await;
                        break;
                    }
                    Err(error) => {
                        tracing::debug!(message = %format!("A {} connection read failed.", P::NAME), source = %self.link.source, peer = %self.link.peer, %error);
                        break;
                    }
                },
            }
        }
        // Whatever was read is stored, held lines included, and acknowledged before the
        // connection closes.
        if let Err(error) = self.link.ingest.flush_all().await {
            self.link.reject("not_stored", &error.to_string());
        }
        while let Some((chunk, mut ack)) = self.link.acks.pop_front() {
            let durable = ack.durable().await;
            if !self.answer(&mut stream, &mut out, &chunk, durable).await {
                return;
            }
        }
        let _ = stream.shutdown().await;
    }

    /// Sends the acknowledgement of one frame once it is durable; false if the connection is
    /// unusable (or the frame could not be made durable: the sender gets no ack and resends).
    async fn answer<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        out: &mut Vec<u8>,
        chunk: &[u8],
        durable: bool,
    ) -> bool {
        if !durable {
            tracing::error!(message = "A chunk could not be made durable; not acknowledging it.", source = %self.link.source);
            return false;
        }
        out.clear();
        self.protocol.encode_ack(chunk, out);
        stream.write_all(out).await.is_ok()
    }
}
