//! Readers: each output reads the log through its own cursor; other readers (a store, live
//! streams) through detached readers opened at a position.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::watch;

use crate::segment::{self, CorruptSpan, Scanned, SegmentScanner};
use crate::{Durable, Position, Shared, WalError, cursor};

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    /// Where it is in the log.
    pub position: Position,
    /// What was appended.
    pub payload: Bytes,
}

/// What one read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// The next durable records, in order; empty when the reader is caught up.
    Records(Vec<WalRecord>),
    /// The records from `from` up to (not including) `to` were removed from the log before
    /// this reader read them (segments removed under a detached reader, a position before the
    /// oldest record, `WhenFull::DropOldest`). The next read goes on at `to`.
    Removed {
        /// The first record lost to this reader.
        from: Position,
        /// The first record after them; the reader's position now.
        to: Position,
    },
}

/// A reader of the log: reads durable records in order from its position and, if it has a
/// name, persists how far its owner got (its cursor), which holds the segments after it on
/// disk.
///
/// [`read`](Self::read) and [`commit`](Self::commit) do their file I/O on tokio's blocking
/// threads, so an async task may call them; [`read_blocking`](Self::read_blocking) and
/// [`commit_blocking`](Self::commit_blocking) do it on the calling thread, for callers that are
/// on a thread allowed to block. A read takes up to 1 MiB or so at a time, mostly from the page
/// cache. Corrupt records are skipped and counted in the log's
/// [`WalStats`](crate::WalStats), never a reason to stop; removed records are reported as
/// [`Read::Removed`].
pub struct WalReader {
    shared: Arc<Shared>,
    /// `None` for a detached reader: no cursor, holds no segment.
    name: Option<String>,
    durable: watch::Receiver<Durable>,
    /// The file position, behind a lock so that a blocking thread can read with it.
    scan: Arc<Mutex<Scan>>,
}

impl std::fmt::Debug for WalReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalReader")
            .field("name", &self.name)
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}

impl WalReader {
    pub(crate) fn open(shared: Arc<Shared>, name: &str) -> Result<Self, WalError> {
        let durable = shared.durable.subscribe();
        let end = durable.borrow().next_seq;
        let persisted = cursor::load(&shared.cursor_dir(), name)?;
        // A cursor past the end means records it had seen were lost with the OS's cache
        // (persistence "os" and a machine crash): it starts at the end. One before the oldest
        // record stays, so that its first read reports the records removed since.
        let start = persisted.unwrap_or(end).min(end);
        if persisted != Some(start) {
            // Persist where a new reader starts: records appended from now on are its to read,
            // even if the process dies before the reader commits anything.
            cursor::store(&shared.cursor_dir(), name, start)?;
        }
        shared
            .cursors
            .lock()
            .expect("cursors lock")
            .insert(name.to_owned(), start);
        let reader = Self::new(shared, Some(name.to_owned()), durable, start);
        reader.lock_scan().seek(start, &reader.durable.borrow())?;
        Ok(reader)
    }

    /// A reader with no cursor at `position`; it opens its segment on its first read.
    pub(crate) fn detached(shared: Arc<Shared>, position: Position) -> Self {
        let durable = shared.durable.subscribe();
        Self::new(shared, None, durable, position.get())
    }

    fn new(
        shared: Arc<Shared>,
        name: Option<String>,
        durable: watch::Receiver<Durable>,
        start: u64,
    ) -> Self {
        let scan = Scan {
            shared: shared.clone(),
            name: name.clone().unwrap_or_default(),
            next_seq: start,
            segment: None,
            removed: None,
            unclaimed: None,
        };
        Self {
            shared,
            name,
            durable,
            scan: Arc::new(Mutex::new(scan)),
        }
    }

    /// The reader's name (empty for a detached reader).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    /// The position of the next record this reader reads, or reports removed.
    pub fn position(&self) -> Position {
        let scan = self.lock_scan();
        Position::new(scan.removed.map_or(scan.next_seq, |(from, _)| from))
    }

    /// One past the newest durable record: "now".
    pub fn durable_end(&self) -> Position {
        Position::new(self.durable.borrow().next_seq)
    }

    /// Reads up to `max_records` durable records, or fewer once `max_bytes` of payload are
    /// read, on a blocking thread; [`Read::Records`] is empty when the reader is caught up.
    ///
    /// Cancel-safe: if the future is dropped before it is done, the records it read are what
    /// the next read returns.
    pub async fn read(&mut self, max_records: usize, max_bytes: usize) -> Result<Read, WalError> {
        let durable = *self.durable.borrow();
        if self.lock_scan().caught_up(&durable) {
            // Nothing to read: not worth a trip to another thread.
            return Ok(Read::Records(Vec::new()));
        }
        let scan = self.scan.clone();
        let reading = tokio::task::spawn_blocking(move || {
            let mut scan = scan.lock().expect("reader lock");
            let read = scan.read_or_unclaimed(&durable, max_records, max_bytes);
            // Left here until this call takes it, so that a read whose caller went away is
            // not lost.
            scan.unclaimed = Some(read);
        });
        if let Err(error) = reading.await {
            std::panic::resume_unwind(error.into_panic());
        }
        self.lock_scan()
            .unclaimed
            .take()
            .expect("a finished read leaves its result")
    }

