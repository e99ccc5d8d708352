//! Outputs: where events leave flumen.
//!
//! Every output runs the same [`driver`]: it reads the durable log through its own cursor,
//! keeps the batches its routes give it, gathers them into a delivery ([`Delivery`]) by events,
//! bytes and time, hands the delivery to its [`Sink`], retries what failed with exponential
//! backoff and jitter, writes what still fails after the retry budget (or was refused for good)
//! to a dead-letter file, and only then moves its cursor. A sink answers each attempt with an
//! [`Outcome`]: which events ([`Items`]) failed and may be retried, which were refused for good,
//! and how long the destination asked it to wait; the rest is never sent again. A sink only
//! knows how to deliver once; everything about *when* and *again* lives in the driver, which
//! may keep several deliveries in flight (`batch.max_in_flight`), each with a sink of its own.
//!
//! Every output has a folder with the same files: `mod.rs` (the sink) and `config.rs` (its
//! `[outputs.NAME]` settings). Adding an output means a folder here, a variant of [`Sink`] and
//! of [`OutputConfig`] (`config.rs`). An output that brings a heavy dependency sits behind a
//! cargo feature of its name (on by default).

#![deny(missing_docs)]

#[cfg(feature = "aws")]
pub mod aws;
pub mod config;
pub mod dead_letter;
pub mod driver;
#[cfg(feature = "elasticsearch")]
pub mod elasticsearch;
pub mod file;
#[cfg(feature = "firehose")]
pub mod firehose;
pub mod forward;
#[cfg(feature = "http-client")]
// The AWS outputs sign their own requests and leave the plain POST endpoint unused.
#[cfg_attr(
    not(any(feature = "webhook", feature = "loki", feature = "elasticsearch")),
    allow(dead_code)
)]
mod http_client;
#[cfg(feature = "loki")]
pub mod loki;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(test)]
mod scripted;
pub mod stdout;
mod template;
#[cfg(all(
    test,
    any(
        feature = "loki",
        feature = "elasticsearch",
        feature = "s3",
        feature = "firehose"
    )
))]
// Each output's tests use a part of it; built with one output, the rest goes unused.
#[allow(dead_code)]
mod testing;
#[cfg(feature = "webhook")]
pub mod webhook;

pub use config::{OutputConfig, OutputSpec, SinkSpec};

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use flumen_event::json::write_event_line;
use flumen_event::{BatchRef, Entry};

/// Events handed to a sink in one go: whole batches from the log, in log order. Cloning shares
/// the batches' bytes.
#[derive(Debug, Default, Clone)]
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
        self.iter()
            .flat_map(|(_, batch)| readable_entries(batch).map(move |entry| (batch.tag, entry)))
    }

    /// The events whose position in [`Delivery::events`] `keep` accepts, as a delivery of their
    /// own: what a sink hands back as not delivered.
    pub fn select(&self, mut keep: impl FnMut(usize) -> bool) -> Delivery {
        let mut parts = self.split(1, |position| keep(position).then_some(0));
        parts.pop().expect("one part")
    }

    /// The events shared out among `parts` deliveries in one pass: `owner` names the part of
    /// the event at each position in [`Delivery::events`], or none. A batch a part has whole
    /// is shared, not copied.
    fn split(&self, parts: usize, mut owner: impl FnMut(usize) -> Option<usize>) -> Vec<Delivery> {
        let mut split = vec![Delivery::default(); parts];
        let mut kept: Vec<Vec<&[u8]>> = vec![Vec::new(); parts];
        let mut position = 0;
        for (index, seq, batch) in self.parsed() {
            for entry in readable_entries(batch) {
                if let Some(part) = owner(position) {
                    kept[part].push(entry.raw);
                }
                position += 1;
            }
            for (part, entries) in split.iter_mut().zip(&mut kept) {
                if let Some((bytes, events)) = batch_of(&self.batches[index].1, &batch, entries) {
                    part.push(seq, bytes, events);
                }
                entries.clear();
            }
        }
        split
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
    let kept: Vec<&[u8]> = readable_entries(*batch)
        .filter(|entry| keep(entry))
        .map(|entry| entry.raw)
        .collect();
    batch_of(payload, batch, &kept)
}

/// The stored batch `payload` cut down to `kept` (some of its entries, in order): the batch
/// itself when all are kept, `None` when none are, otherwise a copy of only those.
fn batch_of(payload: &Bytes, batch: &BatchRef<'_>, kept: &[&[u8]]) -> Option<(Bytes, u32)> {
    let count = kept.len() as u32;
    if count == batch.entry_count {
        return Some((payload.clone(), count));
    }
    if count == 0 {
        return None;
    }
    let part = flumen_event::batch::with_entries(payload, count, &kept.concat()).ok()?;
    Some((Bytes::from(part), count))
}

