//! Outputs: where events leave flumen.
//!
//! Every output runs the same [`driver`]: it reads the durable log through its own cursor,
//! keeps the batches its routes give it, gathers them into a delivery ([`Delivery`]) by events,
//! bytes and time, hands the delivery to its [`Sink`], retries failures with exponential backoff
//! and jitter, writes what still fails after the retry budget to a dead-letter file, and only
//! then moves its cursor. A sink only knows how to deliver once; everything about *when* and
//! *again* lives in the driver.
//!
//! Adding an output means a module here with a sink type, a variant of [`Sink`] and of
//! `config::OutputConfig`.

pub mod dead_letter;
pub mod driver;
pub mod file;
pub mod forward;
pub mod stdout;
mod template;
pub mod webhook;

use bytes::Bytes;
use flumen_event::json::write_event_line;
use flumen_event::{BatchRef, Entry};

/// Events handed to a sink in one go: whole batches from the log, in log order.
#[derive(Debug, Default)]
pub struct Delivery {
    /// `(log sequence number, batch bytes)`.
    pub batches: Vec<(u64, Bytes)>,
    /// Events in all batches.
    pub events: u64,
    /// Bytes of all batches.
    pub bytes: u64,
}

impl Delivery {
    /// Adds a batch read from the log at `seq`.
    pub fn push(&mut self, seq: u64, bytes: Bytes, events: u32) {
        self.events += u64::from(events);
        self.bytes += bytes.len() as u64;
        self.batches.push((seq, bytes));
    }

    /// True when there is nothing to deliver.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The batches, with their headers read.
    pub fn iter(&self) -> impl Iterator<Item = (u64, BatchRef<'_>)> {
        self.batches.iter().filter_map(|(seq, bytes)| match BatchRef::parse(bytes) {
            Ok(batch) => Some((*seq, batch)),
            Err(error) => {
                // The log's checksum passed, so this is a bug or a foreign file, not disk rot.
                tracing::error!(message = "Skipping an unreadable batch from the log.", seq, %error);
                None
            }
        })
    }

    /// Every event, with its tag, in log order. An entry that cannot be read (the log only
    /// holds validated entries, so this means a bug) is logged and skipped, with the rest of
    /// its batch.
    pub fn events(&self) -> impl Iterator<Item = (&str, Entry<'_>)> {
        self.iter().flat_map(|(seq, batch)| {
            batch.iter().map_while(move |entry| match entry {
                Ok(entry) => Some((batch.tag, entry)),
                Err(error) => {
                    tracing::error!(message = "Skipping the rest of an unreadable batch.", seq, %error);
                    None
                }
            })
        })
    }
}

/// Appends an event as a JSON line; one that cannot be rendered is logged and leaves nothing
/// behind, never half a line.
pub(crate) fn render_event(out: &mut Vec<u8>, tag: &str, entry: &Entry<'_>) {
    let start = out.len();
    if let Err(error) = write_event_line(out, tag, entry) {
        out.truncate(start);
        tracing::error!(message = "Skipping an entry that cannot be rendered.", tag, %error);
    }
}

/// FNV-1a, 64 bits: a stable hash (unlike std's, fixed across Rust releases) for forward
/// chunk-id prefixes and PagerDuty dedup keys.
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A failed delivery.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// What went wrong.
    pub message: String,
    /// False when trying again cannot help (the destination refused the data itself).
    pub retryable: bool,
}

impl DeliveryError {
    /// A failure worth retrying (network, timeouts, destination unavailable).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that retrying will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

/// The destinations flumen can deliver to.
#[derive(Debug)]
pub enum Sink {
    /// JSON lines on standard output.
    Stdout(stdout::StdoutSink),
    /// JSON lines in files.
    File(file::FileSink),
    /// The Forward protocol.
    Forward(forward::ForwardSink),
    /// HTTP webhooks (alerts).
    Webhook(Box<webhook::WebhookSink>),
    /// Discards everything.
    Null,
}

impl Sink {
    /// Delivers every event of `delivery`, or fails as a whole.
    pub async fn deliver(&mut self, delivery: &Delivery) -> Result<(), DeliveryError> {
        match self {
            Sink::Stdout(sink) => sink.deliver(delivery).await,
            // File writes block; this runtime is multi-threaded, so other tasks move elsewhere.
            Sink::File(sink) => tokio::task::block_in_place(|| sink.deliver(delivery)),
            Sink::Forward(sink) => sink.deliver(delivery).await,
            Sink::Webhook(sink) => sink.deliver(delivery).await,
            Sink::Null => Ok(()),
        }
    }
}
