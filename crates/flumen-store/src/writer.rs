//! The store's writer: one thread that reads the durable log through the cursor `@store`,
//! gathers events into open chunks by tenant, arrival hour and stream, and flushes them as
//! chunk files; after a flush it merges a partition's small files, and now and then it applies
//! retention.
//!
//! A flush covers every event of the log records read so far, so the checkpoint it writes last
//! (see `checkpoint.rs`) is one log position; only then is the log cursor committed, which
//! lets the log remove what the store has. When a flush fails (a full disk, say) the writer
//! keeps what it gathered, stops reading the log (which keeps the events), says so in its log
//! and in `flumen_store_paused`, and tries again every few seconds until it succeeds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use flumen_event::batch::BatchRef;
use flumen_wal::{Position, Read, WalReader};
use tokio::sync::watch;

use crate::catalog::FileEntry;
use crate::checkpoint::{Checkpoint, sync_dir};
use crate::fields::scan_fields;
use crate::format::{
    self, BlockBuilder, ChunkMeta, EventRef, FileFooter, SealedChunk, build_filter, index_key,
};
use crate::position::EventPosition;
use crate::{Store, StoreError};

/// How long the writer waits before trying a failed flush again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// How often retention runs.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(30);
/// Files smaller than this are merged with their partition's other small files...
const SMALL_FILE: u64 = 16 << 20;
/// ... once a partition has this many of them.
const COMPACT_AT: usize = 8;
/// A chunk is cut at about this many bytes before compression (flushes and compaction).
const CHUNK_TARGET: usize = 4 << 20;
/// How many log records one read takes at most.
const READ_RECORDS: usize = 1024;
const READ_BYTES: usize = 4 << 20;

/// A stream's labels, sorted by name.
type Labels = Vec<(String, String)>;

/// One stream's open chunk.
#[derive(Debug)]
struct OpenChunk {
    /// The stream's hash (see `stream_hash`).
    hash: u64,
    tenant: String,
    hour: u64,
    labels: Labels,
    builder: BlockBuilder,
    keys: Vec<u64>,
    min_time: u64,
    max_time: u64,
    first: EventPosition,
    last: EventPosition,
}

impl OpenChunk {
    fn new(hash: u64, tenant: &str, hour: u64, labels: Labels) -> Self {
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
        }
    }

    /// Empties it for the stream's next chunk, keeping its buffers.
    fn clear(&mut self) {
        self.builder.clear();
        self.keys.clear();
        self.min_time = u64::MAX;
        self.max_time = 0;
    }

    fn push(&mut self, event: &EventRef<'_>, keys: impl Iterator<Item = u64>) {
        if self.builder.count() == 0 {
            self.first = event.position;
        }
        self.last = event.position;
        self.min_time = self.min_time.min(event.time_ns);
        self.max_time = self.max_time.max(event.time_ns);
        self.keys.extend(keys);
        self.builder.push(event);
    }

    /// Compresses the chunk; where it is and its checksums are filled in when it is written.
    /// `zstd` is the sealing thread's compression context, reused from chunk to chunk.
    fn seal(
        &self,
        zstd: &mut zstd::bulk::Compressor<'static>,
    ) -> io::Result<(ChunkMeta, SealedChunk)> {
        let (head, body) = self.builder.encode();
        let too_big = |_| io::Error::other("chunk over 4 GiB");
        let sealed = SealedChunk {
            head: zstd.compress(&head)?,
            body: zstd.compress(&body)?,
        };
        let meta = ChunkMeta {
            labels: self.labels.clone(),
            min_time: self.min_time,
            max_time: self.max_time,
            first: (self.first.record.get(), self.first.index),
            last: (self.last.record.get(), self.last.index),
            count: self.builder.count(),
            offset: 0,
            head_len: 0,
            len: 0,
            head_raw_len: u32::try_from(head.len()).map_err(too_big)?,
            raw_len: u32::try_from(head.len() + body.len()).map_err(too_big)?,
            head_crc: 0,
            crc: 0,
            filter: build_filter(self.keys.clone()),
        };
        Ok((meta, sealed))
    }
}

/// Events gathered since the last flush, as open chunks.
#[derive(Debug, Default)]
struct Gathered {
    chunks: Vec<OpenChunk>,
    /// Open chunks by a hash of (tenant, hour, labels); collisions are told apart by comparing.
    by_stream: HashMap<u64, Vec<usize>>,
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

/// Reads labels and index keys out of records, by the store's configuration.
#[derive(Debug)]
pub(crate) struct FieldReader {
    /// Label names, sorted, then indexed field names.
    names: Vec<String>,
    label_count: usize,
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
        Self {
            names,
            label_count,
            tag_label,
        }
    }

