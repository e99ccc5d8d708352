//! The maintenance thread: merges a partition's files into fewer, larger chunks, and applies
//! retention. It runs beside the writer, on the other core.
//!
//! Flushes write tier-0 files, compressed fast, every `flush_interval` or `flush_size`. With
//! thousands of streams, a flush cuts each stream into a small chunk: small chunks compress
//! worse and cost a query a read each. So:
//!
//! - when a partition has [`COMPACT_AT`] files of one tier, they are merged into one file of
//!   the next tier;
//! - once a partition's hour has been over for [`SEAL_AFTER`], all its files are merged into
//!   one, so that a quiet stream ends up with one chunk per hour;
//! - on request ([`Store::compact_now`], after a bulk import), every partition is merged into
//!   one file at once, as its hour being over would do.
//!
//! A merge goes stream by stream, each stream's chunks in log order. A chunk of
//! [`BIG_CHUNK`] bytes or more is copied as it is, without decompressing it; smaller ones are
//! decoded and their events gathered into chunks of about `CHUNK_TARGET` bytes, compressed at
//! the configured `compression_level`. A busy stream's events are thus compressed twice (at
//! the flush, and at the merge that makes its chunks big); only quiet streams are merged
//! again at higher tiers, and they are small. A merge holds one chunk being built and one
//! chunk read, whatever the size of the files.
//!
//! Crash safety: the merged file is written whole (temporary name, sync, rename), names the
//! files it replaces in its footer, and a checkpoint listing them as withdrawn is saved before
//! they leave the catalog. A start after a crash keeps either the new file (and removes the
//! ones it replaces) or the old ones (and removes the new one, numbered past the checkpoint).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::catalog::{Catalog, FileEntry};
use crate::format::{self, ChunkDecoder, ChunkMeta, FileFooter, FileWriter};
use crate::query::report_corrupt_chunk;
use crate::writer::{CHUNK_TARGET, FieldReader, Labels, OpenChunk, Sealer, remove_files};
use crate::{Store, StoreError};

/// How often retention runs, and how long the thread sleeps when no flush wakes it.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(30);
/// A partition's files of one tier are merged once there are this many.
pub(crate) const COMPACT_AT: usize = 8;
/// A partition's files are all merged into one this long after its hour is over.
const SEAL_AFTER: Duration = Duration::from_secs(10 * 60);
/// A chunk at least this big (before compression) is copied as it is by a merge.
const BIG_CHUNK: usize = CHUNK_TARGET / 2;

/// What wakes the maintenance thread.
pub(crate) enum Wake {
    /// A flush wrote files.
    Flushed,
    /// Merge every partition into one file now, then answer.
    CompactAll(std::sync::mpsc::Sender<Result<(), String>>),
}

/// Starts the maintenance thread; a message on the channel wakes it, and closing the channel
/// (every sender dropped) stops it.
pub(crate) fn spawn(store: Arc<Store>) -> io::Result<(SyncSender<Wake>, JoinHandle<()>)> {
    let (wake, woken) = sync_channel(1);
    let compactor = Compactor::new(store)?;
    let handle = std::thread::Builder::new()
        .name("flumen-store-merge".into())
        .spawn(move || compactor.run(woken))?;
    Ok((wake, handle))
}

impl Store {
    /// Merges every partition's files into one now, as happens by itself once a partition's
    /// hour is over: after a bulk import, for the fewest and largest chunks. Blocking; returns
    /// once done.
    pub fn compact_now(&self) -> Result<(), StoreError> {
        let wake = self.maintenance.lock().expect("maintenance lock").clone();
        let wake = wake.ok_or_else(|| io::Error::other("the store's writer is not running"))?;
        let (answer, answered) = std::sync::mpsc::channel();
        wake.send(Wake::CompactAll(answer))
            .map_err(|_| io::Error::other("the store is stopping"))?;
        drop(wake);
        answered
            .recv()
            .map_err(|_| io::Error::other("the store is stopping"))?
            .map_err(|e| io::Error::other(e).into())
    }
}

/// The maintenance thread's state.
struct Compactor {
    store: Arc<Store>,
    sealer: Sealer,
    decoder: ChunkDecoder,
    /// Index keys and string lines of the events a merge gathers.
    fields: FieldReader,
    last_retention: Option<Instant>,
}

