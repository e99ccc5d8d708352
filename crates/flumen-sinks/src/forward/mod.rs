//! The forward output: PackedForward chunks to Fluentd, Fluent Bit or another flumen.
//!
//! With `require_ack` (the default), every batch of the log travels as one chunk whose `chunk`
//! id is derived from this output's identity and the batch's position in the log, and the
//! delivery only succeeds once each id comes back; a missing or wrong answer within
//! `ack_timeout` fails the chunks not acknowledged yet, and the driver resends those — even
//! after a restart — with the same ids and the same events, so a receiver that remembers ids
//! (flumen does) stores them once. Without acks, consecutive batches with the same tag are
//! merged into one chunk. Servers are chosen by weight among those that are up; a server that
//! fails is left alone for `recover_wait` and the delivery moves on to the next (failover);
//! `standby` servers are used only when no other is up.

mod config;
pub use config::{ForwardOutputConfig, ForwardServerConfig};

use std::time::{Duration, Instant};

use base64::Engine;
use bytes::{Buf, BytesMut};
use flumen_codec::forward::{Compression, decode_ack, encode_packed_forward};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::FileCompression;
use crate::{Delivery, DeliveryError, Items, Outcome, fnv1a};

/// The most entry bytes merged into one chunk.
const MAX_CHUNK_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug)]
struct Server {
    address: String,
    weight: u32,
    standby: bool,
    connection: Option<TcpStream>,
    down_until: Option<Instant>,
}

impl Server {
    fn is_up(&self) -> bool {
        self.down_until.is_none_or(|until| Instant::now() >= until)
    }
}

/// Sends events over the Forward protocol.
#[derive(Debug)]
pub struct ForwardSink {
    servers: Vec<Server>,
    require_ack: bool,
    ack_timeout: Duration,
    connect_timeout: Duration,
    recover_wait: Duration,
    compression: Compression,
    /// Prefix of chunk ids: unique to this node and output, the same after a restart.
    chunk_prefix: [u8; 8],
}

/// The chunk being filled while a delivery is encoded.
struct OpenChunk {
    tag: String,
    first_seq: u64,
    last_seq: u64,
    count: u32,
}

/// Encoded chunks of one delivery: the bytes to send and the ack each chunk waits for, with
/// the number of the delivery's events up to the end of the chunk.
struct Chunks {
    bytes: Vec<u8>,
    acks: Vec<(String, u64)>,
}

/// A send that failed after the first `acked` chunks were acknowledged.
struct SendFailure {
    acked: usize,
    message: String,
}

impl From<String> for SendFailure {
    fn from(message: String) -> Self {
        Self { acked: 0, message }
    }
}

impl ForwardSink {
    /// A sink for a validated configuration; `identity` names this output on this node
    /// (stable across restarts) and prefixes its chunk ids.
    pub fn new(config: &ForwardOutputConfig, identity: &str) -> Self {
        Self {
            servers: config
                .servers
                .iter()
                .map(|s| Server {
                    address: s.address.clone(),
                    weight: s.weight,
                    standby: s.standby,
                    connection: None,
                    down_until: None,
                })
                .collect(),
            require_ack: config.require_ack,
            ack_timeout: config.ack_timeout,
            connect_timeout: config.connect_timeout,
            recover_wait: config.recover_wait,
            compression: match config.compression {
                FileCompression::None => Compression::None,
                FileCompression::Gzip => Compression::Gzip,
            },
            chunk_prefix: fnv1a(identity.bytes()).to_be_bytes(),
        }
    }

