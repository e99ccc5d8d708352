//! The ingest path every source appends through: filters, the batch format, the durable log,
//! and acknowledgements tied to durability ([`Ingest`]); the ledger of recent Forward chunk ids
//! that recognises resends ([`chunks`]).

pub mod chunks;

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use flumen_event::batch::{FINGERPRINT_LEN, MAX_TAG_LEN};
use flumen_event::record::Event;
use flumen_event::{BatchBuilder, BatchError, EntryIter, TenantId};
use flumen_process::{Pipeline, Released, Session};
use flumen_routing::RouteCache;
use flumen_wal::{AppendTicket, Wal, WalError};
use metrics::Counter;
use tokio::sync::watch;

use crate::SourceShared;
use chunks::{AppendOutcome, ChunkAck, ChunkIdentity, ChunkState, MAX_CHUNK_ID_LEN};

/// Runs a source's events through the filters and appends them to the log, counting them.
///
/// One `Ingest` serves one input stream (a connection, a file) and owns that stream's filter
/// [`Session`]. Every input (a chunk, a request) gets a [`ChunkAck`] that resolves once all of
/// its events are durable — including events a joining filter (multiline) held back and
/// released later with other events — so "acknowledged" keeps meaning "stored".
#[derive(Debug)]
pub struct Ingest {
    wal: Arc<Wal>,
    chunks: Arc<chunks::ChunkLedger>,
    tenant: TenantId,
    builder: BatchBuilder,
    label: String,
    routes: RouteCache,
    pipeline: Arc<Pipeline>,
    session: Session,
    /// Inputs with events the session still holds: (their sequence numbers, outcome).
    waiting: Vec<(Range<u64>, watch::Sender<ChunkState>)>,
    /// The outcome of the newest append. The log makes appends durable in order, so an input
    /// whose last events left in an earlier append is stored once this one is.
    last_append: Option<AppendOutcome>,
    counters: IngestCounters,
}

/// What a source counts of the events it takes.
#[derive(Debug, Clone)]
pub struct IngestCounters {
    events: Counter,
    bytes: Counter,
    unrouted: Counter,
    duplicates: Counter,
}

impl IngestCounters {
    /// The counters of the source `name`.
    pub fn new(name: &str) -> Self {
        let source = name.to_owned();
        Self {
            events: metrics::counter!("flumen_source_events_total", "source" => source.clone()),
            bytes: metrics::counter!("flumen_source_bytes_total", "source" => source.clone()),
            unrouted: metrics::counter!("flumen_source_unrouted_events_total", "source" => source.clone()),
            duplicates: metrics::counter!("flumen_source_duplicate_events_total", "source" => source),
        }
    }
}

/// One input as its sender sent it.
#[derive(Debug, Clone, Copy)]
struct Input<'a> {
    tag: &'a str,
    /// Its chunk id (empty without one).
    chunk: &'a [u8],
    count: u32,
    entries: &'a [u8],
    /// The fingerprint of `entries`, when the chunk ledger computed it already.
    fingerprint: Option<[u8; FINGERPRINT_LEN]>,
}

impl Input<'_> {
    /// The fingerprint of its entries, computed once.
    fn fingerprint(&self) -> [u8; FINGERPRINT_LEN] {
        self.fingerprint
            .unwrap_or_else(|| chunks::fingerprint(self.entries))
    }
}

impl Ingest {
    /// An ingest for the source `name`, whose events carry `label`.
    pub fn new(name: &str, label: &str, shared: &SourceShared) -> Self {
        Self::counted(IngestCounters::new(name), label, shared)
    }

    /// An ingest whose events carry `label`, counted in `counters` (shared by the streams of
    /// one source).
    pub fn counted(counters: IngestCounters, label: &str, shared: &SourceShared) -> Self {
        let tenant = TenantId::default_tenant();
        Self {
            wal: shared.wal.clone(),
            chunks: shared.chunks.clone(),
            builder: BatchBuilder::new(tenant.clone(), label).expect("labels are validated"),
            tenant,
            label: label.to_owned(),
            routes: RouteCache::new(shared.routes.clone()),
            pipeline: shared.pipeline.clone(),
            session: shared.pipeline.session(),
            waiting: Vec::new(),
            last_append: None,
            counters,
        }
    }

    /// The same ingest for a stream from the sender at `peer`: its chunks are its own (another
    /// host's identical chunk is not a resend of it), and its batches say where they came from.
    pub fn from_peer(mut self, peer: std::net::IpAddr) -> Self {
        self.builder = self.builder.from_origin(peer);
        self
    }

