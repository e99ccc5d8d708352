//! The store's writer: one thread that reads the durable log through the cursor `@store`,
//! gathers events into open chunks by tenant, arrival hour and stream, and flushes them as
//! chunk files of tier 0, compressed fast (zstd level 1). After each flush it wakes the
//! maintenance thread (`compaction.rs`), which merges files and applies retention on the other
//! core.
//!
//! A flush covers every event of the log records read so far, so the checkpoint it writes last
//! (see `checkpoint.rs`) is one log position; only then is the log cursor committed, which
//! lets the log remove what the store has. When a flush fails (a full disk, say) the writer
//! keeps what it gathered, stops reading the log (which keeps the events), says so in its log
//! and in `flumen_store_paused`, and tries again every few seconds until it succeeds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flumen_event::batch::BatchRef;
use flumen_wal::{Position, Read, WalReader};
use tokio::sync::watch;

use flumen_event::msgpack::Value;

use crate::catalog::FileEntry;
use crate::checkpoint::sync_dir;
use crate::fields::{LINE_FIELDS, scalar_text, scan_raw_fields};
use crate::format::{
    self, BlockBuilder, ChunkMeta, EventRef, FileFooter, FileWriter, SealedChunk, build_filter,
    index_key,
};
use crate::position::EventPosition;
use crate::{Store, StoreError};

/// How long the writer waits before trying a failed flush again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// The longest the writer waits for the log without looking at its flush timer.
const IDLE_WAIT: Duration = Duration::from_secs(30);
/// A chunk is cut at about this many bytes before compression (flushes and compaction).
pub(crate) const CHUNK_TARGET: usize = 1 << 20;
/// The zstd level of flushes: fast, because compaction compresses again what it merges.
const FLUSH_LEVEL: i32 = 1;
/// How many log records one read takes at most.
const READ_RECORDS: usize = 1024;
const READ_BYTES: usize = 4 << 20;

/// A stream's labels, sorted by name.
pub(crate) type Labels = Vec<(String, String)>;

/// One stream's open chunk.
#[derive(Debug)]
pub(crate) struct OpenChunk {
    /// The stream's hash (see `stream_hash`).
    hash: u64,
    tenant: String,
    hour: u64,
    pub labels: Labels,
    pub builder: BlockBuilder,
    keys: Vec<u64>,
    min_time: u64,
    max_time: u64,
    first: EventPosition,
    last: EventPosition,
    /// Every event's line is a string field so far.
    string_lines: bool,
}

impl OpenChunk {
    pub fn new(hash: u64, tenant: &str, hour: u64, labels: Labels) -> Self {
        Self {
            hash,
            tenant: tenant.to_owned(),
            hour,
            labels,
            builder: BlockBuilder::default(),
            keys: Vec::new(),
            min_time: u64::MAX,
            max_time: 0,
            first: EventPosition::default(),
            last: EventPosition::default(),
            string_lines: true,
        }
    }

    /// Empties it for the stream's next chunk, keeping its buffers.
    pub fn clear(&mut self) {
        self.builder.clear();
        self.keys.clear();
        self.min_time = u64::MAX;
        self.max_time = 0;
        self.string_lines = true;
    }

    /// Adds an event, with its index keys and whether its line is a string field.
    pub fn push(
        &mut self,
        event: &EventRef<'_>,
        keys: impl Iterator<Item = u64>,
        string_line: bool,
    ) {
        if self.builder.count() == 0 {
            self.first = event.position;
        }
        self.last = event.position;
        self.min_time = self.min_time.min(event.time_ns);
        self.max_time = self.max_time.max(event.time_ns);
        self.keys.extend(keys);
        self.string_lines &= string_line;
        self.builder.push(event);
    }
}

/// Compresses open chunks into a file being written, with one compression context and
/// buffers kept from chunk to chunk (fresh ones cost page faults).
pub(crate) struct Sealer {
    zstd: zstd::bulk::Compressor<'static>,
    head: Vec<u8>,
    body: Vec<u8>,
    sealed: SealedChunk,
}

