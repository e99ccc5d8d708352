//! The Forward protocol source: what the Docker fluentd driver, Fluent Bit, Fluentd and the
//! fluent-logger libraries send to.
//!
//! One task per connection, so a slow or broken sender never stalls another, and connections
//! spread over every core. A connection reads frames, appends each to the log, and answers
//! `{"ack": chunk}` for frames that asked, in order, once the log says the frame is durable —
//! while it keeps reading. When the log's queue is full, appending waits, so the connection
//! stops reading and TCP pushes back on the sender. A malformed or oversized frame closes the
//! connection with a logged reason; acknowledgements already due are sent first.
//!
//! With `max_connection_age`, a connection closes gracefully once it is that old: at the next
//! frame boundary, after acknowledging what it read, so that long-lived senders reconnect and a
//! load balancer can move them to new instances. `idle_timeout` closes silent connections.
//!
//! The UDP socket on the same port answers Fluentd's heartbeat datagrams.

mod config;
pub use config::ForwardSourceConfig;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use flumen_codec::forward::{Decoded, FrameDecoder, Limits, UDP_HEARTBEAT_REPLY, encode_ack};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Ingest, IngestError, SourceShared, far_future, stopped};
use crate::ingest::chunks::AckQueue;

/// A bound Forward source, ready to run.
#[derive(Debug)]
pub struct ForwardSource {
    name: Arc<str>,
    label: String,
    limits: Limits,
    max_connection_age: Option<Duration>,
    idle_timeout: Option<Duration>,
    tcp: TcpListener,
    udp: UdpSocket,
}

