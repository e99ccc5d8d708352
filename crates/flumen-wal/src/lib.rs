//! flumen's durable write-ahead log.
//!
//! Every event flumen accepts is appended here before it is acknowledged, and every output
//! reads it from here through its own [`WalReader`]. There is no other path from an input to an
//! output: a slow or failing output only falls behind on its own cursor, and a restart resumes
//! every output where its persisted cursor stopped. Readers that are not outputs (a store, live
//! streams) read it through detached readers opened at a [`Position`].
//!
//! # Design
//!
//! - **One writer thread, one sync thread.** Inputs call [`Wal::append`] from any task; the
//!   payload's checksum is computed there, on the caller's core, and the writer thread only
//!   writes: it takes every append waiting in its queue at once and writes them with one
//!   vectored `write`. Syncing is the sync thread's job: the writer hands it "make the log
//!   durable up to here" and goes on writing while the `fdatasync` runs; requests that pile up
//!   meanwhile are served by one sync (group commit). The [`Persistence`] policy says when
//!   the writer asks: with `Always`, after every group it writes; with `Interval`, once the
//!   interval is up, or at once when someone awaits a ticket whose record is not durable yet
//!   (the ticket's first poll raises a flag and wakes the writer) — so a sender waiting for its
//!   acknowledgement waits for one or two `fdatasync`s, not for the interval, while records
//!   whose tickets nobody awaits are synced at the interval.
//! - **Acknowledged means durable.** [`AppendTicket::durable`] resolves once the record is as
//!   durable as the policy promises — with `Always` and `Interval`, after an `fdatasync` that
//!   started after the record was written; with `Os`, once it is written — and inputs
//!   acknowledge senders only then. Readers see a record only once it is durable too, so an
//!   output never ships what a crash could take back.
//! - **Bounded.** Appends in flight are bounded in bytes (the queue), and the log in size
//!   ([`WalConfig::max_size`]). When the log is full the writer, by default
//!   ([`WhenFull::Block`]), stops taking appends until outputs move on and whole segments can be
//!   removed; [`Wal::append`] then waits, which stops inputs from reading their sockets, and
//!   [`Wal::has_room`] lets request/response inputs answer "retry later" instead. An operator
//!   may prefer losing data to pushing back: [`WhenFull::DropNewest`] refuses new records,
//!   [`WhenFull::DropOldest`] removes the oldest segment; both are counted.
//! - **Positions.** Every record has a [`Position`], its sequence number: consecutive, in
//!   append order, written as a plain decimal so that it can be handed out as a cursor.
//!   [`AppendTicket::durable`] resolves to the record's position, [`WalRecord::position`] is
//!   where a record read back is, [`WalReader::position`] the next one a reader reads,
//!   [`Wal::durable_end`] "now" (one past the newest durable record), and
//!   [`WalReader::commit`] takes the position below which everything is delivered.
//! - **Readers.** A named reader ([`Wal::reader`], one per output) starts at its persisted
//!   cursor, and its committed cursor holds the segments after it on disk. A detached reader
//!   ([`Wal::reader_at`], [`Wal::recent`]) starts at any position, has no cursor and holds
//!   nothing: a position past the durable end is read from once the log gets there. Records
//!   removed before a reader read them — a position or cursor before the oldest record, a
//!   segment removed under a detached reader, [`WhenFull::DropOldest`] — are never skipped
//!   silently: the read returns [`Read::Removed`] with the range lost, and the next read goes
//!   on after it. A segment file deleted by anything but the log is an error instead.
//! - **Reads and commits off the async threads.** [`WalReader::read`] and
//!   [`WalReader::commit`] do their file I/O (a read of up to about 1 MiB, mostly page-cache
//!   hits; a cursor file written, segments unlinked) on tokio's blocking threads, the reader's
//!   file state moved there behind a lock; a read whose future is dropped leaves what it read
//!   for the next read, and a read that would find nothing is answered on the spot. The pool's
//!   threads are shared: a thread per reader hands off faster but would be thousands of threads
//!   for thousands of readers (figures in `docs/benchmarks.md`). `read_blocking` and
//!   `commit_blocking` are for callers already on a thread that may block.
//! - **Segments** (see [`segment`] for the format) are removed once every reader's committed
//!   cursor is past them. The directory is fsynced after a segment is created or removed.
//! - **A full disk is waited out, not a crash.** A write that fails with `ENOSPC` is cut back
//!   to the last whole record and retried until there is room; meanwhile the log reports itself
//!   full ([`Wal::disk_full`]) and inputs are held back. A record never follows a torn one:
//!   while the cut fails too, nothing is written (a cut that fails for another reason than a
//!   full disk poisons the log). Nothing acknowledged is at risk: an acknowledgement needs the
//!   write to have succeeded. A failed `fdatasync`, on the other hand, poisons the log: the
//!   kernel may have dropped the pages, so no later sync can vouch for them.
//! - **Sealed segments are durable.** When the active segment is full it is synced before the
//!   next one is created (unless the policy is [`Persistence::Os`], which never syncs), so that
//!   a power loss can tear only the newest segment.
//! - **Removal is serialized.** Outputs remove the segments they are all past from their own
//!   tasks, often at once; one remover at a time chooses, unlinks and forgets segments, and the
//!   log's size is kept with its segment map, so it always equals the files'.
//! - **Recovery.** [`Wal::open`] checks every segment record by record. A corrupt record is
//!   skipped and counted ([`WalStats::corrupt_records`]), never a reason to drop the good
//!   records after it or to refuse to start; only a torn tail of the newest segment (no valid
//!   record after it) is cut. Readers skip corrupt records the same way. A sealed segment with
//!   a corrupt header is skipped whole. The newest segment's header is mended instead: if
//!   records numbered from the first sequence number its file name gives follow it, the
//!   header is written again (its 16 bytes counted as corrupt) and the records kept; if none
//!   does, the segment is renamed `<name>.corrupt`, its bytes counted as corrupt, and a new
//!   segment started at a sequence number no reader has seen (at least the old segment's first
//!   and every persisted cursor). Both are logged as warnings. See [`segment`] for the record
//!   format that makes this possible.
//!
//! The log knows nothing of events, protocols or the network: a record is opaque bytes.
//!
//! ```text
//! <dir>/00000000000000000000.wal   segments, named by their first sequence number
//! <dir>/cursors/<reader>.cursor     one per output: the next sequence number it needs
//! ```