impl Sealer {
    pub fn new(level: i32) -> io::Result<Self> {
        Ok(Self {
            zstd: zstd::bulk::Compressor::new(level)?,
            head: Vec::new(),
            body: Vec::new(),
            sealed: SealedChunk::default(),
        })
    }

    /// Compresses `chunk` and appends it to `file`.
    pub fn seal(&mut self, chunk: &OpenChunk, file: &mut FileWriter) -> io::Result<()> {
        let body = match chunk.builder.records_only_body() {
            Some(records) => {
                chunk.builder.encode_head(&mut self.head);
                records
            }
            None => {
                chunk.builder.encode_into(&mut self.head, &mut self.body);
                &self.body
            }
        };
        compress_into(&mut self.zstd, &self.head, &mut self.sealed.head)?;
        compress_into(&mut self.zstd, body, &mut self.sealed.body)?;
        let too_big = |_| io::Error::other("chunk over 4 GiB");
        let meta = ChunkMeta {
            labels: chunk.labels.clone(),
            min_time: chunk.min_time,
            max_time: chunk.max_time,
            first: (chunk.first.record.get(), chunk.first.index),
            last: (chunk.last.record.get(), chunk.last.index),
            count: chunk.builder.count(),
            offset: 0,
            head_len: 0,
            len: 0,
            head_raw_len: u32::try_from(self.head.len()).map_err(too_big)?,
            raw_len: u32::try_from(self.head.len() + body.len()).map_err(too_big)?,
            head_crc: 0,
            crc: 0,
            filter: build_filter(chunk.keys.clone()),
            string_lines: chunk.string_lines,
        };
        file.push(meta, &self.sealed)
    }
}

/// Compresses `raw` into `out`, replacing what it held.
fn compress_into(
    zstd: &mut zstd::bulk::Compressor<'static>,
    raw: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
    zstd.compress_to_buffer(raw, out)?;
    Ok(())
}

/// Hashes a stream hash (already an XXH3 digest) as itself.
#[derive(Debug, Default)]
struct StreamHashHasher(u64);

impl Hasher for StreamHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; any other key is folded in, never dropped.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Events gathered since the last flush, as open chunks.
#[derive(Debug, Default)]
struct Gathered {
    chunks: Vec<OpenChunk>,
    /// Open chunks by a hash of (tenant, hour, labels); collisions are told apart by comparing.
    by_stream: HashMap<u64, Vec<usize>, BuildHasherDefault<StreamHashHasher>>,
    /// Sealed-to-be chunks that reached the target size; they are written at the next flush.
    full: Vec<OpenChunk>,
    bytes: usize,
    events: u64,
    since: Option<Instant>,
}

impl Gathered {
    fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Empties it after a flush. Streams that had events keep their open chunk, emptied, with
    /// its buffers: they are likely to have events again before the next flush. Streams that
    /// had none since the last flush are dropped, so the streams kept stay those in use.
    fn reset(&mut self) {
        self.full.clear();
        self.chunks.retain(|c| c.builder.count() > 0);
        self.by_stream.clear();
        for (i, chunk) in self.chunks.iter_mut().enumerate() {
            chunk.clear();
            self.by_stream.entry(chunk.hash).or_default().push(i);
        }
        self.bytes = 0;
        self.events = 0;
        self.since = None;
    }

    /// Every chunk with events, full ones first.
    fn chunks(&self) -> impl Iterator<Item = &OpenChunk> {
        self.full
            .iter()
            .chain(&self.chunks)
            .filter(|c| c.builder.count() > 0)
    }
}

