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
//! - `query.rs`: search (log queries, newest or oldest first, with a cursor), label names
//!   and values, and the pruning of chunks by time, labels and indexed fields.
//! - `fields.rs`: labels and indexed values read from msgpack without decoding records.
//!
//! # Guarantees
//!
//! - **Crash-safe**: a flush writes whole files (temporary name, sync, rename, directory sync)
//!   and then the checkpoint; a crash before the checkpoint leaves files that the next start
//!   removes, and the store reads the log again from the checkpoint. No event is lost or
//!   stored twice. The log cursor is committed only after the checkpoint, so the log keeps
//!   every record the store has not made durable.
//! - **Bounded**: the writer holds at most `flush_size` bytes of events before flushing;
//!   retention removes whole partitions by age and by each tenant's total size; small files
//!   are merged.
//! - **Damage is skipped, not fatal**: a file whose footer does not check out is set aside at
//!   start, and a chunk that does not check out is skipped by queries; both are logged and
//!   counted (`flumen_store_corrupt_files_total`, `flumen_store_corrupt_chunks_total`).
//! - **A full disk pauses the store**, not flumen: the writer stops reading the log (which
//!   keeps the events), reports `flumen_store_paused` = 1, and resumes by itself.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use flumen_wal::{Position, WalReader};
use tokio::sync::watch;

mod catalog;
mod checkpoint;
mod compaction;
mod fields;
mod format;
mod position;
mod query;
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
    /// Partitions whose hour ended longer ago than this are removed.
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
}

/// The events of one file that retention removed, by log position.
#[derive(Debug, Clone, Copy)]
struct RemovedSpan {
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
            Some(checkpoint) => {
                Checkpoint::new(checkpoint.stored_up_to, checkpoint.next_seq, Vec::new())
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

    /// The position of the oldest event the store holds of `tenant`'s: retention removes the
    /// oldest partitions first, and partitions are by arrival, so the store holds every event
    /// from there on that it has taken from the log.
    pub fn held_from(&self, tenant: &str) -> Option<EventPosition> {
        let catalog = self.catalog.snapshot();
        catalog
            .files(tenant)
            .iter()
            .flat_map(|file| &file.footer.chunks)
            .map(format::ChunkMeta::first_position)
            .min()
    }

    /// At most how many of `tenant`'s events of log records `from..to` retention removed, as
    /// far as this process saw it remove them: the events of every removed file with events
    /// there (a file only partly there counts whole). `None` when it removed none there since
    /// the store opened (before that, the count is not known).
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
        events
    }

    /// Remembers what the files `removed` held, for [`Store::removed_events`].
    fn remember_removed(&self, catalog: &catalog::Catalog, removed: &BTreeSet<u64>) {
        let mut remembered = self.removed.lock().expect("removed lock");
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
                let spans = remembered.entry(tenant.clone()).or_default();
                spans.push_back(RemovedSpan {
                    first,
                    last,
                    events,
                });
                if spans.len() > REMOVED_SPANS_KEPT {
                    spans.pop_front();
                }
            }
        }
    }

    /// Removes partitions past their tenant's retention, by age, then by size, oldest first.
    ///
    /// The maintenance thread does this every half minute.
    pub fn apply_retention(&self, now: SystemTime) {
        let now_secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let catalog = self.catalog.snapshot();
        let mut removed = BTreeSet::new();
        for (tenant, files) in &catalog.tenants {
            let retention = self.config.retention_of(tenant);
            if let Some(max_age) = retention.max_age {
                for file in files {
                    let hour_end = (file.footer.hour + 1) * 3600;
                    if hour_end + max_age.as_secs() < now_secs {
                        removed.insert(file.footer.seq);
                    }
                }
            }
            if let Some(max_bytes) = retention.max_bytes {
                let mut total: u64 = files
                    .iter()
                    .filter(|f| !removed.contains(&f.footer.seq))
                    .map(|f| f.size)
                    .sum();
                // Whole partitions, oldest first (files are in hour order).
                let mut hours = files.chunk_by(|a, b| a.footer.hour == b.footer.hour);
                while total > max_bytes {
                    let Some(partition) = hours.next() else { break };
                    for file in partition {
                        if removed.insert(file.footer.seq) {
                            total -= file.size;
                        }
                    }
                }
            }
        }
        if !removed.is_empty() {
            tracing::info!(
                message = "Retention removes store files.",
                files = removed.len()
            );
            metrics::counter!("flumen_store_retention_removed_files_total")
                .increment(removed.len() as u64);
            self.remember_removed(&catalog, &removed);
            drop(catalog);
            self.catalog.publish(Vec::new(), &removed);
        }
        let catalog = self.catalog.snapshot();
        metrics::gauge!("flumen_store_files").set(catalog.all().count() as f64);
        metrics::gauge!("flumen_store_disk_bytes").set(catalog.size() as f64);
    }
}
