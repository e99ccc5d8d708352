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
//! Retention rewrites a partition through the same merge, keeping only some deployments'
//! events (see `retention.rs`): chunks whose filters rule out every event to leave out are
//! taken as they are, chunks whose filters rule out every event to keep are not read.
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
use crate::fields::{scalar_text, scan_raw_fields};
use crate::format::{self, ChunkDecoder, ChunkMeta, FileFooter, FileWriter};
use crate::position::EventPosition;
use crate::query::report_corrupt_chunk;
use crate::retention::{DEPLOYMENT_FIELD, Fate, Keep};
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
    merger: Merger,
    last_retention: Option<Instant>,
}

impl Compactor {
    fn new(store: Arc<Store>) -> io::Result<Self> {
        Ok(Self {
            merger: Merger::new(&store)?,
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
            let _turn = self.store.maintenance_turn();
            let catalog = self.store.catalog.snapshot();
            for files in catalog.tenants.values() {
                for partition in files.chunk_by(|a, b| a.footer.hour == b.footer.hour) {
                    if partition.len() > 1 {
                        let tier = top_tier(partition).saturating_add(1);
                        self.merger
                            .merge(&self.store, partition.to_vec(), tier, None)?;
                    }
                }
            }
        }
        let now_secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        loop {
            // Chosen under the turn: a retention pass may have withdrawn files meanwhile.
            let _turn = self.store.maintenance_turn();
            let Some((files, tier)) = next_merge(&self.store.catalog.snapshot(), now_secs) else {
                return Ok(());
            };
            self.merger.merge(&self.store, files, tier, None)?;
        }
    }
}

/// What a merge left out (a retention rewrite's events whose retention expired).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LeftOut {
    /// How many events.
    pub events: u64,
    /// The first and last of them, by log position.
    pub span: Option<(EventPosition, EventPosition)>,
}

impl LeftOut {
    /// Counts `events` events from `first` to `last`.
    fn add(&mut self, events: u64, first: EventPosition, last: EventPosition) {
        self.events += events;
        self.span = Some(match self.span {
            Some((from, to)) => (from.min(first), to.max(last)),
            None => (first, last),
        });
    }
}

/// What a merge did.
#[derive(Debug, Default)]
pub(crate) struct Merged {
    /// False when a merge that filters found nothing to leave out and wrote nothing: the files
    /// stay as they are.
    pub replaced: bool,
    /// The file written in their place, unless nothing was kept.
    pub written: Option<Arc<FileEntry>>,
    pub left_out: LeftOut,
}

/// Merges a partition's files into one: the machinery compaction and retention's rewrites
/// share, with one compression context and one decompression context kept from merge to merge.
pub(crate) struct Merger {
    sealer: Sealer,
    decoder: ChunkDecoder,
    /// Index keys and string lines of the events a merge gathers.
    fields: FieldReader,
    /// The deployment field, the one a filter reads.
    deployment_field: [String; 1],
}

impl Merger {
    pub fn new(store: &Store) -> io::Result<Self> {
        Ok(Self {
            sealer: Sealer::new(store.config.compression_level)?,
            decoder: ChunkDecoder::new()?,
            fields: FieldReader::new(&[], &store.config.indexed_fields),
            deployment_field: [DEPLOYMENT_FIELD.to_owned()],
        })
    }

    /// Merges `files` (of one partition) into one file of tier `tier`, keeping every event, or
    /// with `keep` only the events it keeps. A merge with `keep` that leaves nothing out writes
    /// nothing; one that keeps nothing withdraws the files without writing one. The caller
    /// holds the maintenance turn ([`Store::maintenance_turn`]).
    pub fn merge(
        &mut self,
        store: &Store,
        mut files: Vec<Arc<FileEntry>>,
        tier: u8,
        keep: Option<&Keep>,
    ) -> Result<Merged, StoreError> {
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
            seq: store.commits.file_number(),
            tier,
            replaces: replaced.iter().copied().collect(),
            chunks: Vec::new(),
        };
        let mut dirs = BTreeSet::new();
        let mut out = store.create_file(&footer, &mut dirs)?;
        let mut open = OpenChunk::new(0, &tenant, hour, Vec::new());
        let mut keys = Vec::new();
        let mut left_out = LeftOut::default();
        for (labels, chunks) in streams {
            if store.stopping.load(Ordering::SeqCst) {
                return Err(io::Error::from(io::ErrorKind::Interrupted).into());
            }
            open.clear();
            open.labels = labels.clone();
            for (file, meta) in chunks {
                let handle = &handles[file];
                let fate = keep.map_or(Fate::Kept, |keep| keep.fate(|d| store.may_hold(meta, d)));
                if fate == Fate::LeftOut {
                    left_out.add(
                        u64::from(meta.count),
                        meta.first_position(),
                        meta.last_position(),
                    );
                    continue;
                }
                if fate == Fate::Kept && meta.raw_len as usize >= BIG_CHUNK {
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
                    if fate == Fate::Decide
                        && let Some(keep) = keep
                        && !keep.keeps(self.deployment_of(event.record).as_deref())
                    {
                        left_out.add(1, event.position, event.position);
                        continue;
                    }
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
        if keep.is_some() && left_out.events == 0 {
            // Dropping the writer removes its temporary file.
            return Ok(Merged::default());
        }
        let written = if keep.is_some() && out.chunk_count() == 0 {
            drop(out); // Nothing kept: no file (its temporary one is removed).
            None
        } else {
            Some(store.finish_file(out, footer)?)
        };
        let committed = store.sync_dirs(&dirs).and_then(|()| {
            // The replaced files are withdrawn as of this checkpoint, even if a search keeps
            // them on disk a while longer.
            let mut commit = store.commits.lock();
            if let Some((_, last)) = left_out.span {
                store.commits.note_removed(&tenant, last);
            }
            let mut removing = store.catalog.withdrawn();
            removing.extend(&replaced);
            let stored_up_to = commit.saved().stored_up_to;
            commit.save(&store.dir, stored_up_to, removing)?;
            metrics::counter!("flumen_store_compactions_total").increment(1);
            if let Some(written) = &written {
                metrics::counter!("flumen_store_written_bytes_total").increment(written.size);
            }
            store
                .catalog
                .publish(written.iter().cloned().collect(), &replaced);
            Ok(())
        });
        if let Err(error) = committed {
            remove_files(&written.into_iter().collect::<Vec<_>>());
            return Err(error.into());
        }
        tracing::debug!(
            message = "Merged store files.",
            tenant,
            files = replaced.len(),
            tier,
            left_out = left_out.events
        );
        Ok(Merged {
            replaced: true,
            written,
            left_out,
        })
    }

    /// The event's deployment: its top-level `deployment_id`, as its index key reads it.
    fn deployment_of<'a>(&self, record: &'a [u8]) -> Option<std::borrow::Cow<'a, str>> {
        let mut deployment = None;
        scan_raw_fields(record, &self.deployment_field, |_, value| {
            deployment = scalar_text(value);
        });
        deployment
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
pub(crate) fn is_interrupted(error: &StoreError) -> bool {
    matches!(error, StoreError::Io(e) if e.kind() == io::ErrorKind::Interrupted)
}

/// The highest tier among `files`.
pub(crate) fn top_tier(files: &[Arc<FileEntry>]) -> u8 {
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