#![deny(missing_docs)]

mod cursor;
mod position;
mod reader;
pub mod segment;
mod writer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot, watch};

pub use position::{BadPosition, Position};
pub use reader::{Read, WalReader, WalRecord};

/// How durable an appended record is before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// `fdatasync` after every write; appends written together share one sync, and so do
    /// writes made while a sync runs. A ticket resolves after the sync that covers its record.
    /// Survives power loss.
    Always,
    /// `fdatasync` once per interval, and at once when a ticket whose record is not durable
    /// yet is awaited: a ticket resolves after an `fdatasync` that covers its record, so an
    /// acknowledged record survives power loss, and a sender waiting for its acknowledgement
    /// waits for a sync, not for the interval. Records whose tickets nobody awaits are synced
    /// at the interval.
    Interval(Duration),
    /// Acknowledge once the record is written to the operating system. Survives a crash of
    /// flumen (`kill -9`), not of the machine.
    Os,
}

/// What appends do when the log is at its size cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Wait until outputs move on and segments can be removed: inputs stop reading, nothing
    /// is lost.
    #[default]
    Block,
    /// Refuse the new record ([`WalError::Dropped`]): old records stay for outputs to deliver.
    DropNewest,
    /// Remove the oldest segment, even if outputs have not read it, to make room: the newest
    /// records win. Outputs skip what was removed.
    DropOldest,
}

/// Where the log lives and how it behaves.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// The log's directory; created if missing.
    pub dir: PathBuf,
    /// When appends become durable.
    pub persistence: Persistence,
    /// A segment is closed and a new one started once it reaches this size.
    pub segment_size: u64,
    /// The most disk the log may use; appends wait while it is full.
    pub max_size: u64,
    /// What appends do at the size cap.
    pub when_full: WhenFull,
    /// The most bytes of appends queued for the writer at once (memory held by appends waiting
    /// to be written).
    pub max_in_flight: usize,
}

