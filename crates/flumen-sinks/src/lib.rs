//! Outputs: where events leave flumen.
//!
//! Every output runs the same [`driver`]: it reads the durable log through its own cursor,
//! keeps the batches its routes give it, gathers them into a delivery ([`Delivery`]) by events,
//! bytes and time, hands the delivery to its [`Sink`], retries what failed with exponential
//! backoff and jitter, writes what still fails after the retry budget (or was refused for good)
//! to a dead-letter file, and only then moves its cursor. A sink says what it did not deliver
//! ([`Undelivered`]); the rest is never sent again. A sink only knows how to deliver once; everything about *when* and
//! *again* lives in the driver.
//!
//! Every output has a folder with the same files: `mod.rs` (the sink) and `config.rs` (its
//! `[outputs.NAME]` settings). Adding an output means a folder here, a variant of [`Sink`] and
//! of [`OutputConfig`] (`config.rs`). An output that brings a heavy dependency sits behind a
//! cargo feature of its name (on by default).

#![deny(missing_docs)]

pub mod config;
pub mod dead_letter;
pub mod driver;
pub mod file;
pub mod forward;
#[cfg(feature = "http-client")]
mod http_client;
pub mod stdout;
mod template;
#[cfg(feature = "webhook")]
pub mod webhook;