/// Reads labels, index keys and whether the line is a string out of records, by the store's
/// configuration.
#[derive(Debug)]
pub(crate) struct FieldReader {
    /// Label names, sorted, then indexed field names, then the line's fields not among them.
    names: Vec<String>,
    label_count: usize,
    indexed_end: usize,
    /// For each name, its rank among the line's fields (`fields::LINE_FIELDS`), if it is one.
    line_rank: Vec<Option<usize>>,
    /// Where `tag` is among the labels, if it is one.
    tag_label: Option<usize>,
}

impl FieldReader {
    pub fn new(labels: &[String], indexed: &[String]) -> Self {
        let mut label_names: Vec<String> = labels.to_vec();
        label_names.sort();
        label_names.dedup();
        let tag_label = label_names.iter().position(|n| n == "tag");
        let label_count = label_names.len();
        let mut names = label_names;
        names.extend(indexed.iter().filter(|n| !labels.contains(n)).cloned());
        let indexed_end = names.len();
        for line_field in LINE_FIELDS {
            if !names.iter().any(|n| n == line_field) {
                names.push(line_field.to_owned());
            }
        }
        let line_rank = names
            .iter()
            .map(|n| LINE_FIELDS.iter().position(|f| f == n))
            .collect();
        Self {
            names,
            label_count,
            indexed_end,
            line_rank,
            tag_label,
        }
    }

    /// The event's label values (by label number; `None` when absent) and index keys; returns
    /// whether its line is a string field (as `fields::line_bytes` finds it).
    pub fn read<'a>(
        &self,
        tag: &'a str,
        record: &'a [u8],
        values: &mut Vec<Option<std::borrow::Cow<'a, str>>>,
        keys: &mut Vec<u64>,
    ) -> bool {
        values.clear();
        values.resize(self.label_count, None);
        keys.clear();
        // The line: the best-ranked line field seen, and whether it is a string.
        let mut line: Option<(usize, bool)> = None;
        scan_raw_fields(record, &self.names, |i, value| {
            if let Some(rank) = self.line_rank[i]
                && line.is_none_or(|(best, _)| rank < best)
            {
                line = Some((rank, matches!(value, Value::Str(_))));
            }
            if i >= self.indexed_end {
                return;
            }
            let Some(text) = scalar_text(value) else {
                return;
            };
            if i >= self.label_count {
                keys.push(index_key(&self.names[i], &text));
            } else if values[i].is_none() {
                values[i] = Some(text);
            }
        });
        if let Some(t) = self.tag_label
            && values[t].is_none()
        {
            values[t] = Some(std::borrow::Cow::Borrowed(tag));
        }
        line.is_some_and(|(_, string)| string)
    }

    /// The label names, sorted.
    pub fn label_names(&self) -> &[String] {
        &self.names[..self.label_count]
    }
}

/// Reads an event's stream labels as the store files it, for events that are not stored yet
/// (live streams).
#[derive(Debug)]
pub struct LabelReader(FieldReader);

impl LabelReader {
    /// A reader of these labels (the store's `labels`).
    pub fn new(labels: &[String]) -> Self {
        Self(FieldReader::new(labels, &[]))
    }

    /// The event's labels, sorted by name; labels it lacks are absent.
    pub fn read(&self, tag: &str, record: &[u8]) -> Vec<(String, String)> {
        let (mut values, mut keys) = (Vec::new(), Vec::new());
        self.0.read(tag, record, &mut values, &mut keys);
        self.0
            .label_names()
            .iter()
            .zip(values)
            .filter_map(|(name, value)| Some((name.clone(), value?.into_owned())))
            .collect()
    }
}

/// The writer's state.
pub(crate) struct Writer {
    store: Arc<Store>,
    reader: WalReader,
    fields: FieldReader,
    gathered: Gathered,
    /// The first log record not yet gathered.
    next_record: u64,
    /// The first log record not yet stored, as the last checkpoint says.
    stored_up_to: u64,
    paused: Option<String>,
    sealer: Sealer,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("next_record", &self.next_record)
            .field("stored_up_to", &self.stored_up_to)
            .finish_non_exhaustive()
    }
}