impl WalConfig {
    /// Checks that the sizes fit together: a full log must be able to free a whole segment
    /// while the active one keeps growing.
    pub fn validate(&self) -> Result<(), WalError> {
        if self.segment_size < 1024 || self.max_size < 2 * self.segment_size {
            return Err(WalError::Config(format!(
                "max_size ({} bytes) must be at least twice segment_size ({} bytes), and segments at least 1 KiB",
                self.max_size, self.segment_size
            )));
        }
        Ok(())
    }

    /// The largest record the log can ever take. A record waits for room beside the active
    /// segment, which outputs cannot free: that segment holds up to `segment_size` — or one
    /// record larger than that, so two such records must fit together. Anything larger would
    /// wait for room that never comes.
    pub fn largest_record(&self) -> u64 {
        let overhead = segment::HEADER_LEN + segment::RECORD_HEADER_LEN as u64;
        self.max_size
            .saturating_sub(self.segment_size)
            .min(self.max_size / 2)
            .saturating_sub(overhead)
            .min(segment::MAX_RECORD_LEN as u64)
    }

    /// Defaults for a log in `dir`: fsync every 100 ms, 64 MiB segments, 2 GiB in all.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            persistence: Persistence::Interval(Duration::from_millis(100)),
            segment_size: 64 * 1024 * 1024,
            max_size: 2 * 1024 * 1024 * 1024,
            when_full: WhenFull::Block,
            max_in_flight: 16 * 1024 * 1024,
        }
    }
}

/// What went wrong with the log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    /// A file operation failed.
    #[error("{path}: {message}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        message: String,
        /// Its kind, to tell a full disk from other failures.
        kind: io::ErrorKind,
    },
    /// A file is not what the log wrote.
    #[error("{path}: corrupt log: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A write or sync failed earlier; the log refuses further appends rather than pretend.
    #[error("the log stopped accepting writes after an error: {0}")]
    Poisoned(String),
    /// The log was shut down.
    #[error("the log is closed")]
    Closed,
    /// The configuration cannot work.
    #[error("invalid log configuration: {0}")]
    Config(String),
    /// The log was full and its policy is [`WhenFull::DropNewest`]: the record was not stored.
    #[error("the log is full; the record was dropped (when_full = drop_newest)")]
    Dropped,
    /// The record is larger than a record may be.
    #[error("record of {0} bytes is over the limit of {max}", max = segment::MAX_RECORD_LEN)]
    TooLarge(usize),
    /// The record could never fit under the log's size cap, however far outputs catch up
    /// ([`WalConfig::largest_record`]): it is refused rather than waited for.
    #[error(
        "record of {size} bytes can never fit in the log: it takes at most {largest} bytes with its max_size and segment_size"
    )]
    NeverFits {
        /// The record's size.
        size: usize,
        /// The largest record the log can take.
        largest: u64,
    },
}

impl WalError {
    pub(crate) fn io(path: &Path, error: io::Error) -> Self {
        WalError::Io {
            path: path.to_owned(),
            message: error.to_string(),
            kind: error.kind(),
        }
    }
}

/// How far the log has been made durable: readers may read every record below `next_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Durable {
    /// One past the last durable record.
    next_seq: u64,
    /// The first sequence number of the segment `next_seq` falls in.
    segment: u64,
    /// The byte offset in that segment just past the last durable record.
    offset: u64,
}

/// A snapshot of the log's state, for metrics and readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalStats {
    /// The oldest record still on disk.
    pub first: Position,
    /// One past the newest durable record.
    pub durable_end: Position,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Segment files on disk.
    pub segments: usize,
    /// True while appends wait for space.
    pub full: bool,
    /// Records given up on because the log was full (dropped newest, or removed oldest).
    pub dropped_records: u64,
    /// Records lost to corruption on disk, skipped by recovery and readers (each counted once).
    pub corrupt_records: u64,
    /// Bytes of those corrupt records.
    pub corrupt_bytes: u64,
}

/// Corrupt spans found on disk, each counted once however often readers pass it.
#[derive(Debug, Default)]
struct Corruption {
    /// (segment's first sequence number, file offset) of every span counted.
    seen: Mutex<HashSet<(u64, u64)>>,
    records: AtomicU64,
    bytes: AtomicU64,
}