    /// [`read`](Self::read) on the calling thread, for callers allowed to block.
    pub fn read_blocking(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Read, WalError> {
        let durable = *self.durable.borrow();
        self.lock_scan()
            .read_or_unclaimed(&durable, max_records, max_bytes)
    }

    /// Waits until a read has something to return: a durable record this reader has not read,
    /// or removed records to report. Fails once the log is closed.
    pub async fn wait(&mut self) -> Result<(), WalError> {
        let next = {
            let scan = self.lock_scan();
            if scan.removed.is_some() || scan.unclaimed.is_some() {
                return Ok(());
            }
            scan.next_seq
        };
        self.durable
            .wait_for(|d| d.next_seq > next)
            .await
            .map(|_| ())
            .map_err(|_| WalError::Closed)
    }

    /// Records that every record before `position` is delivered, on a blocking thread:
    /// persists the cursor and lets segments that every reader is past be removed.
    pub async fn commit(&mut self, position: Position) -> Result<(), WalError> {
        let name = self.cursor_name()?.to_owned();
        let shared = self.shared.clone();
        match tokio::task::spawn_blocking(move || commit_cursor(&shared, &name, position)).await {
            Ok(committed) => committed,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }

    /// [`commit`](Self::commit) on the calling thread, for callers allowed to block.
    pub fn commit_blocking(&mut self, position: Position) -> Result<(), WalError> {
        commit_cursor(&self.shared, self.cursor_name()?, position)
    }

    fn cursor_name(&self) -> Result<&str, WalError> {
        self.name
            .as_deref()
            .ok_or_else(|| WalError::Config("a detached reader has no cursor to commit".into()))
    }

    fn lock_scan(&self) -> MutexGuard<'_, Scan> {
        self.scan.lock().expect("reader lock")
    }
}

/// Persists reader `name`'s cursor at `position` and removes the segments every reader is past.
fn commit_cursor(shared: &Shared, name: &str, position: Position) -> Result<(), WalError> {
    cursor::store(&shared.cursor_dir(), name, position.get())?;
    shared
        .cursors
        .lock()
        .expect("cursors lock")
        .insert(name.to_owned(), position.get());
    shared.collect_garbage()
}

/// Where a reader is in the log's files, and what it found that its owner has not taken yet.
struct Scan {
    shared: Arc<Shared>,
    /// The reader's name, for log messages.
    name: String,
    next_seq: u64,
    /// The open segment; `None` until the first read of a detached reader.
    segment: Option<SegmentScanner>,
    /// Records found removed, `[from, to)`, not reported yet; `next_seq` is `to`.
    removed: Option<(u64, u64)>,
    /// What a read whose caller stopped waiting for it found, for the next read.
    unclaimed: Option<Result<Read, WalError>>,
}

impl Scan {
    /// True if a read would find nothing: every durable record read, nothing left to report.
    fn caught_up(&self, durable: &Durable) -> bool {
        self.unclaimed.is_none() && self.removed.is_none() && self.next_seq >= durable.next_seq
    }

