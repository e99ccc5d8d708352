//! flumen's embedded store: every event of the durable log kept, compressed and indexed, and
//! searched with the query language of `flumen-select`.
//!
//! # Design
//!
//! The store is one more reader of the durable log (the cursor `@store`, a name no output can have), shaped like Loki
//! and LogScale rather than like Elasticsearch: no per-field inverted index of everything, but
//! events grouped into compressed **chunks** by tenant, arrival hour (the **partition**) and
//! **stream** — the values of a small, configured set of low-cardinality **labels** (`tag`,
//! `service`, `environment`, `level`) — each chunk with its time range, count, labels and first
//! and last log position. High-cardinality fields (`deployment_id`, `request_id`, `trace_id`,
//! `container_id`, configurable) are **indexed but never labels**: each chunk carries a small
//! binary fuse filter of the values it holds, so `{deployment_id="d-42"}` opens only the chunks
//! that may hold it, and a deployment id can never multiply the streams.
//!
//! Records are kept exactly as they arrived (msgpack), with their tag, time, Forward metadata
//! and [`EventPosition`]: the log record that carried the event and its index in it, one
//! cursor shared with live streams, so a search and a live stream join with no gap or overlap.
//!
//! - `format.rs`: the files on disk (documented there, with their version), chunk blocks.
//! - `checkpoint.rs`: the commit point that makes flushes all-or-nothing across a crash.
//! - `catalog.rs`: every file's footer in memory; snapshots for queries; deferred removal.
//! - `writer.rs`: the log reader that gathers events into chunks and flushes them.
//! - `compaction.rs`: the maintenance thread that merges files into larger chunks and applies
//!   retention.
//! - `retention.rs`: what retention removes, by age and size, and by deployment.
//! - `query.rs`: search (log queries, newest or oldest first, with a cursor), label names
//!   and values, and the pruning of chunks by time, labels and indexed fields.
//! - `fields.rs`: labels and indexed values read from msgpack without decoding records.
//!
//! # Retention
//!
//! Each tenant has a [`Retention`]: partitions whose hour ended longer ago than `max_age` are
//! removed whole, and the oldest go while the tenant's files take more than `max_bytes`.
//! A deployment can keep its events longer or shorter than its tenant
//! ([`Store::set_deployment_retention`]: `deployment_id` to how long after its hour its events
//! are kept), since one deployment's logs may be wanted for an audit while another's are noise:
//!
//! - **Longer**: a partition past its tenant's `max_age` that may hold (by its chunks' index
//!   filters, before anything is read) events of a deployment still kept for its hour is
//!   rewritten with only those events; once none is kept any longer it is removed whole.
//! - **Shorter**: a partition within its tenant's `max_age` that may hold events of a
//!   deployment whose own retention expired for its hour is rewritten without them.
//!
//! Events of other deployments, and events without a `deployment_id`, follow the tenant's
//! retention; `max_bytes` removes whole partitions, thinned or not. A rewrite is compaction's
//! merge with a filter, crash-safe as merges are (a whole file naming those it replaces, a
//! checkpoint before they leave the catalog); a pass that changes nothing rewrites nothing
//! (see `retention.rs`). The map is applied by the next retention pass (within half a
//! minute), is not saved, and a longer retention keeps only what is still stored when set.
//!
//! Live streams catching up from the store are told what retention removed with a gap: the
//! store holds every event from [`Store::held_from`] on, which is past the last event
//! retention removed, thinning included, and [`Store::removed_events`] bounds what a gap before
//! it loses, the events a thinned partition still holds included.
//!
//! # Guarantees
//!
//! - **Crash-safe**: a flush writes whole files (temporary name, sync, rename, directory sync)
//!   and then the checkpoint; a crash before the checkpoint leaves files that the next start
//!   removes, and the store reads the log again from the checkpoint. No event is lost or
//!   stored twice. The log cursor is committed only after the checkpoint, so the log keeps
//!   every record the store has not made durable.
//! - **Bounded**: the writer holds at most `flush_size` bytes of events before flushing;
//!   retention removes whole partitions by age and by each tenant's total size, and events of
//!   deployments kept shorter than their tenant; small files are merged.
//! - **Damage is skipped, not fatal**: a file whose footer does not check out is set aside at
//!   start, and a chunk that does not check out is skipped by queries; both are logged and
//!   counted (`flumen_store_corrupt_files_total`, `flumen_store_corrupt_chunks_total`).
//! - **A full disk pauses the store**, not flumen: the writer stops reading the log (which
//!   keeps the events), reports `flumen_store_paused` = 1, and resumes by itself.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flumen_wal::{Position, WalReader};
use tokio::sync::watch;

mod catalog;
mod checkpoint;
mod compaction;
mod fields;
mod format;
mod position;
mod query;
mod retention;
mod writer;