impl Corruption {
    /// Counts the corrupt span `span` of segment `first_seq`, holding `records` records, unless
    /// it was counted before.
    fn note(&self, dir: &Path, first_seq: u64, span: segment::CorruptSpan, records: u64) {
        if !self
            .seen
            .lock()
            .expect("corruption lock")
            .insert((first_seq, span.offset))
        {
            return;
        }
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(span.bytes, Ordering::Relaxed);
        tracing::error!(
            message = "Skipped a corrupt part of the log; the records in it are lost, the rest are kept.",
            path = %segment::segment_path(dir, first_seq).display(),
            offset = span.offset,
            bytes = span.bytes,
            records,
        );
    }
}

/// The segment files on disk, by first sequence number, with their sizes and the sum of those
/// sizes. The sum lives beside the sizes, changed only with them under one lock, so that it
/// always equals them: a separate counter drifted when two removals subtracted the same segment.
/// Reading goes through [`Deref`](std::ops::Deref) to the map; changes go through the methods.
#[derive(Debug, Default)]
pub(crate) struct Segments {
    sizes: BTreeMap<u64, u64>,
    total_bytes: u64,
}

impl From<BTreeMap<u64, u64>> for Segments {
    fn from(sizes: BTreeMap<u64, u64>) -> Self {
        let total_bytes = sizes.values().sum();
        Self { sizes, total_bytes }
    }
}

impl std::ops::Deref for Segments {
    type Target = BTreeMap<u64, u64>;

    fn deref(&self) -> &Self::Target {
        &self.sizes
    }
}

impl Segments {
    /// The bytes of every segment together.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Records that segment `first` is now `size` bytes long (a new segment, or the active one
    /// after a write).
    pub(crate) fn set_size(&mut self, first: u64, size: u64) {
        let old = self.sizes.insert(first, size).unwrap_or(0);
        self.total_bytes = self.total_without(old) + size;
    }

    /// Forgets segment `first` (its file is gone).
    fn remove(&mut self, first: u64) {
        if let Some(size) = self.sizes.remove(&first) {
            self.total_bytes = self.total_without(size);
        }
    }

    /// The total less `size`, which is part of it. The total is the sum of the sizes by
    /// construction; should it ever not be, it is summed again rather than wrapped below zero,
    /// which would make the log look full for good.
    fn total_without(&self, size: u64) -> u64 {
        let total = self.total_bytes.checked_sub(size);
        debug_assert!(
            total.is_some(),
            "segment sizes total {} bytes, less than one segment's {size}",
            self.total_bytes
        );
        total.unwrap_or_else(|| self.sizes.values().sum::<u64>().saturating_sub(size))
    }

    /// The sealed segments whose records all come before `seq`, oldest first, each with its
    /// first sequence number and how many records it holds.
    fn sealed_before(&self, seq: u64) -> Vec<(u64, u64)> {
        let firsts: Vec<u64> = self.sizes.keys().copied().collect();
        // A segment can go when the next one starts at or below `seq`.
        firsts
            .windows(2)
            .take_while(|w| w[1] <= seq)
            .map(|w| (w[0], w[1] - w[0]))
            .collect()
    }
}

struct Shared {
    config: WalConfig,
    /// The segment files and their sizes.
    segments: Mutex<Segments>,
    /// Held by whoever removes segments, from choosing them to forgetting them: two outputs
    /// committing at once must not both pick, unlink and subtract the same segments.
    removing: Mutex<()>,
    durable: watch::Sender<Durable>,
    full: AtomicBool,
    /// Records dropped under a drop policy.
    dropped_records: AtomicU64,
    /// Corrupt records skipped.
    corruption: Corruption,
    /// True while writes fail for lack of disk space and the writer waits for room.
    disk_full: AtomicBool,
    /// Set when the log is shutting down, so that a writer waiting for space gives up.
    closing: AtomicBool,
    /// How many [`CloseFollower`]s live: while any does, every write is synced at once.
    close_followers: AtomicUsize,
    /// Readers' committed cursors; the minimum decides which segments may go.
    cursors: Mutex<HashMap<String, u64>>,
    /// Signalled when segments are removed, for a writer waiting for space.
    space_freed: (Mutex<()>, Condvar),
    poisoned: Mutex<Option<String>>,
    /// Failures of file operations that a test asks for.
    #[cfg(test)]
    faults: tests::Faults,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("dir", &self.config.dir)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn cursor_dir(&self) -> PathBuf {
        self.config.dir.join("cursors")
    }