    /// Sends the delivery to one server, failing over to the next while none has taken any of
    /// it. Once a server acknowledged some chunks, only the others are handed back: sending
    /// the acknowledged ones again, perhaps to a server that does not know their ids, would
    /// store them twice.
    pub(crate) async fn deliver(&mut self, delivery: &Delivery) -> Outcome {
        let chunks = self.encode(delivery);
        let mut failures = Vec::new();
        for index in self.candidates() {
            let Err(failure) = self.send(index, &chunks).await else {
                return Outcome::delivered();
            };
            let server = &mut self.servers[index];
            tracing::warn!(message = "Forward server failed; trying the next.", server = %server.address, error = %failure.message);
            server.connection = None;
            server.down_until = Some(Instant::now() + self.recover_wait);
            let failed = format!("{}: {}", server.address, failure.message);
            if let Some(acked_events) = failure.acked.checked_sub(1).map(|i| chunks.acks[i].1) {
                let error = DeliveryError::retryable(format!(
                    "forward server {failed}, after acknowledging {} of {} chunks",
                    failure.acked,
                    chunks.acks.len()
                ));
                let unacknowledged = acked_events as usize..delivery.events as usize;
                return Outcome::delivered().fail(Items::range(unacknowledged), error);
            }
            failures.push(failed);
        }
        DeliveryError::retryable(format!(
            "no forward server took the chunk ({})",
            failures.join("; ")
        ))
        .into()
    }

    /// Servers to try, in order: up primaries (picked by weight), up standbys, then — if none
    /// is up — every server anyway, so that recovery does not wait for `recover_wait`.
    fn candidates(&self) -> Vec<usize> {
        let mut primaries: Vec<usize> = (0..self.servers.len())
            .filter(|&i| {
                self.servers[i].is_up() && !self.servers[i].standby && self.servers[i].weight > 0
            })
            .collect();
        let mut order = Vec::with_capacity(self.servers.len());
        while !primaries.is_empty() {
            let total: u64 = primaries
                .iter()
                .map(|&i| u64::from(self.servers[i].weight))
                .sum();
            let mut pick = fastrand::u64(..total);
            let at = primaries
                .iter()
                .position(|&i| {
                    let w = u64::from(self.servers[i].weight);
                    if pick < w {
                        true
                    } else {
                        pick -= w;
                        false
                    }
                })
                .expect("pick < total");
            order.push(primaries.remove(at));
        }
        order.extend(
            (0..self.servers.len()).filter(|&i| self.servers[i].is_up() && self.servers[i].standby),
        );
        if order.is_empty() {
            order.extend(0..self.servers.len());
        }
        order
    }

    fn encode(&self, delivery: &Delivery) -> Chunks {
        let mut chunks = Chunks {
            bytes: Vec::with_capacity(delivery.bytes as usize + 1024),
            acks: Vec::new(),
        };
        let mut open: Option<OpenChunk> = None;
        let mut entries = Vec::new();
        let mut events = 0u64;
        for (seq, batch) in delivery.iter() {
            // With acks, one chunk per log batch: a chunk resent after a restart then has the
            // same id and the same events as the first time, whatever the deliveries' sizes,
            // so the receiver can recognise it. Without acks nothing is resent, and consecutive
            // batches with one tag travel together.
            let joins = !self.require_ack
                && open.as_ref().is_some_and(|c| c.tag == batch.tag)
                && entries.len() + batch.entries.len() <= MAX_CHUNK_BYTES;
            if !joins && let Some(done) = open.take() {
                self.close_chunk(done, &mut entries, events, &mut chunks);
            }
            let chunk = open.get_or_insert_with(|| OpenChunk {
                tag: batch.tag.to_owned(),
                first_seq: seq,
                last_seq: seq,
                count: 0,
            });
            chunk.last_seq = seq;
            chunk.count += batch.entry_count;
            events += u64::from(batch.entry_count);
            entries.extend_from_slice(batch.entries);
        }
        if let Some(done) = open {
            self.close_chunk(done, &mut entries, events, &mut chunks);
        }
        chunks
    }

    /// Encodes `chunk` of `entries`, the last of the delivery's first `events_so_far` events.
    fn close_chunk(
        &self,
        chunk: OpenChunk,
        entries: &mut Vec<u8>,
        events_so_far: u64,
        chunks: &mut Chunks,
    ) {
        let id = self.require_ack.then(|| self.chunk_id(&chunk));
        encode_packed_forward(
            &mut chunks.bytes,
            &chunk.tag,
            entries,
            chunk.count,
            id.as_deref(),
            self.compression,
        );
        chunks.acks.extend(id.map(|id| (id, events_so_far)));
        entries.clear();
    }