impl Compactor {
    fn new(store: Arc<Store>) -> io::Result<Self> {
        Ok(Self {
            sealer: Sealer::new(store.config.compression_level)?,
            decoder: ChunkDecoder::new()?,
            fields: FieldReader::new(&[], &store.config.indexed_fields),
            store,
            last_retention: None,
        })
    }

    fn run(mut self, woken: Receiver<Wake>) {
        let mut wake = Wake::Flushed;
        loop {
            if self
                .last_retention
                .is_none_or(|at| at.elapsed() >= MAINTENANCE_EVERY)
            {
                self.last_retention = Some(Instant::now());
                self.store.apply_retention(SystemTime::now());
            }
            let (everything, answer) = match wake {
                Wake::Flushed => (false, None),
                Wake::CompactAll(answer) => (true, Some(answer)),
            };
            let compacted = self.compact(everything);
            if let Err(error) = &compacted
                && !is_interrupted(error)
            {
                tracing::warn!(message = "Store compaction failed; it is tried again later.", %error);
            }
            if let Some(answer) = answer {
                let _ = answer.send(compacted.as_ref().map_err(|e| e.to_string()).copied());
            }
            if compacted.as_ref().is_err_and(is_interrupted) {
                return;
            }
            wake = match woken.recv_timeout(MAINTENANCE_EVERY) {
                Ok(wake) => wake,
                Err(RecvTimeoutError::Timeout) => Wake::Flushed,
                Err(RecvTimeoutError::Disconnected) => return,
            };
        }
    }

    /// Merges files until no partition needs it; with `everything`, first merges each
    /// partition's files (as they are now: flushes keep coming) into one.
    fn compact(&mut self, everything: bool) -> Result<(), StoreError> {
        if everything {
            let catalog = self.store.catalog.snapshot();
            for files in catalog.tenants.values() {
                for partition in files.chunk_by(|a, b| a.footer.hour == b.footer.hour) {
                    if partition.len() > 1 {
                        self.merge(partition.to_vec(), top_tier(partition).saturating_add(1))?;
                    }
                }
            }
        }
        let now_secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        while let Some((files, tier)) = next_merge(&self.store.catalog.snapshot(), now_secs) {
            self.merge(files, tier)?;
        }
        Ok(())
    }