impl Writer {
    pub fn new(store: Arc<Store>, reader: WalReader) -> io::Result<Self> {
        let fields = FieldReader::new(&store.config.labels, &store.config.indexed_fields);
        let stored_up_to = store.commits.lock().saved().stored_up_to;
        let next_record = stored_up_to.max(reader.position().get());
        Ok(Self {
            store,
            reader,
            fields,
            gathered: Gathered::default(),
            next_record,
            stored_up_to,
            paused: None,
            sealer: Sealer::new(FLUSH_LEVEL)?,
        })
    }

    /// Runs until `stop` says so, then flushes what it gathered (unless the deadline in it has
    /// passed: the log keeps it). The maintenance thread runs beside it and stops with it.
    pub fn run(
        mut self,
        runtime: tokio::runtime::Handle,
        mut stop: watch::Receiver<Option<Instant>>,
    ) {
        // Timers are made on this thread, outside `block_on`.
        let _context = runtime.enter();
        let maintenance = match crate::compaction::spawn(self.store.clone()) {
            Ok((wake, handle)) => {
                *self.store.maintenance.lock().expect("maintenance lock") = Some(wake);
                Some(handle)
            }
            Err(error) => {
                tracing::error!(message = "The store cannot start its maintenance thread; files are not merged and retention does not run.", %error);
                None
            }
        };
        loop {
            let stop_at = *stop.borrow();
            if let Some(deadline) = stop_at {
                self.store
                    .stopping
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                self.finish(deadline);
                break;
            }
            if self.paused.is_some() {
                let _ = runtime.block_on(tokio::time::timeout(RETRY_AFTER_FAILURE, stop.changed()));
                let _ = self.flush();
                continue;
            }
            if self.flush_due() {
                let _ = self.flush();
                continue;
            }
            match self.reader.read_blocking(READ_RECORDS, READ_BYTES) {
                Ok(Read::Records(records)) if records.is_empty() => {
                    let wait = self.until_flush();
                    let reader = &mut self.reader;
                    runtime.block_on(async {
                        tokio::select! {
                            _ = reader.wait() => {}
                            _ = stop.changed() => {}
                            _ = tokio::time::sleep(wait) => {}
                        }
                    });
                }
                Ok(Read::Records(records)) => {
                    for record in records {
                        self.gather(record.position, &record.payload);
                    }
                }
                Ok(Read::Removed { from, to }) => {
                    tracing::warn!(message = "The log removed records before the store read them; their events are not in the store.", from = %from, to = %to);
                    metrics::counter!("flumen_store_missed_records_total")
                        .increment(to.since(from));
                    self.next_record = self.next_record.max(to.get());
                }
                Err(error) => {
                    tracing::error!(message = "The store cannot read the log; trying again.", %error);
                    let _ =
                        runtime.block_on(tokio::time::timeout(RETRY_AFTER_FAILURE, stop.changed()));
                }
            }
        }
        // Closing the channel stops the maintenance thread (a merge under way gives up between
        // two streams, seeing `stopping`).
        self.store
            .maintenance
            .lock()
            .expect("maintenance lock")
            .take();
        if let Some(handle) = maintenance {
            let _ = handle.join();
        }
    }

    /// At a stop: stores what the log holds, as far as the deadline allows; what is left is
    /// read from the log again at the next start.
    fn finish(&mut self, deadline: Instant) {
        while self.paused.is_none() && Instant::now() < deadline {
            match self.reader.read_blocking(READ_RECORDS, READ_BYTES) {
                Ok(Read::Records(records)) if !records.is_empty() => {
                    for record in records {
                        self.gather(record.position, &record.payload);
                    }
                    if self.flush_due() && self.flush().is_err() {
                        break;
                    }
                }
                Ok(Read::Removed { to, .. }) => self.next_record = self.next_record.max(to.get()),
                _ => break,
            }
        }
        if Instant::now() >= deadline || self.flush().is_err() {
            tracing::warn!(
                message = "The store stopped before storing all the log holds; it reads the rest from the log at start."
            );
        }
    }