pub use format::EventRef;
pub use position::{BadEventPosition, EventPosition};
pub use query::{
    BadSearchCursor, Direction, FoundEvent, LogOrderRequest, MetricRequest, MetricResult,
    RawPrefilter, ScanStats, SearchCursor, SearchRequest, SearchResult, StreamStats, Truncated,
};
pub use writer::LabelReader;

/// Top-level fields read out of a msgpack record without decoding it, as the store reads its
/// labels: for others that look events up by field values (live streams' subscription index).
pub mod raw_fields {
    pub use crate::fields::{scalar_text, scan_raw_fields};
}

use catalog::SharedCatalog;
use checkpoint::{Checkpoint, Commits};

/// The name of the store's cursor in the durable log.
pub const LOG_READER: &str = "@store";

/// How long a tenant's events are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Partitions whose hour ended longer ago than this are removed, but for the events of
    /// deployments kept longer ([`Store::set_deployment_retention`]).
    pub max_age: Option<Duration>,
    /// The oldest partitions are removed while the tenant's files take more than this.
    pub max_bytes: Option<u64>,
}

/// The store's settings (`[store]` in the configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// Where the store's files are.
    pub dir: PathBuf,
    /// The fields whose values make a stream (low cardinality only).
    pub labels: Vec<String>,
    /// The fields indexed per chunk (any cardinality), never labels.
    pub indexed_fields: Vec<String>,
    /// Gathered events are written at least this often...
    pub flush_interval: Duration,
    /// ... and as soon as this many bytes are gathered.
    pub flush_size: usize,
    /// zstd's level for merged chunks, 1 (fast) to 19 (small); flushes use level 1.
    pub compression_level: i32,
    /// Retention of every tenant without its own.
    pub retention: Retention,
    /// Retention by tenant.
    pub tenant_retention: BTreeMap<String, Retention>,
    /// The most events one search returns.
    pub max_limit: usize,
    /// How long one search may run before it returns what it found, marked as cut.
    pub query_timeout: Duration,
}

impl StoreConfig {
    /// The defaults, with the files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            labels: ["tag", "service", "environment", "level"]
                .map(String::from)
                .to_vec(),
            indexed_fields: ["deployment_id", "request_id", "trace_id", "container_id"]
                .map(String::from)
                .to_vec(),
            flush_interval: Duration::from_secs(2),
            flush_size: 32 << 20,
            // Measured on the store's benchmark corpus (`docs/benchmarks.md`): level 1 makes
            // ~1 MiB chunks of msgpack records with hex ids smaller than level 3, in less time.
            compression_level: 1,
            retention: Retention {
                max_age: Some(Duration::from_secs(7 * 24 * 3600)),
                max_bytes: None,
            },
            tenant_retention: BTreeMap::new(),
            max_limit: 5_000,
            query_timeout: Duration::from_secs(30),
        }
    }

    /// What is wrong with these settings, if anything.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok =
            |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        for name in self.labels.iter().chain(&self.indexed_fields) {
            if !name_ok(name) {
                return Err(format!(
                    "store: {name:?} is not a field name (letters, digits and _; a top-level field)"
                ));
            }
        }
        if let Some(both) = self.labels.iter().find(|l| self.indexed_fields.contains(l)) {
            return Err(format!(
                "store: {both:?} is both a label and an indexed field; a high-cardinality field must not be a label"
            ));
        }
        if self.labels.len() > 16 {
            return Err("store: at most 16 labels (each label multiplies the streams)".into());
        }
        if !(1..=19).contains(&self.compression_level) {
            return Err("store: compression_level must be 1 to 19".into());
        }
        if self.flush_size < 64 << 10 {
            return Err("store: flush_size must be at least 64 KiB".into());
        }
        Ok(())
    }

    fn retention_of(&self, tenant: &str) -> Retention {
        self.tenant_retention
            .get(tenant)
            .copied()
            .unwrap_or(self.retention)
    }
}

/// What can go wrong opening or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("store: {0}")]
    Io(#[from] std::io::Error),
}

/// The store's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Chunk files.
    pub files: usize,
    /// Chunks in them.
    pub chunks: usize,
    /// Bytes on disk.
    pub bytes: u64,
    /// Events stored.
    pub events: u64,
}