    /// Merges `files` (of one partition) into one file of tier `tier`.
    fn merge(&mut self, mut files: Vec<Arc<FileEntry>>, tier: u8) -> Result<(), StoreError> {
        // Each file holds a range of the log that no other file of the partition overlaps, so
        // taking files in log order and chunks in file order keeps each stream in log order.
        files.sort_by_key(|f| f.footer.chunks.iter().map(|c| c.first).min());
        // Each stream's labels and chunks (file number, chunk), in order of first appearance.
        let mut streams: Vec<(&Labels, Vec<(usize, &ChunkMeta)>)> = Vec::new();
        let mut stream_of: HashMap<&Labels, usize> = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            for meta in &file.footer.chunks {
                let slot = *stream_of.entry(&meta.labels).or_insert_with(|| {
                    streams.push((&meta.labels, Vec::new()));
                    streams.len() - 1
                });
                streams[slot].1.push((i, meta));
            }
        }
        let handles = files
            .iter()
            .map(|f| f.open())
            .collect::<io::Result<Vec<_>>>()?;
        let (tenant, hour) = (files[0].footer.tenant.clone(), files[0].footer.hour);
        let replaced: BTreeSet<u64> = files.iter().map(|f| f.footer.seq).collect();
        let footer = FileFooter {
            tenant: tenant.clone(),
            hour,
            seq: self.store.commits.file_number(),
            tier,
            replaces: replaced.iter().copied().collect(),
            chunks: Vec::new(),
        };
        let mut dirs = BTreeSet::new();
        let mut out = self.store.create_file(&footer, &mut dirs)?;
        let mut open = OpenChunk::new(0, &tenant, hour, Vec::new());
        let mut keys = Vec::new();
        for (labels, chunks) in streams {
            if self.store.stopping.load(Ordering::SeqCst) {
                return Err(io::Error::from(io::ErrorKind::Interrupted).into());
            }
            open.clear();
            open.labels = labels.clone();
            for (file, meta) in chunks {
                let handle = &handles[file];
                if meta.raw_len as usize >= BIG_CHUNK {
                    self.seal(&mut open, &mut out)?;
                    if let Some(compressed) =
                        skip_damaged(&files[file], format::read_compressed(handle, meta))?
                    {
                        out.copy(meta, &compressed)?;
                    }
                    continue;
                }
                let read = self.decoder.read(handle, meta, true);
                let Some(block) = skip_damaged(&files[file], read)? else {
                    continue;
                };
                // No labels are read here (`fields` has none): it stays empty.
                let mut values = Vec::new();
                for i in 0..block.len() {
                    let event = block.get(i);
                    // Never needed when the files hold disjoint ranges of the log; a chunk's
                    // positions must rise, whatever the files say.
                    if open
                        .builder
                        .last_record()
                        .is_some_and(|last| event.position.record.get() < last)
                    {
                        self.seal(&mut open, &mut out)?;
                    }
                    let string_line =
                        self.fields
                            .read(event.tag, event.record, &mut values, &mut keys);
                    open.push(&event, keys.drain(..), string_line);
                    if open.builder.raw_len() >= CHUNK_TARGET {
                        self.seal(&mut open, &mut out)?;
                    }
                }
            }
            self.seal(&mut open, &mut out)?;
        }
        let written = self.store.finish_file(out, footer)?;
        let committed = self.store.sync_dirs(&dirs).and_then(|()| {
            // The replaced files are withdrawn as of this checkpoint, even if a search keeps
            // them on disk a while longer.
            let mut commit = self.store.commits.lock();
            let mut removing = self.store.catalog.withdrawn();
            removing.extend(&replaced);
            let stored_up_to = commit.saved().stored_up_to;
            commit.save(&self.store.dir, stored_up_to, removing)?;
            metrics::counter!("flumen_store_compactions_total").increment(1);
            metrics::counter!("flumen_store_written_bytes_total").increment(written.size);
            self.store.catalog.publish(vec![written.clone()], &replaced);
            Ok(())
        });
        if let Err(error) = committed {
            remove_files(&[written]);
            return Err(error.into());
        }
        tracing::debug!(
            message = "Merged store files.",
            tenant,
            files = replaced.len(),
            tier
        );
        Ok(())
    }

    /// Compresses the chunk being built into `out`, if it has events, and empties it.
    fn seal(&mut self, open: &mut OpenChunk, out: &mut FileWriter) -> io::Result<()> {
        if open.builder.count() > 0 {
            self.sealer.seal(open, out)?;
            open.clear();
        }
        Ok(())
    }
}

/// A chunk read, or `None` when it is damaged (reported, and left out of the merged file); an
/// error reading the disk stops the merge.
fn skip_damaged<T>(file: &FileEntry, read: io::Result<T>) -> io::Result<Option<T>> {
    match read {
        Ok(value) => Ok(Some(value)),
        Err(error) if error.kind() == io::ErrorKind::InvalidData => {
            report_corrupt_chunk(&file.path, &error);
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// True for the error of a merge given up because flumen stops.
fn is_interrupted(error: &StoreError) -> bool {
    matches!(error, StoreError::Io(e) if e.kind() == io::ErrorKind::Interrupted)
}

/// The highest tier among `files`.
fn top_tier(files: &[Arc<FileEntry>]) -> u8 {
    files.iter().map(|f| f.footer.tier).max().unwrap_or(0)
}

/// The next files to merge and the tier of the file they become: all of a partition whose
/// hour has been over for [`SEAL_AFTER`], or [`COMPACT_AT`] or more of one tier.
fn next_merge(catalog: &Catalog, now_secs: u64) -> Option<(Vec<Arc<FileEntry>>, u8)> {
    for files in catalog.tenants.values() {
        for partition in files.chunk_by(|a, b| a.footer.hour == b.footer.hour) {
            let hour_end = (partition[0].footer.hour + 1) * 3600;
            if partition.len() > 1 && hour_end + SEAL_AFTER.as_secs() <= now_secs {
                return Some((partition.to_vec(), top_tier(partition).saturating_add(1)));
            }
            let mut tiers: BTreeMap<u8, Vec<Arc<FileEntry>>> = BTreeMap::new();
            for file in partition {
                tiers
                    .entry(file.footer.tier)
                    .or_default()
                    .push(file.clone());
            }
            if let Some((tier, group)) = tiers.into_iter().find(|(_, g)| g.len() >= COMPACT_AT) {
                return Some((group, tier.saturating_add(1)));
            }
        }
    }
    None
}