    /// The first sequence number of the segment after the one starting at `first`.
    fn segment_after(&self, first: u64) -> Option<u64> {
        self.segments
            .lock()
            .expect("segments lock")
            .range(first + 1..)
            .next()
            .map(|(&next, _)| next)
    }

    /// Counts a corrupt span a reader or recovery skipped (once per span).
    fn note_corrupt(&self, first_seq: u64, span: segment::CorruptSpan, records: u64) {
        self.corruption
            .note(&self.config.dir, first_seq, span, records);
    }

    fn poison(&self, error: &WalError) {
        let mut poisoned = self.poisoned.lock().expect("poison lock");
        if poisoned.is_none() {
            tracing::error!(message = "The log failed to write; refusing further appends.", %error);
            *poisoned = Some(error.to_string());
        }
    }

    fn check_poisoned(&self) -> Result<(), WalError> {
        match &*self.poisoned.lock().expect("poison lock") {
            Some(reason) => Err(WalError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    /// Removes every segment that all readers are past.
    fn collect_garbage(&self) -> Result<(), WalError> {
        let min_cursor = {
            let cursors = self.cursors.lock().expect("cursors lock");
            match cursors.values().min() {
                Some(&min) => min,
                None => return Ok(()),
            }
        };
        self.remove_segments_before(min_cursor).map(drop)
    }

    /// The bytes of the log's segments on disk.
    fn size_bytes(&self) -> u64 {
        self.segments.lock().expect("segments lock").total_bytes()
    }

    /// Removes every sealed segment whose records all come before `seq`; returns how many
    /// records they held.
    fn remove_segments_before(&self, seq: u64) -> Result<u64, WalError> {
        // Choosing, unlinking and forgetting are one step for removers, so that no segment is
        // picked twice; the writer only needs the segments lock, held briefly.
        let _removing = self.removing.lock().expect("removing lock");
        let removable = self
            .segments
            .lock()
            .expect("segments lock")
            .sealed_before(seq);
        if removable.is_empty() {
            return Ok(0);
        }
        for &(first, _) in &removable {
            let path = segment::segment_path(&self.config.dir, first);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(WalError::io(&path, e)),
            }
            self.segments.lock().expect("segments lock").remove(first);
        }
        segment::sync_dir(&self.config.dir)?;
        tracing::debug!(message = "Removed log segments.", count = removable.len());
        let (lock, freed) = &self.space_freed;
        let _guard = lock.lock().expect("space lock");
        freed.notify_all();
        Ok(removable.iter().map(|&(_, records)| records).sum())
    }

    /// Removes the oldest sealed segment whatever the readers' cursors (`WhenFull::DropOldest`);
    /// false if only the active segment is left.
    fn drop_oldest_segment(&self) -> Result<bool, WalError> {
        let second = self
            .segments
            .lock()
            .expect("segments lock")
            .keys()
            .nth(1)
            .copied();
        let Some(second) = second else {
            return Ok(false);
        };
        let records = self.remove_segments_before(second)?;
        self.dropped_records.fetch_add(records, Ordering::Relaxed);
        tracing::warn!(
            message = "The log is full; removed its oldest segment before every output read it.",
            records
        );
        Ok(true)
    }
}

/// A request to the writer thread.
enum Command {
    Append {
        /// The payload's checksum, which the writer extends over the record's header.
        payload_crc: u32,
        payload: Vec<u8>,
        done: Option<oneshot::Sender<Result<u64, WalError>>>,
        _permit: tokio::sync::OwnedSemaphorePermit,
    },
    Shutdown(oneshot::Sender<()>),
    /// Somebody waits on a ticket: sync what is written now instead of at the interval.
    /// Carries nothing: [`SyncRequest`]'s flag says it, the command only wakes the writer.
    Sync,
}

/// How a ticket asks the writer for a sync before the interval is up (with
/// [`Persistence::Interval`]): the first time it is awaited and not yet durable, or when its
/// holder knows someone will wait for it ([`AppendTicket::sync_request`]).
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// Set by tickets, taken by the writer after each group it writes.
    wanted: Arc<AtomicBool>,
    /// Wakes a writer that sleeps until the interval; weak, so that tickets kept after the
    /// log is gone do not keep its writer running.
    wake: flume::WeakSender<Command>,
}

impl SyncRequest {
    /// Asks the writer to sync what it has written, and the record this came from with it, now
    /// rather than at the interval.
    pub fn ask(&self) {
        self.wanted.store(true, Ordering::Release);
        if let Some(commands) = self.wake.upgrade() {
            // A full queue means a busy writer: it sees the flag after the group it is on.
            let _ = commands.try_send(Command::Sync);
        }
    }
}

/// Resolves once an appended record is durable under the log's [`Persistence`] policy.
#[derive(Debug)]
pub struct AppendTicket {
    durable: oneshot::Receiver<Result<u64, WalError>>,
    /// Taken on the first poll that finds the record not durable yet.
    sync_request: Option<SyncRequest>,
}

impl AppendTicket {
    /// A ticket that is already resolved: for callers that acknowledge something the log was
    /// never asked to keep.
    pub fn ready() -> Self {
        let (done, durable) = oneshot::channel();
        let _ = done.send(Ok(u64::MAX));
        Self {
            durable,
            sync_request: None,
        }
    }