/// The store: open it, run its writer on the log, search it.
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    dir: PathBuf,
    catalog: SharedCatalog,
    /// The checkpoint and the file numbers, shared by flushes and merges.
    commits: Commits,
    /// Set when flumen stops: a merge under way gives up (its files are merged later).
    stopping: std::sync::atomic::AtomicBool,
    /// Wakes the maintenance thread while the writer runs.
    maintenance: std::sync::Mutex<Option<std::sync::mpsc::SyncSender<compaction::Wake>>>,
    /// The first log record not yet stored: what a search can see up to.
    stored_up_to: watch::Sender<Position>,
    /// Why the writer cannot write, while it cannot.
    paused: std::sync::Mutex<Option<String>>,
    /// What retention removed since the store opened, by tenant, newest last.
    removed: std::sync::Mutex<HashMap<String, VecDeque<RemovedSpan>>>,
    /// Deployments kept longer or shorter than their tenant (see `retention.rs`); `None` while
    /// retention by age waits for the first map ([`Store::await_deployment_retention`]).
    deployment_retention: std::sync::Mutex<Option<Arc<retention::DeploymentRetention>>>,
    /// Files a retention rewrite wrote, or found it need not change, by number: which events
    /// they can hold at most, so that a pass that changes nothing rewrites nothing.
    thinned: std::sync::Mutex<HashMap<u64, retention::Keep>>,
    /// Taken by each merge and retention pass, so that no two rewrite the same files.
    maintaining: std::sync::Mutex<()>,
}

/// Events retention removed, by log position: a file's, or those a rewrite left out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RemovedSpan {
    first: EventPosition,
    last: EventPosition,
    events: u64,
}

/// Removed spans remembered per tenant (a week of hourly partitions is 168 of them, before
/// merges make one file of each).
const REMOVED_SPANS_KEPT: usize = 10_000;

