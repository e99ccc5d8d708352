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
//! With `tls`, the TCP listener speaks TLS (Fluentd's `<transport tls>`); the UDP socket on the
//! same port answers Fluentd's heartbeat datagrams either way.
//!
//! Accepting, TLS and the connection loop are the network layer's (`crate::net`); this module
//! is the Forward protocol: frames to appends, and acknowledgements.

mod config;
pub use config::ForwardSourceConfig;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use flumen_codec::forward::{Decoded, FrameDecoder, Limits, UDP_HEARTBEAT_REPLY, encode_ack};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::{Ingest, IngestError, SourceShared, stopped};
use crate::ingest::IngestCounters;
use crate::net::{
    Closing, ConnectionLimits, FrameProtocol, FramedConnection, Link, Listener, StreamEnd,
};

/// A bound Forward source, ready to run.
#[derive(Debug)]
pub struct ForwardSource {
    name: Arc<str>,
    label: String,
    limits: Limits,
    connection_limits: ConnectionLimits,
    tcp: Listener,
    udp: UdpSocket,
}

impl ForwardSource {
    /// Reads the TLS certificate files, if any, then binds the TCP listener and the UDP
    /// heartbeat socket.
    pub async fn bind(name: &str, config: &ForwardSourceConfig) -> std::io::Result<Self> {
        let (tcp, udp) = Listener::bind_with_udp(config.address, config.tls.as_ref()).await?;
        Ok(Self {
            name: name.into(),
            label: config.label.clone(),
            limits: Limits {
                max_frame_size: config.max_frame_size.as_u64() as usize,
            },
            connection_limits: ConnectionLimits {
                max_age: config.max_connection_age,
                idle_timeout: config.idle_timeout,
            },
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
    pub async fn run(self, shared: SourceShared, shutdown: watch::Receiver<bool>) {
        let (name, label, limits) = (self.name.clone(), self.label, self.limits);
        let connection_limits = self.connection_limits;
        let counters = IngestCounters::new(&name);
        let connect = move |peer: &crate::net::Peer| {
            let ingest =
                Ingest::counted(counters.clone(), &label, &shared).from_peer(peer.address.ip());
            let protocol = ForwardProtocol {
                decoder: FrameDecoder::new(limits),
            };
            FramedConnection::new(name.clone(), peer, protocol, ingest, connection_limits)
        };
        let connections = self.tcp.serve(&self.name, None, shutdown.clone(), connect);
        tokio::join!(connections, answer_heartbeats(&self.udp, shutdown));
    }
}

/// Answers Fluentd's UDP heartbeats until `stop` turns true.
async fn answer_heartbeats(udp: &UdpSocket, mut stop: watch::Receiver<bool>) {
    let mut datagram = [0u8; 64];
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            received = udp.recv_from(&mut datagram) => {
                if let Ok((_, peer)) = received {
                    let _ = udp.send_to(UDP_HEARTBEAT_REPLY, peer).await;
                }
            }
        }
    }
}

/// The Forward protocol of one connection.
struct ForwardProtocol {
    /// Remembers how far a partial frame was scanned, so a large frame sent in small pieces
    /// is scanned once.
    decoder: FrameDecoder,
}

impl FrameProtocol for ForwardProtocol {
    const NAME: &'static str = "forward";
    const READ_BUFFER: usize = 256 * 1024;

    /// Decodes and appends every whole frame at the front of `buf`.
    async fn take_frames(&mut self, buf: &mut BytesMut, link: &mut Link) -> Result<(), Closing> {
        loop {
            let (frame, used) = match self.decoder.decode(buf) {
                Ok(Some((Decoded::Frame(frame), used))) => (frame, used),
                Ok(Some((Decoded::Heartbeat, used))) => {
                    buf.advance(used);
                    continue;
                }
                Ok(None) => return Ok(()),
                Err(error) => {
                    link.reject(error.kind(), &error.to_string());
                    return Err(Closing);
                }
            };
            let stored = link
                .ingest
                .append(frame.tag, frame.chunk, frame.count, &frame.entries)
                .await;
            match stored {
                Ok(ack) => {
                    if let Some(chunk) = frame.chunk {
                        link.acks.push_back((chunk.to_vec(), ack));
                    }
                }
                // A frame that cannot be stored (a chunk id or tag too long) is refused on its
                // own: it is not acknowledged, and the connection's other frames go on.
                Err(IngestError::Rejected(reason)) => {
                    crate::net::count_rejected(link.source(), "refused");
                    tracing::warn!(message = "Refusing a forward frame.", source = %link.source(), peer = %link.peer(), %reason);
                }
                Err(error) => {
                    link.reject("not_stored", &error.to_string());
                    return Err(Closing);
                }
            }
            buf.advance(used);
        }
    }

    /// A frame left unfinished is dropped, with a warning; the close still counts as retired
    /// when the connection was idle.
    async fn finish(&mut self, buf: &mut BytesMut, link: &mut Link, end: StreamEnd) -> bool {
        if !buf.is_empty() {
            match end {
                StreamEnd::Closed => link.reject(
                    "truncated",
                    &format!(
                        "the connection closed inside a frame ({} bytes dropped)",
                        buf.len()
                    ),
                ),
                StreamEnd::Idle => link.reject(
                    "idle",
                    &format!(
                        "no bytes for the idle timeout inside a frame ({} bytes dropped)",
                        buf.len()
                    ),
                ),
            }
        }
        true
    }

    fn encode_ack(&self, chunk: &[u8], out: &mut Vec<u8>) {
        encode_ack(chunk, out);
    }
}
