//! Readers: each output reads the log through its own cursor.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use crate::segment::{self, CorruptSpan, Scanned, SegmentScanner};
use crate::{Durable, Shared, WalError, cursor};

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    /// Its sequence number.
    pub seq: u64,
    /// What was appended.
    pub payload: Bytes,
}

/// A cursor over the log: reads durable records in order and persists how far its owner got.
///
/// Reading does blocking file I/O on the calling thread, a chunk of up to 1 MiB at a time,
/// mostly from the page cache. Corrupt records are skipped and counted in the log's
/// [`WalStats`](crate::WalStats), never a reason to stop.
pub struct WalReader {
    shared: Arc<Shared>,
    /// `None` for a detached reader: no cursor, holds no segment.
    name: Option<String>,
    durable: watch::Receiver<Durable>,
    next_seq: u64,
    segment: Option<SegmentScanner>,
}

impl std::fmt::Debug for WalReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalReader")
            .field("name", &self.name)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl WalReader {
    pub(crate) fn open(shared: Arc<Shared>, name: &str) -> Result<Self, WalError> {
        let durable = shared.durable.subscribe();
        let end = durable.borrow().next_seq;
        let first = shared
            .segments
            .lock()
            .expect("segments lock")
            .keys()
            .next()
            .copied()
            .unwrap_or(0);
        let persisted = cursor::load(&shared.cursor_dir(), name)?;
        // A cursor past the end means records it had seen were lost with the OS's cache
        // (persistence "os" and a machine crash); one before the start means its segments were
        // removed after it had read them.
        let start = persisted.unwrap_or(end).clamp(first, end);
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
        let mut reader = Self {
            shared,
            name: Some(name.to_owned()),
            durable,
            next_seq: start,
            segment: None,
        };
        reader.seek(start)?;
        Ok(reader)
    }

    /// A reader with no cursor, starting at the first record of the `segments`-th newest
    /// segment: for looking back at recent records at start-up. It does not keep segments from
    /// being removed, and cannot commit.
    pub(crate) fn detached(shared: Arc<Shared>, segments: usize) -> Result<Self, WalError> {
        let durable = shared.durable.subscribe();
        let start = {
            let all = shared.segments.lock().expect("segments lock");
            all.keys()
                .rev()
                .nth(segments.max(1) - 1)
                .or(all.keys().next())
                .copied()
                .unwrap_or(0)
        };
        let mut reader = Self {
            shared,
            name: None,
            durable,
            next_seq: start,
            segment: None,
        };
        reader.seek(start)?;
        Ok(reader)
    }

    /// The reader's name (empty for a detached reader).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    /// The sequence number of the next record this reader returns.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// One past the newest durable record.
    pub fn durable_end(&self) -> u64 {
        self.durable.borrow().next_seq
    }

    /// Positions the reader at `seq` in the segment holding it.
    fn seek(&mut self, seq: u64) -> Result<(), WalError> {
        let durable = *self.durable.borrow();
        let first = self
            .shared
            .segments
            .lock()
            .expect("segments lock")
            .range(..=seq)
            .next_back()
            .map(|(&first, _)| first)
            .unwrap_or(seq);
        self.open_readable_segment(first)?;
        while self.next_seq < seq {
            if let Advance::End = self.advance(&durable)? {
                return Err(WalError::Corrupt {
                    path: segment::segment_path(&self.shared.config.dir, first),
                    reason: "cursor points past the records of its segment",
                });
            }
        }
        Ok(())
    }

    fn open_segment(&mut self, first_seq: u64) -> Result<(), WalError> {
        self.next_seq = first_seq;
        self.segment = Some(SegmentScanner::open(&self.shared.config.dir, first_seq)?);
        Ok(())
    }

    /// Reads up to `max_records` durable records, or fewer once `max_bytes` of payload are
    /// read; returns an empty vector when the reader is caught up.
    pub fn read(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<WalRecord>, WalError> {
        let durable = *self.durable.borrow();
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max_records && bytes < max_bytes && self.next_seq < durable.next_seq {
            match self.next_record(&durable)? {
                Some(record) => {
                    bytes += record.payload.len();
                    out.push(record);
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// Waits until a durable record this reader has not read exists. Fails once the log is
    /// closed.
    pub async fn wait(&mut self) -> Result<(), WalError> {
        let next = self.next_seq;
        self.durable
            .wait_for(|d| d.next_seq > next)
            .await
            .map(|_| ())
            .map_err(|_| WalError::Closed)
    }

    /// Records that every record below `next_seq` is delivered: persists the cursor and lets
    /// segments that every reader is past be removed.
    pub fn commit(&mut self, next_seq: u64) -> Result<(), WalError> {
        let Some(name) = &self.name else {
            return Err(WalError::Config(
                "a detached reader has no cursor to commit".into(),
            ));
        };
        cursor::store(&self.shared.cursor_dir(), name, next_seq)?;
        self.shared
            .cursors
            .lock()
            .expect("cursors lock")
            .insert(name.clone(), next_seq);
        self.shared.collect_garbage()
    }

    fn next_record(&mut self, durable: &Durable) -> Result<Option<WalRecord>, WalError> {
        loop {
            match self.advance(durable)? {
                Advance::Record(record) => return Ok(Some(record)),
                Advance::Skipped => {}
                Advance::End => return Ok(None),
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
            Some(Scanned::Record { seq, payload }) => {
                Ok(Advance::Record(WalRecord { seq, payload }))
            }
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
    /// removed to make room (`WhenFull::DropOldest`): then to the oldest left.
    fn open_segment_after(&mut self, first: u64) -> Result<(), WalError> {
        let Some(next) = self.shared.segment_after(first) else {
            return Ok(());
        };
        if next > self.next_seq {
            tracing::warn!(
                message = "Records were removed from the log before this reader read them.",
                reader = self.name(),
                skipped = next - self.next_seq,
            );
        }
        self.open_readable_segment(next)
    }

    /// Opens the segment starting at `first`, or, if its header is corrupt, the first one
    /// after it that is readable, counting the skipped segments' records as lost.
    fn open_readable_segment(&mut self, mut first: u64) -> Result<(), WalError> {
        loop {
            match self.open_segment(first) {
                Err(WalError::Corrupt { path, reason }) => {
                    let Some(after) = self.shared.segment_after(first) else {
                        return Err(WalError::Corrupt { path, reason });
                    };
                    let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
                    let whole = CorruptSpan { offset: 0, bytes };
                    self.shared.note_corrupt(first, whole, after - first);
                    first = after;
                }
                opened => return opened,
            }
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