/// Binds a TCP listener and a UDP socket on the same port. With port 0 the kernel picks a TCP
/// port that may be taken for UDP; then another port is tried, a few times.
async fn bind_tcp_and_udp(address: SocketAddr) -> std::io::Result<(TcpListener, UdpSocket)> {
    let mut attempts = 0;
    loop {
        let tcp = TcpListener::bind(address).await?;
        match UdpSocket::bind(tcp.local_addr()?).await {
            Ok(udp) => return Ok((tcp, udp)),
            Err(error) if address.port() == 0 && attempts < 8 => {
                tracing::debug!(message = "The UDP port is taken; trying another.", %error);
                attempts += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

impl ForwardSource {
    /// Binds the TCP listener and the UDP heartbeat socket.
    pub async fn bind(name: &str, config: &ForwardSourceConfig) -> std::io::Result<Self> {
        let (tcp, udp) = bind_tcp_and_udp(config.address).await?;
        Ok(Self {
            name: name.into(),
            label: config.label.clone(),
            limits: Limits {
                max_frame_size: config.max_frame_size.as_u64() as usize,
            },
            max_connection_age: config.max_connection_age,
            idle_timeout: config.idle_timeout,
            tcp,
            udp,
        })
    }

    /// The bound TCP address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Accepts connections until `shutdown` turns true, then lets every connection finish the
    /// frames it has read and send their acknowledgements.
    pub async fn run(self, shared: SourceShared, mut shutdown: watch::Receiver<bool>) {
        let mut connections = JoinSet::new();
        let mut datagram = [0u8; 64];
        let open = metrics::gauge!("flumen_source_connections", "source" => self.name.to_string());
        loop {
            tokio::select! {
                _ = stopped(&mut shutdown) => break,
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let ingest = Ingest::new(&self.name, &self.label, &shared).from_peer(peer.ip());
                        let connection = Connection {
                            source: self.name.clone(),
                            peer,
                            decoder: FrameDecoder::new(self.limits),
                            max_age: self.max_connection_age,
                            idle_timeout: self.idle_timeout,
                            ingest,
                        };
                        let open = open.clone();
                        let shutdown = shutdown.clone();
                        open.increment(1.0);
                        connections.spawn(async move {
                            connection.serve(stream, shutdown).await;
                            open.decrement(1.0);
                        });
                    }
                    Err(error) => {
                        tracing::warn!(message = "Failed to accept a forward connection.", source = %self.name, %error);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                received = self.udp.recv_from(&mut datagram) => {
                    if let Ok((_, peer)) = received {
                        let _ = self.udp.send_to(UDP_HEARTBEAT_REPLY, peer).await;
                    }
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(self.tcp);
        while connections.join_next().await.is_some() {}
    }
}

struct Connection {
    source: Arc<str>,
    peer: SocketAddr,
    /// Remembers how far a partial frame was scanned, so a large frame sent in small pieces
    /// is scanned once.
    decoder: FrameDecoder,
    max_age: Option<Duration>,
    idle_timeout: Option<Duration>,
    ingest: Ingest,
}

impl Connection {
    async fn serve(mut self, stream: TcpStream, mut shutdown: watch::Receiver<bool>) {
        let (mut rd, mut wr) = stream.into_split();
        let mut buf = BytesMut::with_capacity(256 * 1024);
        let mut pending = AckQueue::default();
        let mut out = Vec::new();
        let far = far_future();
        let retire_at = self.max_age.map_or(far, |age| Instant::now() + age);
        // Past its maximum age the connection closes at the next frame boundary, once every
        // frame it read is acknowledged, so the sender reconnects (through its load balancer).
        let mut retiring = false;
        let mut idle_at = self.idle_timeout.map_or(far, |t| Instant::now() + t);
        loop {
            if buf.capacity() - buf.len() < 64 * 1024 {
                buf.reserve(256 * 1024);
            }
            // Lines a multiline filter holds are stored when their flush timeout passes.
            let flush_at = self.ingest.next_flush().unwrap_or(far);
            tokio::select! {
                biased;
                durable = async { pending.front_mut().expect("non-empty").1.durable().await }, if !pending.is_empty() => {
                    let was_full = pending.is_full();
                    let (chunk, _) = pending.pop_front().expect("non-empty");
                    // Reading resumes: the time spent not reading does not count as idle.
                    if was_full && let Some(timeout) = self.idle_timeout {
                        idle_at = Instant::now() + timeout;
                    }
                    // A sender that does not read its acknowledgements blocks this write, and
                    // with it the stop; the server aborts such a connection at its shutdown
                    // deadline. Racing the write against the stop instead would drop acks of
                    // stored frames that could have gone out at once.
                    if !self.answer(&mut wr, &mut out, &chunk, durable).await {
                        return;
                    }
                }
                _ = stopped(&mut shutdown) => break,
                _ = tokio::time::sleep_until(flush_at.into()) => {
                    if let Err(error) = self.ingest.flush_due().await {
                        self.reject("not_stored", &error.to_string());
                        break;
                    }
                }
                _ = tokio::time::sleep_until(retire_at.into()), if !retiring => {
                    retiring = true;
                    self.retired("max_age");
                    if buf.is_empty() {
                        break;
                    }
                }
                // Not reading while acknowledgements back up is no sign of an idle sender.
                _ = tokio::time::sleep_until(idle_at.into()), if !pending.is_full() => {
                    if !buf.is_empty() {
                        self.reject("idle", &format!("no bytes for the idle timeout inside a frame ({} bytes dropped)", buf.len()));
                    }
                    self.retired("idle");
                    break;
                }
                // Waiting acknowledgements are bounded in bytes: past the bound, no new frames
                // are read until some go out, and TCP pushes back on the sender.
                read = rd.read_buf(&mut buf), if !pending.is_full() => match read {
                    Ok(0) => {
                        if !buf.is_empty() {
                            self.reject("truncated", &format!("the connection closed inside a frame ({} bytes dropped)", buf.len()));
                        }
                        break;
                    }
                    Ok(_) => {
                        if let Some(timeout) = self.idle_timeout {
                            idle_at = Instant::now() + timeout;
                        }
                        if self.take_frames(&mut buf, &mut pending).await.is_err() || (retiring && buf.is_empty()) {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::debug!(message = "Forward connection read failed.", source = %self.source, peer = %self.peer, %error);
                        break;
                    }
                },
            }
        }
        // Whatever was read is stored, held lines included, and acknowledged before the
        // connection closes.
        if let Err(error) = self.ingest.flush_all().await {
            self.reject("not_stored", &error.to_string());
        }
        while let Some((chunk, mut ack)) = pending.pop_front() {
            let durable = ack.durable().await;
            if !self.answer(&mut wr, &mut out, &chunk, durable).await {
                return;
            }
        }
        let _ = wr.shutdown().await;
    }

    /// Counts a connection closed on purpose (not for an error).
    fn retired(&self, reason: &'static str) {
        metrics::counter!("flumen_source_connections_retired_total", "source" => self.source.to_string(), "reason" => reason)
            .increment(1);
        tracing::debug!(message = "Closing a forward connection.", source = %self.source, peer = %self.peer, reason);
    }

    /// Counts and logs a refused frame; the caller closes the connection.
    fn reject(&self, kind: &'static str, reason: &str) {
        metrics::counter!("flumen_source_rejected_total", "source" => self.source.to_string(), "reason" => kind)
            .increment(1);
        tracing::warn!(message = "Closing a forward connection.", source = %self.source, peer = %self.peer, %reason);
    }

    /// Sends the acknowledgement for one frame once it is durable; false if the connection is
    /// unusable (or the frame could not be made durable: the sender gets no ack and resends).
    async fn answer(
        &self,
        wr: &mut tokio::net::tcp::OwnedWriteHalf,
        out: &mut Vec<u8>,
        chunk: &[u8],
        durable: bool,
    ) -> bool {
        if !durable {
            tracing::error!(message = "A chunk could not be made durable; not acknowledging it.", source = %self.source);
            return false;
        }
        out.clear();
        encode_ack(chunk, out);
        wr.write_all(out).await.is_ok()
    }

    /// Decodes and appends every whole frame at the front of `buf`.
    async fn take_frames(
        &mut self,
        buf: &mut BytesMut,
        pending: &mut AckQueue,
    ) -> Result<(), String> {
        loop {
            let (frame, used) = match self.decoder.decode(buf) {
                Ok(Some((Decoded::Frame(frame), used))) => (frame, used),
                Ok(Some((Decoded::Heartbeat, used))) => {
                    buf.advance(used);
                    continue;
                }
                Ok(None) => return Ok(()),
                Err(error) => {
                    self.reject(error.kind(), &error.to_string());
                    return Err(error.to_string());
                }
            };
            let stored = self
                .ingest
                .append(frame.tag, frame.chunk, frame.count, &frame.entries)
                .await;
            match stored {
                Ok(ack) => {
                    if let Some(chunk) = frame.chunk {
                        pending.push_back((chunk.to_vec(), ack));
                    }
                }
                // A frame that cannot be stored (a chunk id or tag too long) is refused on its
                // own: it is not acknowledged, and the connection's other frames go on.
                Err(IngestError::Rejected(reason)) => {
                    metrics::counter!("flumen_source_rejected_total", "source" => self.source.to_string(), "reason" => "refused")
                        .increment(1);
                    tracing::warn!(message = "Refusing a forward frame.", source = %self.source, peer = %self.peer, %reason);
                }
                Err(error) => {
                    self.reject("not_stored", &error.to_string());
                    return Err(error.to_string());
                }
            }
            buf.advance(used);
        }
    }
}