    /// The event's label values (by label number; `None` when absent) and index keys.
    pub fn read<'a>(
        &self,
        tag: &'a str,
        record: &'a [u8],
        values: &mut Vec<Option<std::borrow::Cow<'a, str>>>,
        keys: &mut Vec<u64>,
    ) {
        values.clear();
        values.resize(self.label_count, None);
        keys.clear();
        scan_fields(record, &self.names, |i, text| {
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
    }

    /// The label names, sorted.
    pub fn label_names(&self) -> &[String] {
        &self.names[..self.label_count]
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
    checkpoint: Checkpoint,
    paused: Option<String>,
    last_maintenance: Instant,
    /// The compression context every chunk is sealed with.
    compressor: zstd::bulk::Compressor<'static>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("next_record", &self.next_record)
            .field("checkpoint", &self.checkpoint)
            .finish_non_exhaustive()
    }
}

impl Writer {
    pub fn new(store: Arc<Store>, reader: WalReader, checkpoint: Checkpoint) -> io::Result<Self> {
        let fields = FieldReader::new(&store.config.labels, &store.config.indexed_fields);
        let next_record = checkpoint.stored_up_to.max(reader.position().get());
        let compressor = zstd::bulk::Compressor::new(store.config.compression_level)?;
        Ok(Self {
            store,
            reader,
            fields,
            gathered: Gathered::default(),
            next_record,
            checkpoint,
            paused: None,
            last_maintenance: Instant::now() - MAINTENANCE_EVERY,
            compressor,
        })
    }

    /// Runs until `stop` says so, then flushes what it gathered (unless the deadline in it has
    /// passed: the log keeps it).
    pub fn run(
        mut self,
        runtime: tokio::runtime::Handle,
        mut stop: watch::Receiver<Option<Instant>>,
    ) {
        // Timers are made on this thread, outside `block_on`.
        let _context = runtime.enter();
        loop {
            let stop_at = *stop.borrow();
            if let Some(deadline) = stop_at {
                self.finish(deadline);
                return;
            }
            if self.paused.is_some() {
                let _ = runtime.block_on(tokio::time::timeout(RETRY_AFTER_FAILURE, stop.changed()));
                let _ = self.flush();
                continue;
            }
            if self.flush_due() {
                if self.flush().is_ok()
                    && let Err(error) = self.compact()
                {
                    tracing::warn!(message = "Store compaction failed; it is tried again later.", %error);
                }
                continue;
            }
            if self.last_maintenance.elapsed() >= MAINTENANCE_EVERY {
                self.last_maintenance = Instant::now();
                self.store.apply_retention(SystemTime::now());
            }
            match self.reader.read_blocking(READ_RECORDS, READ_BYTES) {
                Ok(Read::Records(records)) if records.is_empty() => {
                    let wait = self.until_flush().min(MAINTENANCE_EVERY);
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
            None => MAINTENANCE_EVERY,
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
            self.fields
                .read(batch.tag, entry.record, &mut values, &mut keys);
            let chunk = self.open_chunk(batch.tenant, hour, &values);
            chunk.push(&event, keys.drain(..));
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
        if self.gathered.is_empty() && self.next_record == self.checkpoint.stored_up_to {
            return Ok(());
        }
        let result = self.try_flush();
        match &result {
            Ok(()) => {
                if let Some(why) = self.paused.take() {
                    tracing::info!(message = "The store writes again.", after = %why);
                    self.store.set_paused(None);
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
        let mut seq = self.checkpoint.next_seq;
        let mut plan = Vec::new();
        for ((tenant, hour), chunks) in files {
            let (metas, blocks) = seal_all(&chunks, &mut self.compressor)?;
            let footer = FileFooter {
                tenant: tenant.to_owned(),
                hour,
                seq,
                replaces: Vec::new(),
                chunks: metas,
            };
            seq += 1;
            plan.push((footer, blocks));
        }
        let written = self.write_files(plan)?;
        let checkpoint = Checkpoint::new(stored_up_to, seq, self.store.catalog.withdrawn());
        if let Err(error) = checkpoint.save(&self.store.dir) {
            remove_files(&written);
            return Err(error.into());
        }
        self.checkpoint = checkpoint;
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

    /// Writes chunk files and makes their names durable; on a failure removes what it wrote.
    fn write_files(
        &self,
        plan: Vec<(FileFooter, Vec<SealedChunk>)>,
    ) -> io::Result<Vec<Arc<FileEntry>>> {
        let mut written = Vec::new();
        let mut dirs = BTreeSet::new();
        let result = (|| {
            for (footer, blocks) in plan {
                let dir = self.store.partition_dir(&footer.tenant, footer.hour);
                if !dir.exists() {
                    std::fs::create_dir_all(&dir)?;
                    dirs.insert(dir.parent().expect("tenant dir").to_owned());
                }
                dirs.insert(dir.clone());
                let path = dir.join(format::file_name(footer.seq));
                let footer = format::write_file(&path, footer, &blocks)?;
                let size = std::fs::metadata(&path)?.len();
                written.push(Arc::new(FileEntry::new(path, footer, size)));
            }
            if dirs
                .iter()
                .any(|d| d.parent() == Some(self.store.dir.as_path()))
            {
                dirs.insert(self.store.dir.clone());
            }
            for dir in &dirs {
                sync_dir(dir)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(written),
            Err(error) => {
                remove_files(&written);
                Err(error)
            }
        }
    }

    /// Merges the small files of each partition that has [`COMPACT_AT`] of them into one,
    /// stream by stream.
    fn compact(&mut self) -> Result<(), StoreError> {
        let catalog = self.store.catalog.snapshot();
        let mut groups: BTreeMap<(&str, u64), Vec<&Arc<FileEntry>>> = BTreeMap::new();
        for file in catalog.all().filter(|f| f.size < SMALL_FILE) {
            groups
                .entry((&file.footer.tenant, file.footer.hour))
                .or_default()
                .push(file);
        }
        for ((tenant, hour), files) in groups {
            if files.len() < COMPACT_AT {
                continue;
            }
            self.compact_files(tenant, hour, &files)?;
        }
        Ok(())
    }

    fn compact_files(
        &mut self,
        tenant: &str,
        hour: u64,
        files: &[&Arc<FileEntry>],
    ) -> Result<(), StoreError> {
        // Streams in the order they first appear; each stream's events stay in log order
        // because files are taken in sequence order and chunks within a file are.
        let mut streams: Vec<(Labels, Vec<OpenChunk>)> = Vec::new();
        let indexed = &self.store.config.indexed_fields;
        let mut keys = Vec::new();
        let mut decompressor = zstd::bulk::Decompressor::new()?;
        for file in files {
            let handle = file.open()?;
            for meta in &file.footer.chunks {
                let block = match format::read_chunk(&handle, meta, true, &mut decompressor) {
                    Ok(block) => block,
                    Err(error) => {
                        crate::query::report_corrupt_chunk(&file.path, &error);
                        continue;
                    }
                };
                let slot = match streams.iter().position(|(l, _)| *l == meta.labels) {
                    Some(i) => i,
                    None => {
                        streams.push((
                            meta.labels.clone(),
                            vec![OpenChunk::new(0, tenant, hour, meta.labels.clone())],
                        ));
                        streams.len() - 1
                    }
                };
                let chunks = &mut streams[slot].1;
                for i in 0..block.len() {
                    let event = block.get(i);
                    keys.clear();
                    scan_fields(event.record, indexed, |n, text| {
                        keys.push(index_key(&indexed[n], &text))
                    });
                    let open = chunks.last_mut().expect("one chunk at least");
                    open.push(&event, keys.drain(..));
                    if open.builder.raw_len() >= CHUNK_TARGET {
                        chunks.push(OpenChunk::new(0, tenant, hour, meta.labels.clone()));
                    }
                }
            }
        }
        let chunks: Vec<&OpenChunk> = streams
            .iter()
            .flat_map(|(_, c)| c)
            .filter(|c| c.builder.count() > 0)
            .collect();
        let (metas, blocks) = seal_all(&chunks, &mut self.compressor)?;
        let replaced: BTreeSet<u64> = files.iter().map(|f| f.footer.seq).collect();
        let seq = self.checkpoint.next_seq;
        let footer = FileFooter {
            tenant: tenant.to_owned(),
            hour,
            seq,
            replaces: replaced.iter().copied().collect(),
            chunks: metas,
        };
        let written = self.write_files(vec![(footer, blocks)])?;
        // The replaced files are withdrawn as of this checkpoint, even if a search keeps them
        // on disk a while longer.
        let mut removing = self.store.catalog.withdrawn();
        removing.extend(&replaced);
        let checkpoint = Checkpoint::new(self.checkpoint.stored_up_to, seq + 1, removing);
        if let Err(error) = checkpoint.save(&self.store.dir) {
            remove_files(&written);
            return Err(error.into());
        }
        self.checkpoint = checkpoint;
        tracing::debug!(
            message = "Compacted store files.",
            tenant,
            files = replaced.len()
        );
        metrics::counter!("flumen_store_compactions_total").increment(1);
        metrics::counter!("flumen_store_written_bytes_total")
            .increment(written.iter().map(|f| f.size).sum());
        self.store.catalog.publish(written, &replaced);
        Ok(())
    }
}

/// Seals (compresses) chunks, one after the other with one compression context. (Sealing
/// on both cores was measured: no faster ingest on two cores, where the log and the sources
/// need the other one, and a few hundred megabytes more memory.)
fn seal_all(
    chunks: &[&OpenChunk],
    zstd: &mut zstd::bulk::Compressor<'static>,
) -> io::Result<(Vec<ChunkMeta>, Vec<SealedChunk>)> {
    let mut metas = Vec::with_capacity(chunks.len());
    let mut blocks = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let (meta, block) = chunk.seal(zstd)?;
        metas.push(meta);
        blocks.push(block);
    }
    Ok((metas, blocks))
}

fn remove_files(files: &[Arc<FileEntry>]) {
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
}