    fn until_flush(&self) -> Duration {
        match self.gathered.since {
            Some(since) => self
                .store
                .config
                .flush_interval
                .saturating_sub(since.elapsed()),
            None => IDLE_WAIT,
        }
    }

    fn flush_due(&self) -> bool {
        self.gathered.bytes >= self.store.config.flush_size
            || self
                .gathered
                .since
                .is_some_and(|s| s.elapsed() >= self.store.config.flush_interval)
    }

    /// Adds one log record's events.
    fn gather(&mut self, position: Position, payload: &[u8]) {
        if position.get() < self.next_record {
            return; // Stored before a restart.
        }
        self.next_record = position.get() + 1;
        let batch = match BatchRef::parse(payload) {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(message = "A log record is not a batch; the store skips it.", position = %position, %error);
                return;
            }
        };
        let hour = batch.received_at / 1_000_000_000 / 3600;
        let mut values = Vec::new();
        let mut keys = Vec::new();
        for (index, entry) in batch.iter().enumerate() {
            // Entries were validated when they entered the log; one that is not well formed
            // now ends the batch for the store as it does for every reader.
            let Ok(entry) = entry else {
                tracing::warn!(message = "A malformed entry in a log record; the store skips the rest of it.", position = %position);
                break;
            };
            let event = EventRef {
                position: EventPosition::new(position, index as u32),
                time_ns: time_ns(entry.time),
                tag: batch.tag,
                metadata: entry.metadata,
                record: entry.record,
            };
            let string_line = self
                .fields
                .read(batch.tag, entry.record, &mut values, &mut keys);
            let chunk = self.open_chunk(batch.tenant, hour, &values);
            chunk.push(&event, keys.drain(..), string_line);
            let full = chunk.builder.raw_len() >= CHUNK_TARGET;
            self.gathered.bytes += entry.record.len() + 16;
            self.gathered.events += 1;
            if full {
                self.seal_full(batch.tenant, hour, &values);
            }
        }
        if self.gathered.since.is_none() {
            self.gathered.since = Some(Instant::now());
        }
    }

    /// The open chunk of the stream with these label values, created if needed.
    fn open_chunk(
        &mut self,
        tenant: &str,
        hour: u64,
        values: &[Option<std::borrow::Cow<'_, str>>],
    ) -> &mut OpenChunk {
        let hash = stream_hash(tenant, hour, values);
        let names = self.fields.label_names();
        let candidates = self.gathered.by_stream.entry(hash).or_default();
        let found = candidates.iter().copied().find(|&i| {
            let chunk = &self.gathered.chunks[i];
            chunk.tenant == tenant
                && chunk.hour == hour
                && same_labels(&chunk.labels, names, values)
        });
        let index = match found {
            Some(i) => i,
            None => {
                let labels = names
                    .iter()
                    .zip(values)
                    .filter_map(|(n, v)| v.as_ref().map(|v| (n.clone(), v.to_string())))
                    .collect();
                self.gathered
                    .chunks
                    .push(OpenChunk::new(hash, tenant, hour, labels));
                let i = self.gathered.chunks.len() - 1;
                candidates.push(i);
                i
            }
        };
        &mut self.gathered.chunks[index]
    }

    /// Moves the stream's full chunk aside and starts a new one in its place.
    fn seal_full(&mut self, tenant: &str, hour: u64, values: &[Option<std::borrow::Cow<'_, str>>]) {
        let chunk = self.open_chunk(tenant, hour, values);
        let fresh = OpenChunk::new(chunk.hash, tenant, hour, chunk.labels.clone());
        let full = std::mem::replace(chunk, fresh);
        self.gathered.full.push(full);
    }

    /// Writes what was gathered and moves the checkpoint and the log cursor past it.
    fn flush(&mut self) -> Result<(), StoreError> {
        if self.gathered.is_empty() && self.next_record == self.stored_up_to {
            return Ok(());
        }
        let result = self.try_flush();
        match &result {
            Ok(()) => {
                if let Some(why) = self.paused.take() {
                    tracing::info!(message = "The store writes again.", after = %why);
                    self.store.set_paused(None);
                }
                if let Some(wake) = &*self.store.maintenance.lock().expect("maintenance lock") {
                    let _ = wake.try_send(crate::compaction::Wake::Flushed);
                }
            }
            Err(error) => {
                metrics::counter!("flumen_store_flush_errors_total").increment(1);
                if self.paused.is_none() {
                    tracing::error!(message = "The store cannot write; it pauses (the log keeps the events) and tries again.", %error);
                }
                self.paused = Some(error.to_string());
                self.store.set_paused(self.paused.clone());
            }
        }
        result
    }

    fn try_flush(&mut self) -> Result<(), StoreError> {
        let stored_up_to = self.next_record;
        let events = self.gathered.events;
        // Grouped by file: one per (tenant, hour). What was gathered stays until the flush
        // succeeds, to be written again after a failure.
        let mut files: BTreeMap<(&str, u64), Vec<&OpenChunk>> = BTreeMap::new();
        for chunk in self.gathered.chunks() {
            files
                .entry((&chunk.tenant, chunk.hour))
                .or_default()
                .push(chunk);
        }
        // Held until the checkpoint covering these files is saved (see `Commits::lock`).
        let mut commit = self.store.commits.lock();
        let mut written = Vec::new();
        let mut dirs = BTreeSet::new();
        let result = (|| {
            for ((tenant, hour), chunks) in files {
                let footer = FileFooter {
                    tenant: tenant.to_owned(),
                    hour,
                    seq: self.store.commits.file_number(),
                    tier: 0,
                    replaces: Vec::new(),
                    chunks: Vec::new(),
                };
                let mut out = self.store.create_file(&footer, &mut dirs)?;
                for chunk in chunks {
                    self.sealer.seal(chunk, &mut out)?;
                }
                written.push(self.store.finish_file(out, footer)?);
            }
            self.store.sync_dirs(&dirs)?;
            commit.save(
                &self.store.dir,
                stored_up_to,
                self.store.catalog.withdrawn(),
            )
        })();
        drop(commit);
        if let Err(error) = result {
            remove_files(&written);
            return Err(error.into());
        }
        self.stored_up_to = stored_up_to;
        self.gathered.reset();
        let bytes: u64 = written.iter().map(|f| f.size).sum();
        self.store.catalog.publish(written, &BTreeSet::new());
        metrics::counter!("flumen_store_events_total").increment(events);
        metrics::counter!("flumen_store_written_bytes_total").increment(bytes);
        metrics::gauge!("flumen_store_stored_position").set(stored_up_to as f64);
        self.store
            .stored_up_to
            .send_replace(Position::new(stored_up_to));
        if let Err(error) = self.reader.commit_blocking(Position::new(stored_up_to)) {
            // Harmless: the checkpoint is what counts; the log just keeps records longer.
            tracing::warn!(message = "The store could not commit its log cursor.", %error);
        }
        Ok(())
    }
}

pub(crate) fn remove_files(files: &[Arc<FileEntry>]) {
    for file in files {
        let _ = std::fs::remove_file(&file.path);
    }
}

/// An event time in Unix nanoseconds, saturating past year 2554.
pub(crate) fn time_ns(time: flumen_event::EventTime) -> u64 {
    u64::try_from(time.as_unix_nanos()).unwrap_or(u64::MAX)
}

fn stream_hash(tenant: &str, hour: u64, values: &[Option<std::borrow::Cow<'_, str>>]) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(tenant.as_bytes());
    hasher.update(&hour.to_le_bytes());
    for value in values {
        match value {
            Some(v) => {
                hasher.update(&[1]);
                hasher.update(&(v.len() as u64).to_le_bytes());
                hasher.update(v.as_bytes());
            }
            None => hasher.update(&[0]),
        }
    }
    hasher.digest()
}

/// True when `labels` (present labels, sorted) are exactly `values` of `names`.
fn same_labels(
    labels: &[(String, String)],
    names: &[String],
    values: &[Option<std::borrow::Cow<'_, str>>],
) -> bool {
    let mut present = names
        .iter()
        .zip(values)
        .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)));
    labels
        .iter()
        .all(|(n, v)| present.next().is_some_and(|(pn, pv)| pn == n && pv == v))
        && present.next().is_none()
}