pub use config::{OutputConfig, OutputSpec, SinkSpec};

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
        self.parsed().map(|(_, seq, batch)| (seq, batch))
    }

    /// The batches with their index in `batches` and their headers read.
    fn parsed(&self) -> impl Iterator<Item = (usize, u64, BatchRef<'_>)> {
        self.batches
            .iter()
            .enumerate()
            .filter_map(|(index, (seq, bytes))| match BatchRef::parse(bytes) {
                Ok(batch) => Some((index, *seq, batch)),
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

    /// The events whose position in [`Delivery::events`] `keep` accepts, as a delivery of their
    /// own: what a sink hands back as not delivered.
    pub fn select(&self, mut keep: impl FnMut(usize) -> bool) -> Delivery {
        let mut part = Delivery::default();
        let mut position = 0;
        for (index, seq, batch) in self.parsed() {
            let kept = entries_of_batch(&self.batches[index].1, &batch, |_| {
                position += 1;
                keep(position - 1)
            });
            if let Some((bytes, events)) = kept {
                part.push(seq, bytes, events);
            }
        }
        part
    }

    /// The batches after log position `seq`, as a delivery of their own.
    pub fn after(&self, seq: u64) -> Delivery {
        let mut rest = Delivery::default();
        for (index, batch_seq, batch) in self.parsed().filter(|(_, s, _)| *s > seq) {
            rest.push(batch_seq, self.batches[index].1.clone(), batch.entry_count);
        }
        rest
    }

    /// The events of all `parts` in one delivery, in log order.
    pub fn merged(parts: impl IntoIterator<Item = Delivery>) -> Delivery {
        let mut merged = Delivery::default();
        for part in parts {
            merged.events += part.events;
            merged.bytes += part.bytes;
            merged.batches.extend(part.batches);
        }
        // Stable: parts of one batch (events for different files, say) keep their order.
        merged.batches.sort_by_key(|(seq, _)| *seq);
        merged
    }
}

/// The entries of the stored batch `payload` that `keep` accepts: the batch itself when it
/// accepts all, `None` when it accepts none, otherwise a copy with only those entries. Entries
/// after one that cannot be read are left out, as [`Delivery::events`] leaves them out.
pub(crate) fn entries_of_batch(
    payload: &Bytes,
    batch: &BatchRef<'_>,
    mut keep: impl FnMut(&Entry<'_>) -> bool,
) -> Option<(Bytes, u32)> {
    let mut entries = Vec::new();
    let mut count = 0u32;
    for entry in batch.iter() {
        let Ok(entry) = entry else {
            tracing::error!(
                message = "Skipping the rest of an unreadable batch.",
                tag = batch.tag
            );
            break;
        };
        if keep(&entry) {
            entries.extend_from_slice(entry.raw);
            count += 1;
        }
    }
    if count == batch.entry_count {
        return Some((payload.clone(), count));
    }
    if count == 0 {
        return None;
    }
    let part = flumen_event::batch::with_entries(payload, count, &entries).ok()?;
    Some((Bytes::from(part), count))
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

/// What a sink did not deliver. Everything else of the delivery was delivered, and is never
/// sent again: a retry carries only what is named here.
#[derive(Debug)]
pub enum Undelivered {
    /// Nothing was delivered.
    All(DeliveryError),
    /// Only these parts were not, each for its own reason (the rest was).
    Some(Vec<(Delivery, DeliveryError)>),
}

impl From<DeliveryError> for Undelivered {
    fn from(error: DeliveryError) -> Self {
        Undelivered::All(error)
    }
}

impl Undelivered {
    /// The parts of `delivery` (the delivery the sink was given) not delivered, with why.
    pub fn into_parts(self, delivery: Delivery) -> Vec<(Delivery, DeliveryError)> {
        match self {
            Undelivered::All(error) => vec![(delivery, error)],
            Undelivered::Some(parts) => parts,
        }
    }
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
    #[cfg(feature = "webhook")]
    Webhook(Box<webhook::WebhookSink>),
    /// Discards everything.
    Null,
}

impl Sink {
    /// The sink output `name` configures; `node_id` is this flumen's identity (chunk ids of the
    /// forward output start with it).
    pub fn build(name: &str, spec: &SinkSpec, node_id: &str) -> Result<Self, String> {
        Ok(match spec {
            SinkSpec::Stdout => Sink::Stdout(stdout::StdoutSink::default()),
            SinkSpec::File(c) => Sink::File(file::FileSink::from_spec(c.clone())),
            SinkSpec::Forward(c) => {
                Sink::Forward(forward::ForwardSink::new(c, &format!("{node_id}/{name}")))
            }
            #[cfg(feature = "webhook")]
            SinkSpec::Webhook(c) => {
                Sink::Webhook(Box::new(webhook::WebhookSink::from_spec(name, c)?))
            }
            SinkSpec::Null => Sink::Null,
        })
    }

    /// Delivers every event of `delivery`, or says which were not delivered.
    pub async fn deliver(&mut self, delivery: &Delivery) -> Result<(), Undelivered> {
        match self {
            Sink::Stdout(sink) => Ok(sink.deliver(delivery).await?),
            // File writes block; this runtime is multi-threaded, so other tasks move elsewhere.
            // Files are written one by one: a delivery can succeed in part.
            Sink::File(sink) => tokio::task::block_in_place(|| sink.deliver(delivery)),
            // Chunks are acknowledged one by one: a delivery can succeed in part.
            Sink::Forward(sink) => sink.deliver(delivery).await,
            #[cfg(feature = "webhook")]
            Sink::Webhook(sink) => Ok(sink.deliver(delivery).await?),
            Sink::Null => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flumen_event::{BatchBuilder, EventTime, TenantId};

    /// A delivery of `batches` batches of `per_batch` events, numbered by their time in seconds.
    fn numbered(batches: u64, per_batch: u64) -> Delivery {
        let builder = BatchBuilder::new(TenantId::default_tenant(), "").unwrap();
        let mut delivery = Delivery::default();
        for seq in 0..batches {
            let mut entries = Vec::new();
            for n in seq * per_batch..(seq + 1) * per_batch {
                flumen_event::entry::write_entry(&mut entries, EventTime::new(n, 0), &[0x80]);
            }
            let count = per_batch as u32;
            let batch = builder.encode("t", b"", count, &entries).unwrap();
            delivery.push(seq, batch.into(), count);
        }
        delivery
    }

    fn seconds(delivery: &Delivery) -> Vec<u64> {
        delivery
            .events()
            .map(|(_, entry)| entry.time.secs)
            .collect()
    }

    #[test]
    fn parts_selected_from_a_delivery_merge_back_into_it() {
        let delivery = numbered(3, 4);
        let odd = delivery.select(|position| position % 2 == 1);
        let even = delivery.select(|position| position % 2 == 0);
        assert_eq!(seconds(&odd), [1, 3, 5, 7, 9, 11]);
        assert_eq!((odd.events, odd.batches.len()), (6, 3));
        let merged = Delivery::merged([odd, even]);
        assert_eq!(merged.events, 12);
        let mut all = seconds(&merged);
        all.sort_unstable();
        assert_eq!(all, (0..12).collect::<Vec<_>>());
        // In log order, batch by batch.
        let seqs: Vec<u64> = merged.batches.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [0, 0, 1, 1, 2, 2]);
    }

    #[test]
    fn selecting_every_event_of_a_batch_shares_it() {
        let delivery = numbered(2, 3);
        let first = delivery.select(|position| position < 3);
        assert_eq!(first.batches.len(), 1);
        assert_eq!(first.batches[0].1, delivery.batches[0].1);
        assert_eq!(first.bytes, delivery.batches[0].1.len() as u64);
        assert!(delivery.select(|_| false).is_empty());
    }
}
