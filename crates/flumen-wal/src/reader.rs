//! Readers: each output reads the log through its own cursor.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use crate::segment::{self, Framed, HEADER_LEN, RECORD_HEADER_LEN};
use crate::{Durable, Shared, WalError, cursor};

/// How much a reader reads from a segment at a time.
const READ_CHUNK: usize = 1024 * 1024;

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    /// Its sequence number.
    pub seq: u64,
    /// What was appended.
    pub payload: Bytes,
}

struct OpenSegment {
    first_seq: u64,
    file: File,
    /// File offset of the first byte not read into `chunk` yet.
    file_offset: u64,
    /// Bytes read but not yet returned, starting at a record boundary at `chunk_pos`.
    chunk: Bytes,
    chunk_pos: usize,
}

/// A cursor over the log: reads durable records in order and persists how far its owner got.
///
/// Reading does blocking file I/O on the calling thread, a chunk of up to 1 MiB at a time,
/// mostly from the page cache.
pub struct WalReader {
    shared: Arc<Shared>,
    /// `None` for a detached reader: no cursor, holds no segment.
    name: Option<String>,
    durable: watch::Receiver<Durable>,
    next_seq: u64,
    segment: Option<OpenSegment>,
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
        self.open_segment(first)?;
        while self.next_seq < seq {
            if self.next_record(&durable)?.is_none() {
                return Err(WalError::Corrupt {
                    path: segment::segment_path(&self.shared.config.dir, first),
                    reason: "cursor points past the records of its segment",
                });
            }
        }
        Ok(())
    }

    fn open_segment(&mut self, first_seq: u64) -> Result<(), WalError> {
        let path = segment::segment_path(&self.shared.config.dir, first_seq);
        let mut file = File::open(&path).map_err(|e| WalError::io(&path, e))?;
        file.seek(SeekFrom::Start(HEADER_LEN))
            .map_err(|e| WalError::io(&path, e))?;
        self.next_seq = first_seq;
        self.segment = Some(OpenSegment {
            first_seq,
            file,
            file_offset: HEADER_LEN,
            chunk: Bytes::new(),
            chunk_pos: 0,
        });
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
            let seg = self.segment.as_mut().expect("a segment is open");
            let rest = &seg.chunk[seg.chunk_pos..];
            match segment::check_record(rest) {
                Framed::Record { total } => {
                    let start = seg.chunk_pos + RECORD_HEADER_LEN;
                    let payload = seg.chunk.slice(start..seg.chunk_pos + total);
                    seg.chunk_pos += total;
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    return Ok(Some(WalRecord { seq, payload }));
                }
                Framed::Corrupt(reason) => {
                    return Err(WalError::Corrupt {
                        path: segment::segment_path(&self.shared.config.dir, seg.first_seq),
                        reason,
                    });
                }
                Framed::Incomplete => {}
            }
            // Past the durable segment, a sealed one is read to its end; the durable one up to
            // the durable offset; a newer one (created, nothing durable in it yet) not at all.
            let sealed = durable.segment > seg.first_seq;
            let readable_end = match durable.segment.cmp(&seg.first_seq) {
                std::cmp::Ordering::Greater => u64::MAX,
                std::cmp::Ordering::Equal => durable.offset,
                std::cmp::Ordering::Less => seg.file_offset,
            };
            let wanted = match rest.get(..4) {
                Some(len) => {
                    RECORD_HEADER_LEN
                        + u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize
                }
                None => RECORD_HEADER_LEN,
            };
            let room = readable_end.saturating_sub(seg.file_offset);
            let want = (wanted.saturating_sub(rest.len()).max(READ_CHUNK) as u64).min(room);
            let mut next = Vec::with_capacity(rest.len() + want as usize);
            next.extend_from_slice(rest);
            let path = segment::segment_path(&self.shared.config.dir, seg.first_seq);
            let n = (&mut seg.file)
                .take(want)
                .read_to_end(&mut next)
                .map_err(|e| WalError::io(&path, e))?;
            seg.file_offset += n as u64;
            seg.chunk = Bytes::from(next);
            seg.chunk_pos = 0;
            if n > 0 {
                continue;
            }
            if !sealed {
                return Ok(None);
            }
            if !seg.chunk.is_empty() {
                return Err(WalError::Corrupt {
                    path,
                    reason: "a sealed segment ends inside a record",
                });
            }
            // The segment is exhausted: the next record starts the next segment — unless that
            // one was removed to make room (`WhenFull::DropOldest`): then skip to the oldest left.
            let next = self
                .shared
                .segments
                .lock()
                .expect("segments lock")
                .range(self.next_seq..)
                .next()
                .map(|(&first, _)| first);
            match next {
                Some(first) if first > self.next_seq => {
                    tracing::warn!(
                        message = "Records were removed from the log before this reader read them.",
                        reader = self.name(),
                        skipped = first - self.next_seq,
                    );
                    self.open_segment(first)?;
                }
                _ => self.open_segment(self.next_seq)?,
            }
        }
    }
}