impl Store {
    pub(crate) fn partition_dir(&self, tenant: &str, hour: u64) -> PathBuf {
        self.dir
            .join(format::tenant_dir_name(tenant))
            .join(format::partition_dir_name(hour))
    }

    /// Starts writing the file `footer` describes, creating its partition's directory if
    /// needed; `dirs` collects the directories whose names must be synced.
    pub(crate) fn create_file(
        &self,
        footer: &FileFooter,
        dirs: &mut BTreeSet<PathBuf>,
    ) -> io::Result<FileWriter> {
        let dir = self.partition_dir(&footer.tenant, footer.hour);
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            let tenant_dir = dir.parent().expect("tenant dir").to_owned();
            if tenant_dir.parent() == Some(self.dir.as_path()) {
                dirs.insert(self.dir.clone());
            }
            dirs.insert(tenant_dir);
        }
        dirs.insert(dir.clone());
        FileWriter::create(&dir.join(format::file_name(footer.seq)))
    }

    /// Finishes a file begun by [`Store::create_file`].
    pub(crate) fn finish_file(
        &self,
        out: FileWriter,
        footer: FileFooter,
    ) -> io::Result<Arc<FileEntry>> {
        let path = self
            .partition_dir(&footer.tenant, footer.hour)
            .join(format::file_name(footer.seq));
        let footer = out.finish(footer)?;
        let size = std::fs::metadata(&path)?.len();
        Ok(Arc::new(FileEntry::new(path, footer, size)))
    }

    /// Makes the names in `dirs` durable.
    pub(crate) fn sync_dirs(&self, dirs: &BTreeSet<PathBuf>) -> io::Result<()> {
        dirs.iter().try_for_each(|dir| sync_dir(dir))
    }
}