/// A batch's entries up to the first that cannot be read, which is logged.
fn readable_entries(batch: BatchRef<'_>) -> impl Iterator<Item = Entry<'_>> {
    batch.iter().map_while(move |entry| match entry {
        Ok(entry) => Some(entry),
        Err(error) => {
            tracing::error!(message = "Skipping the rest of an unreadable batch.", tag = batch.tag, %error);
            None
        }
    })
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

/// Which events of a delivery an [`Outcome`] speaks of: their positions in
/// [`Delivery::events`] (the order every sink reads them in), as ranges. Positions are what any
/// destination can name: a file's failed lines, a forward chunk not acknowledged, the items of a
/// bulk request that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Items {
    /// Every event of the delivery.
    All,
    /// The events in these ranges of positions (sorted, not overlapping).
    Ranges(Vec<Range<usize>>),
}

impl Items {
    /// The events from `range.start` up to `range.end`.
    pub fn range(range: Range<usize>) -> Self {
        Items::Ranges(vec![range])
    }

    /// The events at `positions` (in any order, repeats allowed).
    pub fn positions(positions: impl IntoIterator<Item = usize>) -> Self {
        let mut sorted: Vec<usize> = positions.into_iter().collect();
        sorted.sort_unstable();
        let mut ranges: Vec<Range<usize>> = Vec::new();
        for position in sorted {
            match ranges.last_mut() {
                Some(last) if position <= last.end => last.end = last.end.max(position + 1),
                _ => ranges.push(position..position + 1),
            }
        }
        Items::Ranges(ranges)
    }

    /// True when the event at `position` is one of these.
    pub fn contains(&self, position: usize) -> bool {
        match self {
            Items::All => true,
            Items::Ranges(ranges) => {
                let after = ranges.partition_point(|range| range.end <= position);
                ranges
                    .get(after)
                    .is_some_and(|range| range.start <= position)
            }
        }
    }
}

/// What became of one delivery, as its sink saw it: every event not named here was taken by
/// the destination. A sink only says *what* happened; the driver decides *when* and *again*:
/// it retries only the items that failed for a reason retrying can fix, dead-letters at once
/// those refused for good (with the reason), and waits at least `retry_after` before the next
/// attempt. One outcome may say all of these at once (a bulk answer with some items rejected
/// and others throttled).
#[derive(Debug, Default)]
pub struct Outcome {
    failed: Vec<(Items, DeliveryError)>,
    retry_after: Option<Duration>,
}

impl Outcome {
    /// Everything was taken.
    pub fn delivered() -> Self {
        Self::default()
    }

    /// These items were not taken, for `error` (retried when it is retryable, dead-lettered at
    /// once when it is permanent). An event named twice goes with the first reason given.
    pub fn fail(mut self, items: Items, error: DeliveryError) -> Self {
        self.failed.push((items, error));
        self
    }

    /// The destination asked not to be called again before `wait` (HTTP 429 or 503 with a
    /// `Retry-After`); the longer of this and the driver's backoff is waited.
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(self.retry_after.map_or(wait, |other| other.max(wait)));
        self
    }

    /// True when every event was taken.
    pub fn is_delivered(&self) -> bool {
        self.failed.is_empty()
    }

    /// `Ok` when every event was taken, otherwise the first reason given: for callers that only
    /// need to know whether an attempt went through.
    pub fn into_result(self) -> Result<(), DeliveryError> {
        match self.failed.into_iter().next() {
            None => Ok(()),
            Some((_, error)) => Err(error),
        }
    }

    /// The wait the destination asked for, if any.
    pub fn wait(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The parts of `delivery` (the delivery the sink was given) not taken, each with its
    /// reason, in the order the sink gave them; each event is in one part at most.
    pub fn undelivered(&self, delivery: &Delivery) -> Vec<(Delivery, &DeliveryError)> {
        // One pass over the delivery; an event named by several failures goes with the first.
        let parts = delivery.split(self.failed.len(), |position| {
            self.failed
                .iter()
                .position(|(items, _)| items.contains(position))
        });
        parts
            .into_iter()
            .zip(self.failed.iter().map(|(_, error)| error))
            .filter(|(part, _)| !part.is_empty())
            .collect()
    }
}

impl From<DeliveryError> for Outcome {
    /// Nothing was taken, for `error`.
    fn from(error: DeliveryError) -> Self {
        Outcome::delivered().fail(Items::All, error)
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
    /// Grafana Loki's push API.
    #[cfg(feature = "loki")]
    Loki(Box<loki::LokiSink>),
    /// S3-compatible object storage.
    #[cfg(feature = "s3")]
    S3(Box<s3::S3Sink>),
    /// Elasticsearch's and OpenSearch's bulk API.
    #[cfg(feature = "elasticsearch")]
    Elasticsearch(Box<elasticsearch::ElasticsearchSink>),
    /// Amazon Data Firehose's `PutRecordBatch`.
    #[cfg(feature = "firehose")]
    Firehose(Box<firehose::FirehoseSink>),
    /// Discards everything.
    Null,
    /// Answers as a test script says.
    #[cfg(test)]
    Scripted(scripted::ScriptedSink),
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
            #[cfg(feature = "loki")]
            SinkSpec::Loki(c) => Sink::Loki(Box::new(loki::LokiSink::from_spec(name, c)?)),
            #[cfg(feature = "s3")]
            SinkSpec::S3(c) => Sink::S3(Box::new(s3::S3Sink::from_spec(name, c, node_id)?)),
            #[cfg(feature = "elasticsearch")]
            SinkSpec::Elasticsearch(c) => Sink::Elasticsearch(Box::new(
                elasticsearch::ElasticsearchSink::from_spec(name, c)?,
            )),
            #[cfg(feature = "firehose")]
            SinkSpec::Firehose(c) => {
                Sink::Firehose(Box::new(firehose::FirehoseSink::from_spec(c)?))
            }
            SinkSpec::Null => Sink::Null,
        })
    }

    /// Tries once to deliver every event of `delivery`, and says what became of them.
    pub async fn deliver(&mut self, delivery: &Delivery) -> Outcome {
        match self {
            Sink::Stdout(sink) => sink.deliver(delivery).await,
            // File writes block; this runtime is multi-threaded, so other tasks move elsewhere.
            // Files are written one by one: a delivery can succeed in part.
            Sink::File(sink) => tokio::task::block_in_place(|| sink.deliver(delivery)),
            // Chunks are acknowledged one by one: a delivery can succeed in part.
            Sink::Forward(sink) => sink.deliver(delivery).await,
            #[cfg(feature = "webhook")]
            Sink::Webhook(sink) => sink.deliver(delivery).await,
            #[cfg(feature = "loki")]
            Sink::Loki(sink) => sink.deliver(delivery).await,
            #[cfg(feature = "s3")]
            Sink::S3(sink) => sink.deliver(delivery).await,
            // One bulk request (or a few), answered item by item: a delivery can succeed in
            // part.
            #[cfg(feature = "elasticsearch")]
            Sink::Elasticsearch(sink) => sink.deliver(delivery).await,
            #[cfg(feature = "firehose")]
            Sink::Firehose(sink) => sink.deliver(delivery).await,
            Sink::Null => Outcome::delivered(),
            #[cfg(test)]
            Sink::Scripted(sink) => sink.deliver(delivery).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripted::numbered;

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
    fn items_name_positions_as_ranges() {
        let items = Items::positions([7, 3, 4, 5, 9, 4]);
        assert_eq!(items, Items::Ranges(vec![3..6, 7..8, 9..10]));
        let inside: Vec<usize> = (0..12).filter(|&p| items.contains(p)).collect();
        assert_eq!(inside, [3, 4, 5, 7, 9]);
        assert!(Items::All.contains(1_000));
    }

    #[test]
    fn an_outcome_splits_a_delivery_by_reason_each_event_once() {
        let delivery = numbered(2, 5);
        let outcome = Outcome::delivered()
            .fail(Items::range(0..3), DeliveryError::permanent("mapping"))
            .fail(Items::positions([2, 7]), DeliveryError::retryable("429"))
            .retry_after(Duration::from_secs(3))
            .retry_after(Duration::from_secs(1));
        let parts = outcome.undelivered(&delivery);
        let said: Vec<(Vec<u64>, &str)> = parts
            .iter()
            .map(|(part, error)| (seconds(part), error.message.as_str()))
            .collect();
        assert_eq!(said, [(vec![0, 1, 2], "mapping"), (vec![7], "429")]);
        assert_eq!(outcome.wait(), Some(Duration::from_secs(3)));
        assert!(Outcome::delivered().undelivered(&delivery).is_empty());
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