    /// The log, for sources that check whether it is full before taking a request.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Takes `count` validated entries under `tag`; waits while the log's queue is full.
    ///
    /// With a Forward `chunk` id, a chunk seen before (a resend) is not stored again and shares
    /// the first copy's outcome. Events no route wants are counted as unrouted and dropped, as
    /// Fluentd does with events no `<match>` matches; their acknowledgement is due at once.
    /// A tag or chunk id too long to store is refused before anything is kept of it.
    pub async fn append(
        &mut self,
        tag: &str,
        chunk: Option<&[u8]>,
        count: u32,
        entries: &[u8],
    ) -> Result<ChunkAck, IngestError> {
        let chunk = chunk.unwrap_or_default();
        refuse_long_chunk_id(chunk)?;
        refuse_long_tag(tag)?;
        let mut input = Input {
            tag,
            chunk,
            count,
            entries,
            fingerprint: None,
        };
        if chunk.is_empty() {
            let outcome = watch::channel(ChunkState::Pending).0;
            return self.store(input, outcome).await;
        }
        let identity = ChunkIdentity {
            tenant: self.tenant.as_str(),
            origin: self.builder.origin(),
            id: chunk,
        };
        let claimed = match self.chunks.claim(&identity, entries) {
            chunks::Claim::Seen(ack) => {
                self.counters.duplicates.increment(u64::from(count));
                tracing::debug!(
                    message = "A resent chunk was already taken; not storing it again.",
                    tag,
                    count
                );
                ack.start_sync();
                return Ok(ack);
            }
            chunks::Claim::New(claimed) => claimed,
        };
        input.fingerprint = Some(claimed.fingerprint);
        match self.store(input, claimed.outcome).await {
            // A chunk id is what a Forward sender sends when it waits for the acknowledgement.
            Ok(ack) => {
                ack.start_sync();
                Ok(ack)
            }
            Err(error) => {
                self.chunks.forget(claimed.key);
                Err(error)
            }
        }
    }

    /// Like [`Ingest::append`], for sources that recognise their own resends (the tail source
    /// finds what it stored in the log's batch headers): `chunk` goes into the batch header,
    /// but is not claimed in the ledger, whose slots stay for Forward senders.
    pub async fn append_unclaimed(
        &mut self,
        tag: &str,
        chunk: &[u8],
        count: u32,
        entries: &[u8],
    ) -> Result<ChunkAck, IngestError> {
        refuse_long_tag(tag)?;
        let outcome = watch::channel(ChunkState::Pending).0;
        let input = Input {
            tag,
            chunk,
            count,
            entries,
            fingerprint: None,
        };
        self.store(input, outcome).await
    }

    /// Routes, filters and appends one input whose outcome `outcome` will publish.
    async fn store(
        &mut self,
        input: Input<'_>,
        outcome: watch::Sender<ChunkState>,
    ) -> Result<ChunkAck, IngestError> {
        let Input {
            tag,
            chunk,
            count,
            entries,
            ..
        } = input;
        let ack = ChunkAck::of(&outcome);
        if !self.routes.keeps(&self.label, tag) {
            self.counters.unrouted.increment(u64::from(count));
            tracing::debug!(
                message = "No route matches the tag; dropping events.",
                tag,
                count
            );
            outcome.send_replace(ChunkState::Durable);
            return Ok(ack);
        }
        self.counters.bytes.increment(entries.len() as u64);
        self.counters.events.increment(u64::from(count));
        if self.pipeline.applies_to(tag) {
            self.process(input, outcome).await?;
        } else {
            let payload = self.builder.encode(tag, chunk, count, entries)?;
            let ticket = self.wal.append(payload).await?;
            self.settle(Some(ticket), Some(outcome));
        }
        Ok(ack)
    }