#[cfg(test)]
mod tests {
    use flumen_event::record::{Record, Value as RecordValue};

    use super::*;
    use crate::fields::line_bytes;

    /// A search rules out whole chunks by `string_lines`: the writer must find a string line
    /// exactly where `line_bytes`, which the per-record prefilter uses, finds one.
    #[test]
    fn the_writer_sees_a_string_line_exactly_where_line_bytes_does() {
        let records: Vec<Vec<(&str, RecordValue)>> = vec![
            vec![("message", "m".into())],
            vec![("msg", "m".into()), ("log", "l".into())],
            vec![("message", RecordValue::UInt(5)), ("log", "l".into())],
            vec![("log", RecordValue::UInt(5)), ("msg", "m".into())],
            vec![("other", "x".into())],
            vec![("message", "a".into()), ("message", RecordValue::UInt(1))],
            vec![
                ("service", "message".into()),
                ("message", RecordValue::Null),
            ],
        ];
        let reader = FieldReader::new(&["service".to_owned(), "message".to_owned()], &[]);
        for fields in records {
            let record = Record::from(
                fields
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect::<Vec<_>>(),
            );
            let mut raw = Vec::new();
            record.write_msgpack(&mut raw);
            let (mut values, mut keys) = (Vec::new(), Vec::new());
            let string_line = reader.read("t", &raw, &mut values, &mut keys);
            assert_eq!(string_line, line_bytes(&raw).is_some(), "{record:?}");
        }
    }
}