    /// Waits until the record is durable; returns its position.
    pub async fn durable(self) -> Result<Position, WalError> {
        self.await
    }

    /// What asks for this record's sync ahead of awaiting the ticket, for holders that know
    /// someone will wait for it; none when the policy is not an interval, or the ticket was
    /// awaited already.
    pub fn sync_request(&self) -> Option<SyncRequest> {
        self.sync_request.clone()
    }
}

/// Polling the ticket is waiting for durability, so that a connection can wait for its oldest
/// acknowledgement and for its socket at once.
impl std::future::Future for AppendTicket {
    type Output = Result<Position, WalError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let polled = std::pin::Pin::new(&mut self.durable)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(WalError::Closed)).map(Position::new));
        if polled.is_pending()
            && let Some(request) = self.sync_request.take()
        {
            // Someone waits for this record (a sender for its acknowledgement): waiting for
            // the interval would hold them up to a whole interval per round trip.
            request.ask();
        }
        polled
    }
}

/// While it lives, the log syncs every write at once: see [`Wal::follow_closely`].
#[derive(Debug)]
pub struct CloseFollower {
    shared: Arc<Shared>,
}

impl Drop for CloseFollower {
    fn drop(&mut self) {
        self.shared.close_followers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The durable log. Cheap to share behind an `Arc`; appends may come from any task.
#[derive(Debug)]
pub struct Wal {
    shared: Arc<Shared>,
    commands: flume::Sender<Command>,
    in_flight: Arc<Semaphore>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// What tickets use to ask for an early sync; `None` unless the policy is an interval.
    sync_request: Option<SyncRequest>,
}

impl Wal {
    /// Opens (or creates) the log in `config.dir`, recovering from a crash if needed.
    pub fn open(config: WalConfig) -> Result<Self, WalError> {
        config.validate()?;
        fs::create_dir_all(config.dir.join("cursors")).map_err(|e| WalError::io(&config.dir, e))?;
        let recovered = writer::recover(&config.dir)?;
        let durable = Durable {
            next_seq: recovered.next_seq,
            segment: recovered.active_first_seq,
            offset: recovered.active_len,
        };
        let shared = Arc::new(Shared {
            segments: Mutex::new(recovered.segments.into()),
            removing: Mutex::new(()),
            durable: watch::Sender::new(durable),
            full: AtomicBool::new(false),
            dropped_records: AtomicU64::new(0),
            corruption: Corruption::default(),
            disk_full: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            close_followers: AtomicUsize::new(0),
            // Every persisted cursor holds its segments from the start, not only those of
            // readers opened again: an output that commits first after a restart must not
            // remove what another, not reopened yet, still needs.
            cursors: Mutex::new(
                cursor::load_all(&config.dir.join("cursors"))?
                    .into_iter()
                    .collect(),
            ),
            space_freed: (Mutex::new(()), Condvar::new()),
            poisoned: Mutex::new(None),
            #[cfg(test)]
            faults: tests::Faults::default(),
            config,
        });
        for (first_seq, span, records) in recovered.corrupt {
            shared.note_corrupt(first_seq, span, records);
        }
        let (commands, queue) = flume::bounded(4096);
        let in_flight = Arc::new(Semaphore::new(shared.config.max_in_flight));
        let writer_shared = shared.clone();
        let file = recovered.active;
        let sync_wanted = Arc::new(AtomicBool::new(false));
        let sync_request =
            matches!(shared.config.persistence, Persistence::Interval(_)).then(|| SyncRequest {
                wanted: sync_wanted.clone(),
                wake: commands.downgrade(),
            });
        let writer = std::thread::Builder::new()
            .name("flumen-wal-writer".into())
            .spawn(move || writer::run(writer_shared, file, queue, sync_wanted))
            .map_err(|e| WalError::io(&shared.config.dir, e))?;
        Ok(Self {
            shared,
            commands,
            in_flight,
            writer: Mutex::new(Some(writer)),
            sync_request,
        })
    }

    /// Appends one record. Waits while the queue to the writer is full (backpressure), then
    /// returns a ticket that resolves when the record is durable. Dropping the ticket does not
    /// cancel the append.
    pub async fn append(&self, payload: Vec<u8>) -> Result<AppendTicket, WalError> {
        if payload.len() > segment::MAX_RECORD_LEN {
            return Err(WalError::TooLarge(payload.len()));
        }
        let largest = self.shared.config.largest_record();
        if payload.len() as u64 > largest {
            return Err(WalError::NeverFits {
                size: payload.len(),
                largest,
            });
        }
        self.shared.check_poisoned()?;
        if self.shared.closing.load(Ordering::Relaxed) {
            return Err(WalError::Closed);
        }
        // The checksum is computed here, on the caller's core, not on the writer thread.
        let payload_crc = segment::payload_crc(&payload);
        let permits =
            (segment::RECORD_HEADER_LEN + payload.len()).clamp(1, self.shared.config.max_in_flight);
        let permit = self
            .in_flight
            .clone()
            .acquire_many_owned(permits as u32)
            .await
            .map_err(|_| WalError::Closed)?;
        let (done, durable) = oneshot::channel();
        self.commands
            .send_async(Command::Append {
                payload_crc,
                payload,
                done: Some(done),
                _permit: permit,
            })
            .await
            .map_err(|_| WalError::Closed)?;
        Ok(AppendTicket {
            durable,
            sync_request: self.sync_request.clone(),
        })
    }

    /// True while the log is at its size cap and appends wait for outputs to catch up.
    pub fn is_full(&self) -> bool {
        self.shared.full.load(Ordering::Relaxed)
    }

    /// True if a record of `len` bytes would fit under the size cap right now, counting what
    /// is queued for the writer: lets request/response inputs answer "retry later" instead of
    /// waiting for room. `len` may be the total of several records; past
    /// [`WalConfig::largest_record`] only that much room is asked for, since more can never
    /// come: the records then wait for room one by one (or one is refused as never fitting)
    /// instead of being answered "retry later" for ever.
    pub fn has_room(&self, len: usize) -> bool {
        if self.shared.config.when_full != WhenFull::Block && !self.disk_full() {
            // Nothing waits under a drop policy.
            return true;
        }
        let largest = usize::try_from(self.shared.config.largest_record()).unwrap_or(usize::MAX);
        let len = len.min(largest);
        let queued = self.shared.config.max_in_flight - self.in_flight.available_permits();
        // Room for the record's header and for the header of a segment it may start.
        let needed = (queued + len + segment::RECORD_HEADER_LEN) as u64 + segment::HEADER_LEN;
        !self.is_full() && self.shared.size_bytes() + needed <= self.shared.config.max_size
    }

    /// True while the disk is full: the writer waits for room (retrying), inputs are held back.
    pub fn disk_full(&self) -> bool {
        self.shared.disk_full.load(Ordering::Relaxed)
    }

    /// The log's error, if a failed write or sync poisoned it.
    pub fn poisoned(&self) -> Option<String> {
        self.shared.poisoned.lock().expect("poison lock").clone()
    }

    /// A snapshot of the log's state.
    pub fn stats(&self) -> WalStats {
        let segments = self.shared.segments.lock().expect("segments lock");
        WalStats {
            first: Position::new(segments.keys().next().copied().unwrap_or(0)),
            durable_end: self.durable_end(),
            size_bytes: segments.total_bytes(),
            segments: segments.len(),
            full: self.is_full(),
            dropped_records: self.shared.dropped_records.load(Ordering::Relaxed),
            corrupt_records: self.shared.corruption.records.load(Ordering::Relaxed),
            corrupt_bytes: self.shared.corruption.bytes.load(Ordering::Relaxed),
        }
    }

    /// Opens the reader called `name`, at its persisted cursor; a reader the log has never
    /// seen starts at the end. Readers must be opened before appends they should see. A cursor
    /// before the oldest record left is where the reader starts all the same: its first read
    /// reports the records it missed as [`Read::Removed`].
    pub fn reader(&self, name: &str) -> Result<WalReader, WalError> {
        WalReader::open(self.shared.clone(), name)
    }

    /// A detached reader at the first record of the `segments` newest segments: for rebuilding
    /// state from recent records at start-up.
    pub fn recent(&self, segments: usize) -> WalReader {
        let start = {
            let all = self.shared.segments.lock().expect("segments lock");
            all.keys()
                .rev()
                .nth(segments.max(1) - 1)
                .or(all.keys().next())
                .copied()
                .unwrap_or(0)
        };
        self.reader_at(Position::new(start))
    }

    /// A detached reader whose first read is at `position`: it has no cursor, holds no
    /// segment on disk, and cannot commit. Records removed before it reads them (a position
    /// before the oldest record, segments removed under it) are reported as
    /// [`Read::Removed`]. A position past the durable end is where it reads from once the log
    /// gets there: [`Wal::durable_end`] reads from now on.
    pub fn reader_at(&self, position: Position) -> WalReader {
        WalReader::detached(self.shared.clone(), position)
    }

    /// Asks that what is written be synced at once rather than at the interval, for as long
    /// as the returned guard lives: a live stream shows events once they are durable, and
    /// with [`Persistence::Interval`] records that no sender waits for (no acknowledgement
    /// asked) would otherwise become durable, and visible, only when the interval is up.
    /// Syncs still run one at a time, each covering everything written before it (group
    /// commit), so this costs at most one `fdatasync` per write group.
    pub fn follow_closely(&self) -> CloseFollower {
        self.shared.close_followers.fetch_add(1, Ordering::AcqRel);
        CloseFollower {
            shared: self.shared.clone(),
        }
    }

    /// One past the newest durable record: the position of the next record readers will see.
    pub fn durable_end(&self) -> Position {
        Position::new(self.shared.durable.borrow().next_seq)
    }

    /// Deletes the persisted cursors of readers not in `keep` (outputs removed from the
    /// configuration), so that they no longer hold segments on disk.
    pub fn retain_readers(&self, keep: &[&str]) -> Result<(), WalError> {
        cursor::retain(&self.shared.cursor_dir(), keep)?;
        self.shared
            .cursors
            .lock()
            .expect("cursors lock")
            .retain(|name, _| keep.contains(&name.as_str()));
        self.shared.collect_garbage()
    }

    /// Refuses appends from now on: those waiting for room in the queue or under the size cap
    /// fail with [`WalError::Closed`], and so do new ones. Appends already queued that fit are
    /// still written, and [`Wal::shutdown`] makes them durable. A stop calls this when inputs
    /// blocked on a full log would otherwise wait for ever.
    pub fn close_appends(&self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.in_flight.close();
    }

    /// Waits for every queued append to be written and synced, then stops the writer.
    /// Appends after this fail with [`WalError::Closed`].
    pub async fn shutdown(&self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        let (done, stopped) = oneshot::channel();
        if self
            .commands
            .send_async(Command::Shutdown(done))
            .await
            .is_ok()
        {
            let _ = stopped.await;
        }
        if let Some(handle) = self.writer.lock().expect("writer lock").take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        let (done, _stopped) = oneshot::channel();
        // Without a place in the queue the writer cannot be told to stop; it stops once this
        // handle's sender is gone.
        if self.commands.try_send(Command::Shutdown(done)).is_ok()
            && let Some(handle) = self.writer.lock().expect("writer lock").take()
        {
            let _ = handle.join();
        }
    }
}

fn open_segment_for_append(dir: &Path, first_seq: u64) -> Result<File, WalError> {
    use std::io::Write;
    let path = segment::segment_path(dir, first_seq);
    let mut file = fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|e| WalError::io(&path, e))?;
    file.write_all(&segment::encode_header(first_seq))
        .and_then(|()| file.sync_data())
        .map_err(|e| WalError::io(&path, e))?;
    segment::sync_dir(dir)?;
    Ok(file)
}

#[cfg(test)]
mod tests;