impl Store {
    /// Opens (or creates) the store in `config.dir`: recovers from an unfinished flush or
    /// compaction and loads every file's footer. Blocking.
    pub fn open(config: StoreConfig) -> Result<Arc<Self>, StoreError> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir)?;
        let checkpoint = match Checkpoint::load(&dir) {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(message = "The store's checkpoint is damaged; rebuilding it from the files (a flush under way at a crash may be stored twice).", %error);
                None
            }
        };
        let loaded = catalog::load(&dir, checkpoint.as_ref())?;
        let checkpoint = match checkpoint {
            Some(mut checkpoint) => {
                checkpoint.removing.clear();
                checkpoint
            }
            None => {
                let next_seq = loaded
                    .catalog
                    .all()
                    .map(|f| f.footer.seq + 1)
                    .max()
                    .unwrap_or(0);
                Checkpoint::new(
                    loaded.last_record.map_or(0, |r| r + 1),
                    next_seq,
                    Vec::new(),
                )
            }
        };
        // Written at once: a new store's first flush, or the next one after a damaged
        // checkpoint, must find one to be all-or-nothing. Withdrawn files were removed.
        checkpoint.save(&dir)?;
        let files = loaded.catalog.all().count();
        tracing::info!(message = "Store open.", dir = %dir.display(), files, bytes = loaded.catalog.size(), stored_up_to = checkpoint.stored_up_to);
        metrics::gauge!("flumen_store_files").set(files as f64);
        Ok(Arc::new(Self {
            config,
            dir,
            catalog: SharedCatalog::new(loaded.catalog),
            stored_up_to: watch::Sender::new(Position::new(checkpoint.stored_up_to)),
            commits: Commits::new(checkpoint),
            stopping: std::sync::atomic::AtomicBool::new(false),
            maintenance: std::sync::Mutex::new(None),
            paused: std::sync::Mutex::new(None),
            removed: std::sync::Mutex::new(HashMap::new()),
            deployment_retention: std::sync::Mutex::new(Some(Arc::default())),
            thinned: std::sync::Mutex::default(),
            maintaining: std::sync::Mutex::new(()),
        }))
    }

    /// The settings it was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// How many files and bytes the store holds now.
    pub fn stats(&self) -> StoreStats {
        let catalog = self.catalog.snapshot();
        StoreStats {
            files: catalog.all().count(),
            chunks: catalog.all().map(|f| f.footer.chunks.len()).sum(),
            bytes: catalog.size(),
            events: catalog
                .all()
                .flat_map(|f| &f.footer.chunks)
                .map(|c| u64::from(c.count))
                .sum(),
        }
    }

    /// Why the store cannot write now (a full disk, say), while it cannot; it tries again by
    /// itself.
    pub fn paused(&self) -> Option<String> {
        self.paused.lock().expect("paused lock").clone()
    }

    pub(crate) fn set_paused(&self, why: Option<String>) {
        metrics::gauge!("flumen_store_paused").set(if why.is_some() { 1.0 } else { 0.0 });
        *self.paused.lock().expect("paused lock") = why;
    }

    /// The first log record not yet stored: every event before it is searchable.
    pub fn stored_up_to(&self) -> Position {
        *self.stored_up_to.borrow()
    }

    /// Waits until every event of log records before `position` is searchable.
    pub async fn wait_stored(&self, position: Position) {
        let mut rx = self.stored_up_to.subscribe();
        let _ = rx.wait_for(|stored| *stored >= position).await;
    }

    /// Starts the writer on its own thread: it reads the log through `reader` (the cursor
    /// [`LOG_READER`]) until `stop` holds a deadline, then flushes what it has if there is time
    /// left. `runtime` runs its waits.
    pub fn spawn_writer(
        self: &Arc<Self>,
        reader: WalReader,
        runtime: tokio::runtime::Handle,
        stop: watch::Receiver<Option<Instant>>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let writer = writer::Writer::new(self.clone(), reader)?;
        std::thread::Builder::new()
            .name("flumen-store".into())
            .spawn(move || writer.run(runtime, stop))
    }

    /// The position from which on the store holds every event of `tenant`'s that it has taken
    /// from the log: its oldest event's, or, when retention removed events after that (a
    /// deployment's retention thinned a partition it left in place, or a partition without a
    /// longer-kept deployment went while an older one stayed), the first log record after the
    /// last event it removed. Partitions are by arrival, so before retention thins anything
    /// this is the oldest event held. Conservative: events held before it are not counted on.
    pub fn held_from(&self, tenant: &str) -> Option<EventPosition> {
        let catalog = self.catalog.snapshot();
        let oldest = catalog
            .files(tenant)
            .iter()
            .flat_map(|file| &file.footer.chunks)
            .map(format::ChunkMeta::first_position)
            .min()?;
        Some(match self.commits.removed_through(tenant) {
            Some(removed) => oldest.max(EventPosition::new(removed.record.next(), 0)),
            None => oldest,
        })
    }

    /// At most how many of `tenant`'s events of log records `from..to` retention removed, as
    /// far as this process saw it remove them: the events of every removed file with events
    /// there (a file only partly there counts whole) and the events rewrites left out there
    /// (counted whole, from the first to the last left out). Where the events a rewrite kept
    /// lie before [`Store::held_from`], they count too, since a live stream's gap up to there
    /// skips them with the rest (each chunk with events there counts whole): the answer bounds
    /// what a gap over `from..to` loses. `None` when it removed none there since the store
    /// opened (before that, the count is not known).
    pub fn removed_events(&self, tenant: &str, from: Position, to: Position) -> Option<u64> {
        let removed = self.removed.lock().expect("removed lock");
        let spans = removed.get(tenant)?;
        let within = spans
            .iter()
            .filter(|span| span.last.record >= from && span.first.record < to);
        let mut events = None;
        for span in within {
            *events.get_or_insert(0) += span.events;
        }
        drop(removed);
        Some(events? + self.held_before_held_from(tenant, from, to))
    }

    /// The events of `tenant`'s chunks with events of log records `from..to` that start before
    /// [`Store::held_from`] (each chunk counted whole).
    fn held_before_held_from(&self, tenant: &str, from: Position, to: Position) -> u64 {
        let Some(held_from) = self.held_from(tenant) else {
            return 0;
        };
        let catalog = self.catalog.snapshot();
        catalog
            .files(tenant)
            .iter()
            .flat_map(|file| &file.footer.chunks)
            .filter(|chunk| chunk.first_position() < held_from)
            .filter(|chunk| {
                chunk.last_position().record >= from && chunk.first_position().record < to
            })
            .map(|chunk| u64::from(chunk.count))
            .sum()
    }

    /// Remembers what the files `removed` held, for [`Store::removed_events`].
    fn remember_removed(&self, catalog: &catalog::Catalog, removed: &BTreeSet<u64>) {
        for (tenant, files) in &catalog.tenants {
            for file in files.iter().filter(|f| removed.contains(&f.footer.seq)) {
                let chunks = &file.footer.chunks;
                let (Some(first), Some(last)) = (
                    chunks.iter().map(format::ChunkMeta::first_position).min(),
                    chunks.iter().map(format::ChunkMeta::last_position).max(),
                ) else {
                    continue;
                };
                let events = chunks.iter().map(|c| u64::from(c.count)).sum();
                self.remember_span(
                    tenant,
                    RemovedSpan {
                        first,
                        last,
                        events,
                    },
                );
            }
        }
    }

    /// Remembers events retention removed, for [`Store::removed_events`].
    fn remember_span(&self, tenant: &str, span: RemovedSpan) {
        let mut remembered = self.removed.lock().expect("removed lock");
        let spans = remembered.entry(tenant.to_owned()).or_default();
        spans.push_back(span);
        if spans.len() > REMOVED_SPANS_KEPT {
            spans.pop_front();
        }
    }

    /// The right to merge or rewrite files: one merge or retention pass at a time, so that no
    /// two replace the same files.
    fn maintenance_turn(&self) -> std::sync::MutexGuard<'_, ()> {
        self.maintaining.lock().expect("maintenance turn lock")
    }
}