    /// A chunk id: this output's prefix (stable across restarts) and the range of log records
    /// the chunk holds, so that a resent chunk carries the id it had the first time, and a
    /// chunk with other contents never does. A receiver that remembers ids (flumen does) drops
    /// the resend instead of storing it twice.
    fn chunk_id(&self, chunk: &OpenChunk) -> String {
        let mut raw = [0u8; 24];
        raw[..8].copy_from_slice(&self.chunk_prefix);
        raw[8..16].copy_from_slice(&chunk.first_seq.to_be_bytes());
        raw[16..].copy_from_slice(&chunk.last_seq.to_be_bytes());
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    async fn send(&mut self, index: usize, chunks: &Chunks) -> Result<(), SendFailure> {
        let (connect_timeout, ack_timeout) = (self.connect_timeout, self.ack_timeout);
        let server = &mut self.servers[index];
        if server.connection.is_none() {
            let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(&server.address))
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| format!("connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            server.connection = Some(stream);
        }
        let stream = server.connection.as_mut().expect("connected above");
        stream
            .write_all(&chunks.bytes)
            .await
            .map_err(|e| format!("write: {e}"))?;
        read_acks(stream, &chunks.acks, ack_timeout).await
    }
}

/// Reads the acknowledgement of each chunk, in order, within `timeout`.
async fn read_acks(
    stream: &mut TcpStream,
    acks: &[(String, u64)],
    timeout: Duration,
) -> Result<(), SendFailure> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = BytesMut::with_capacity(256);
    for (acked, (expected, _)) in acks.iter().enumerate() {
        let failed = |message: String| SendFailure { acked, message };
        loop {
            match decode_ack(&buf) {
                Ok(Some((chunk, used))) => {
                    if chunk != expected.as_bytes() {
                        return Err(failed(format!(
                            "acknowledgement for chunk {:?}, expected {expected:?}",
                            String::from_utf8_lossy(chunk)
                        )));
                    }
                    buf.advance(used);
                    break;
                }
                Ok(None) => {}
                Err(error) => return Err(failed(format!("bad acknowledgement: {error}"))),
            }
            let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf))
                .await
                .map_err(|_| failed("no acknowledgement within ack_timeout".to_owned()))?
                .map_err(|e| failed(format!("read: {e}")))?;
            if read == 0 {
                return Err(failed(
                    "connection closed before the acknowledgement".to_owned(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use flumen_codec::forward::encode_ack;
    use flumen_event::{BatchBuilder, EventTime, TenantId};

    use super::*;

    /// A delivery of one event per batch, batches at log positions `seqs`.
    fn delivery_at(seqs: &[u64]) -> Delivery {
        let builder = BatchBuilder::new(TenantId::default_tenant(), "").unwrap();
        let mut delivery = Delivery::default();
        for &seq in seqs {
            let mut entries = Vec::new();
            flumen_event::entry::write_entry(&mut entries, EventTime::new(seq, 0), &[0x80]);
            delivery.push(
                seq,
                builder.encode("t", b"", 1, &entries).unwrap().into(),
                1,
            );
        }
        delivery
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_acknowledged_before_a_timeout_are_not_sent_again() {
        let receiver = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config: ForwardOutputConfig = toml::from_str(&format!(
            "servers = [{{ address = \"{}\" }}]\nack_timeout = \"300ms\"",
            receiver.local_addr().unwrap()
        ))
        .unwrap();
        let mut sink = ForwardSink::new(&config, "node/out");
        let first_id = sink.chunk_id(&OpenChunk {
            tag: "t".into(),
            first_seq: 7,
            last_seq: 7,
            count: 1,
        });
        // A receiver that acknowledges the first chunk only, and then reads on in silence.
        std::thread::spawn(move || {
            let (mut stream, _) = receiver.accept().unwrap();
            let mut ack = Vec::new();
            encode_ack(first_id.as_bytes(), &mut ack);
            stream.write_all(&ack).unwrap();
            let mut buf = [0u8; 4096];
            while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
        });

        let delivery = delivery_at(&[7, 8, 9]);
        let outcome = sink.deliver(&delivery).await;
        let parts = outcome.undelivered(&delivery);
        assert_eq!(parts.len(), 1);
        let (rest, error) = &parts[0];
        let seqs: Vec<u64> = rest.batches.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [8, 9], "the acknowledged chunk is delivered");
        assert_eq!(rest.events, 2);
        assert!(error.retryable, "{error}");
    }
}