    /// Runs one input through the filters and appends what comes out now.
    async fn process(
        &mut self,
        input: Input<'_>,
        outcome: watch::Sender<ChunkState>,
    ) -> Result<(), IngestError> {
        let Input {
            tag,
            chunk,
            entries,
            ..
        } = input;
        let events = EntryIter::new(entries)
            .map(|entry| {
                let entry = entry.map_err(|e| IngestError::Rejected(e.to_string()))?;
                Event::decode(&entry).map_err(|e| IngestError::Rejected(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let start = self.session.taken();
        let seqs = start..start + events.len() as u64;
        let released = self.session.process(tag, events, Instant::now());
        // A chunk partly held back is not remembered across a restart: if flumen crashes
        // before the rest is stored, the sender's resend is stored again (duplicates, never
        // loss).
        let whole = !self.session.holds(seqs.clone());
        let ticket = if released.is_empty() {
            None
        } else {
            let id = if whole { chunk } else { b"" };
            // The batch header keeps a fingerprint only beside a chunk id.
            let fingerprint = if id.is_empty() {
                [0; FINGERPRINT_LEN]
            } else {
                input.fingerprint()
            };
            Some(
                self.append_or_fail_waiting(tag, id, fingerprint, &released)
                    .await?,
            )
        };
        self.waiting.push((seqs, outcome));
        self.settle(ticket, None);
        Ok(())
    }

    /// When held events are next due to be released ([`Ingest::flush_due`]).
    pub fn next_flush(&self) -> Option<Instant> {
        self.session.next_deadline()
    }

    /// Appends the events whose joining filters timed out.
    pub async fn flush_due(&mut self) -> Result<(), IngestError> {
        let released = self.session.flush_due(Instant::now());
        self.append_released(released).await
    }

    /// Appends every held event (the stream is ending).
    pub async fn flush_all(&mut self) -> Result<(), IngestError> {
        let released = self.session.flush_all();
        self.append_released(released).await
    }

    async fn append_released(&mut self, released: Released) -> Result<(), IngestError> {
        let mut ticket = None;
        for (tag, events) in released {
            ticket = Some(
                self.append_or_fail_waiting(&tag, b"", [0; FINGERPRINT_LEN], &events)
                    .await?,
            );
        }
        self.settle(ticket, None);
        Ok(())
    }

    /// Appends released `events`. If that fails, every input still waiting fails too: its
    /// events may have been among them, and an input must never be acknowledged for events
    /// that were not stored. (An input still held in part fails as well; its resend may store
    /// the held part twice, never lose it.)
    async fn append_or_fail_waiting(
        &mut self,
        tag: &str,
        chunk: &[u8],
        fingerprint: [u8; FINGERPRINT_LEN],
        events: &[Event],
    ) -> Result<AppendTicket, IngestError> {
        let appended = self.append_events(tag, chunk, fingerprint, events).await;
        if appended.is_err() {
            let waiting = std::mem::take(&mut self.waiting);
            publish(
                waiting.into_iter().map(|(_, outcome)| outcome),
                &ChunkState::Failed,
            );
        }
        appended
    }

    async fn append_events(
        &mut self,
        tag: &str,
        chunk: &[u8],
        fingerprint: [u8; FINGERPRINT_LEN],
        events: &[Event],
    ) -> Result<AppendTicket, IngestError> {
        let mut entries = Vec::with_capacity(events.len() * 256);
        for event in events {
            event.write_entry(&mut entries);
        }
        let payload = self.builder.encode_processed(
            tag,
            chunk,
            fingerprint,
            events.len() as u32,
            &entries,
        )?;
        Ok(self.wal.append(payload).await?)
    }

    /// Ties the outcome of `done` and of every waiting input the session no longer holds to
    /// `ticket` (or, without one, to the newest append): they resolve when whoever waits for
    /// them finds it durable.
    fn settle(&mut self, ticket: Option<AppendTicket>, done: Option<watch::Sender<ChunkState>>) {
        if let Some(ticket) = ticket {
            self.last_append = Some(AppendOutcome::of(ticket));
        }
        let session = &self.session;
        let (held, stored): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(seqs, _)| session.holds(seqs.clone()));
        self.waiting = held;
        let state = match &self.last_append {
            Some(append) => ChunkState::Appended(append.clone()),
            // Nothing appended yet: what is done was dropped whole by the filters.
            None => ChunkState::Durable,
        };
        publish(
            done.into_iter()
                .chain(stored.into_iter().map(|(_, outcome)| outcome)),
            &state,
        );
    }
}

/// Refuses a sender's chunk id longer than the chunk ledger takes, before any of it is kept.
fn refuse_long_chunk_id(chunk: &[u8]) -> Result<(), IngestError> {
    if chunk.len() > MAX_CHUNK_ID_LEN {
        return Err(IngestError::Rejected(format!(
            "chunk_id_too_long: the chunk id is {} bytes, over the limit of {MAX_CHUNK_ID_LEN}",
            chunk.len()
        )));
    }
    Ok(())
}

/// Refuses a tag the batch format cannot hold, before any of its events is taken (a failed
/// append would fail the inputs a joining filter holds with it).
fn refuse_long_tag(tag: &str) -> Result<(), IngestError> {
    if tag.len() > MAX_TAG_LEN {
        return Err(IngestError::Rejected(format!(
            "tag_too_long: the tag is {} bytes, over the limit of {MAX_TAG_LEN}",
            tag.len()
        )));
    }
    Ok(())
}

fn publish(outcomes: impl IntoIterator<Item = watch::Sender<ChunkState>>, state: &ChunkState) {
    for outcome in outcomes {
        outcome.send_replace(state.clone());
    }
}

/// Why events could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The events themselves cannot be stored (for example a tag over 64 KiB).
    #[error("{0}")]
    Rejected(String),
    /// The log cannot take them: it failed or is closing.
    #[error(transparent)]
    Log(#[from] WalError),
}

impl From<BatchError> for IngestError {
    fn from(error: BatchError) -> Self {
        Self::Rejected(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flumen_event::EventTime;
    use flumen_event::entry::write_entry;
    use flumen_process::FilterConfig;
    use flumen_routing::{RouteSpec, RouteTable};
    use flumen_wal::{Persistence, WalConfig};

    /// What sources share for `filters` (a TOML `[[filters]]` list) over a log in `dir`, with
    /// one route taking every tag to one output.
    fn shared(dir: &std::path::Path, filters: &str) -> SourceShared {
        #[derive(serde::Deserialize)]
        struct Filters {
            #[serde(default)]
            filters: Vec<FilterConfig>,
        }
        let filters: Filters = toml::from_str(filters).unwrap();
        let route = RouteSpec {
            patterns: vec!["**".into()],
            outputs: vec!["out".into()],
            ..RouteSpec::default()
        };
        SourceShared {
            wal: Arc::new(Wal::open(WalConfig::new(dir.join("log"))).unwrap()),
            routes: Arc::new(RouteTable::new(&[route], &["out".to_owned()]).unwrap()),
            pipeline: Arc::new(Pipeline::new(&filters.filters).unwrap()),
            chunks: Arc::new(chunks::ChunkLedger::new(1000)),
            data_dir: dir.to_owned(),
        }
    }

    /// The entries of one event per line, each with its line under `log`.
    fn lines(lines: &[&str]) -> (u32, Vec<u8>) {
        let mut entries = Vec::new();
        for line in lines {
            let mut record = Vec::new();
            rmp::encode::write_map_len(&mut record, 1).unwrap();
            rmp::encode::write_str(&mut record, "log").unwrap();
            rmp::encode::write_str(&mut record, line).unwrap();
            write_entry(&mut entries, EventTime::new(1_700_000_000, 0), &record);
        }
        (lines.len() as u32, entries)
    }

    const JAVA_MULTILINE: &str =
        "[[filters]]\ntype = \"multiline\"\nmode = \"java\"\nflush_timeout = \"1h\"\n";

    #[tokio::test]
    async fn a_failed_append_never_acknowledges_held_events() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(dir.path(), JAVA_MULTILINE);
        let mut ingest = Ingest::new("fwd", "", &shared);
        // The exception's first line is held: its stack frames may follow.
        let (count, entries) = lines(&["java.lang.IllegalStateException: boom"]);
        let mut held = ingest
            .append("app", Some(b"X1"), count, &entries)
            .await
            .unwrap();
        // The log fails; the next line releases the held one into an append that fails.
        shared.wal.shutdown().await;
        let (count, entries) = lines(&["Worker stopped"]);
        assert!(
            ingest
                .append("app", Some(b"X2"), count, &entries)
                .await
                .is_err()
        );
        // Whatever comes after must not publish X1 as stored.
        let _ = ingest.flush_all().await;
        assert!(!held.durable().await, "X1 acknowledged, never stored");
    }

    #[tokio::test]
    async fn a_held_chunk_and_its_resend_are_acknowledged_once_the_append_releasing_it_is_durable()
    {
        use futures_util::FutureExt;
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(dir.path(), JAVA_MULTILINE);
        let mut ingest = Ingest::new("fwd", "", &shared).from_peer([127, 0, 0, 1].into());
        let (count, exception) = lines(&["java.lang.IllegalStateException: boom"]);
        let mut held = ingest
            .append("app", Some(b"X1"), count, &exception)
            .await
            .unwrap();
        // The sender missed the ack and resends on a new connection.
        let mut reconnected = Ingest::new("fwd", "", &shared).from_peer([127, 0, 0, 1].into());
        let mut resend = reconnected
            .append("app", Some(b"X1"), count, &exception)
            .await
            .unwrap();
        assert!(held.durable().now_or_never().is_none(), "X1 is held");
        assert!(
            resend.durable().now_or_never().is_none(),
            "and so is its resend"
        );
        // The next line ends the exception: it is appended, and with it X1.
        let (count, next) = lines(&["Worker stopped"]);
        let mut after = ingest
            .append("app", Some(b"X2"), count, &next)
            .await
            .unwrap();
        assert!(
            resend.durable().await,
            "the resend shares the append's outcome"
        );
        assert!(held.durable().await);
        ingest.flush_all().await.unwrap();
        assert!(after.durable().await);
        assert_eq!(
            shared.wal.stats().durable_end.get(),
            1,
            "X1 stored once, in the append with X2 that released it"
        );
        shared.wal.shutdown().await;
    }

    #[tokio::test]
    async fn a_chunk_whose_sender_waits_for_its_ack_is_synced_before_the_ack_is_awaited() {
        let dir = tempfile::tempdir().unwrap();
        let mut shared = shared(dir.path(), "");
        // A sync interval no test run reaches: only an early sync makes anything durable.
        shared.wal = Arc::new(
            Wal::open(WalConfig {
                persistence: Persistence::Interval(std::time::Duration::from_secs(3600)),
                ..WalConfig::new(dir.path().join("hourly"))
            })
            .unwrap(),
        );
        let mut ingest = Ingest::new("fwd", "", &shared).from_peer([127, 0, 0, 1].into());
        let (count, entries) = lines(&["a line"]);
        let ack = ingest
            .append("app", Some(b"c1"), count, &entries)
            .await
            .unwrap();
        // Nobody waits on `ack`: a connection would come to it only after the acks before it.
        let synced = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while shared.wal.durable_end().get() < 1 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(
            synced.is_ok(),
            "the append was not synced before its ack was awaited"
        );
        drop(ack);
        shared.wal.shutdown().await;
    }

    #[tokio::test]
    async fn acknowledgements_resolve_whichever_is_awaited_first() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(dir.path(), "");
        let mut ingest = Ingest::new("fwd", "", &shared).from_peer([127, 0, 0, 1].into());
        let (count, entries) = lines(&["a line"]);
        let mut acks = Vec::new();
        for n in 0..20 {
            let id = format!("c{n}");
            acks.push(
                ingest
                    .append("app", Some(id.as_bytes()), count, &entries)
                    .await
                    .unwrap(),
            );
        }
        // The newest first, then the others: each resolves from its own append.
        for mut ack in acks.into_iter().rev() {
            assert!(ack.durable().await);
        }
        assert_eq!(shared.wal.stats().durable_end.get(), 20);
        shared.wal.shutdown().await;
    }

    #[tokio::test]
    async fn chunk_ids_over_128_bytes_and_tags_over_65535_bytes_are_refused_before_anything_is_kept()
     {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(dir.path(), "");
        let mut ingest = Ingest::new("fwd", "", &shared).from_peer([127, 0, 0, 1].into());
        let (count, entries) = lines(&["a line"]);
        let long_id = vec![b'x'; 8 * 1024 * 1024];
        for _ in 0..30 {
            let refused = ingest.append("app", Some(&long_id), count, &entries).await;
            assert!(
                matches!(&refused, Err(IngestError::Rejected(reason)) if reason.starts_with("chunk_id_too_long")),
                "{refused:?}"
            );
        }
        assert_eq!(
            shared.chunks.len(),
            0,
            "refused chunk ids are not remembered"
        );
        let tag = "t".repeat(65_536);
        let refused = ingest.append(&tag, Some(b"id"), count, &entries).await;
        assert!(
            matches!(&refused, Err(IngestError::Rejected(reason)) if reason.starts_with("tag_too_long")),
            "{refused:?}"
        );
        assert_eq!(shared.chunks.len(), 0);
        let mut taken = ingest
            .append("app", Some(&[b'x'; 128]), count, &entries)
            .await
            .unwrap();
        assert!(taken.durable().await, "a 128-byte chunk id is taken");
        assert_eq!(shared.chunks.len(), 1);
        assert_eq!(
            shared.wal.stats().durable_end.get(),
            1,
            "only the good frame is stored"
        );
        shared.wal.shutdown().await;
    }
}