    fn read_or_unclaimed(
        &mut self,
        durable: &Durable,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Read, WalError> {
        match self.unclaimed.take() {
            Some(read) => read,
            None => self.read(durable, max_records, max_bytes),
        }
    }

    fn read(
        &mut self,
        durable: &Durable,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Read, WalError> {
        if self.segment.is_none() {
            if durable.next_seq < self.next_seq {
                // A position not reached yet: nothing to read until it is.
                return Ok(Read::Records(Vec::new()));
            }
            self.seek(self.next_seq, durable)?;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max_records
            && bytes < max_bytes
            && self.next_seq < durable.next_seq
            && self.removed.is_none()
        {
            match self.next_record(durable)? {
                Some(record) => {
                    bytes += record.payload.len();
                    out.push(record);
                }
                None => break,
            }
        }
        // Records read before a removal are returned first, the removal on the next read.
        match self.removed {
            Some((from, to)) if out.is_empty() => {
                self.removed = None;
                Ok(Read::Removed {
                    from: Position::new(from),
                    to: Position::new(to),
                })
            }
            _ => Ok(Read::Records(out)),
        }
    }

    /// Positions the reader at `seq` (at most the durable end) in the segment holding it, or,
    /// if that segment is gone, at the oldest record after it, noting the records skipped as
    /// removed.
    fn seek(&mut self, seq: u64, durable: &Durable) -> Result<(), WalError> {
        let first = {
            let segments = self.shared.segments.lock().expect("segments lock");
            segments
                .range(..=seq)
                .next_back()
                .or(segments.iter().next())
                .map_or(seq, |(&first, _)| first)
        };
        self.open_readable_segment(first)?;
        if self.next_seq > seq {
            self.note_removed(seq);
            return Ok(());
        }
        while self.next_seq < seq {
            if let Advance::End = self.advance(durable)? {
                return Err(WalError::Corrupt {
                    path: segment::segment_path(&self.shared.config.dir, first),
                    reason: "cursor points past the records of its segment",
                });
            }
        }
        Ok(())
    }

    /// Notes that the records from `from` up to the reader's position were removed before it
    /// read them.
    fn note_removed(&mut self, from: u64) {
        tracing::debug!(
            message = "Records were removed from the log before this reader read them.",
            reader = %self.name,
            from,
            to = self.next_seq,
        );
        self.removed = Some((from, self.next_seq));
    }

    fn open_segment(&mut self, first_seq: u64) -> Result<(), WalError> {
        self.next_seq = first_seq;
        self.segment = Some(SegmentScanner::open(&self.shared.config.dir, first_seq)?);
        Ok(())
    }

    fn next_record(&mut self, durable: &Durable) -> Result<Option<WalRecord>, WalError> {
        loop {
            match self.advance(durable)? {
                Advance::Record(record) => return Ok(Some(record)),
                Advance::Skipped if self.removed.is_none() => {}
                Advance::Skipped | Advance::End => return Ok(None),
            }
        }
    }

    /// One step through the log: a record, corrupt records skipped, or the durable end.
    fn advance(&mut self, durable: &Durable) -> Result<Advance, WalError> {
        let scanner = self.segment.as_mut().expect("a segment is open");
        let first = scanner.first_seq();
        // A sealed segment is read to its end; the durable one up to the durable offset; a
        // newer one (created, nothing durable in it yet) not at all.
        let (limit, end_seq) = match durable.segment.cmp(&first) {
            std::cmp::Ordering::Greater => (u64::MAX, self.shared.segment_after(first)),
            std::cmp::Ordering::Equal => (durable.offset, Some(durable.next_seq)),
            std::cmp::Ordering::Less => (scanner.offset(), None),
        };
        let found = scanner.next(limit)?;
        self.next_seq = scanner.next_seq();
        match found {
            Some(Scanned::Record { seq, payload }) => Ok(Advance::Record(WalRecord {
                position: Position::new(seq),
                payload,
            })),
            Some(Scanned::Corrupt { span, records }) => {
                self.shared.note_corrupt(first, span, records);
                Ok(Advance::Skipped)
            }
            Some(Scanned::CorruptTail(span)) => {
                // Corrupt bytes up to the end of what is readable: the records before `end_seq`
                // they held are lost.
                let end = end_seq.unwrap_or(self.next_seq);
                self.shared
                    .note_corrupt(first, span, end.saturating_sub(self.next_seq));
                scanner.resume_at(end);
                self.next_seq = scanner.next_seq();
                Ok(Advance::Skipped)
            }
            None if durable.segment > first => {
                self.open_segment_after(first)?;
                Ok(Advance::Skipped)
            }
            None => Ok(Advance::End),
        }
    }

    /// Moves on from the exhausted segment `first` to the next one — unless that one was
    /// removed (`WhenFull::DropOldest`, or under a detached reader): then to the oldest left,
    /// noting the records in between as removed.
    fn open_segment_after(&mut self, first: u64) -> Result<(), WalError> {
        let Some(next) = self.shared.segment_after(first) else {
            return Ok(());
        };
        let end_of_first = self.next_seq;
        self.open_readable_segment(next)?;
        if self.next_seq > end_of_first {
            self.note_removed(end_of_first);
        }
        Ok(())
    }

    /// True if segment `first` is gone because the log removed it, not because something else
    /// deleted its file (which is an error the reader reports).
    fn removed_by_the_log(&self, first: u64) -> bool {
        // A removal unlinks the file before it forgets the segment: wait for one under way.
        let _removing = self.shared.removing.lock().expect("removing lock");
        !self
            .shared
            .segments
            .lock()
            .expect("segments lock")
            .contains_key(&first)
    }

    /// Opens the segment starting at `first`, or the first one after it that is there and
    /// readable: one the log removed meanwhile is passed over (the caller notes the removal),
    /// one with a corrupt header too, its records counted as lost.
    fn open_readable_segment(&mut self, mut first: u64) -> Result<(), WalError> {
        loop {
            let error = match self.open_segment(first) {
                Err(error @ WalError::Io { kind, .. })
                    if kind == std::io::ErrorKind::NotFound && self.removed_by_the_log(first) =>
                {
                    error
                }
                Err(error @ WalError::Corrupt { .. }) => error,
                opened => return opened,
            };
            let Some(after) = self.shared.segment_after(first) else {
                return Err(error);
            };
            if let WalError::Corrupt { path, .. } = &error {
                let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
                let whole = CorruptSpan { offset: 0, bytes };
                self.shared.note_corrupt(first, whole, after - first);
            }
            first = after;
        }
    }
}

/// What one step through the log found.
enum Advance {
    Record(WalRecord),
    /// Corrupt records skipped, or a move to the next segment.
    Skipped,
    /// Nothing more is durable.
    End,
}
