//! A request's entries, split into the batches a source stores as separate log records, so
//! that no request, however large, makes one record larger than a batch.

use std::ops::Range;

use flumen_event::EventTime;
use flumen_event::entry::write_entry;

/// The most events in one batch of a request.
pub const MAX_BATCH_EVENTS: u32 = 4096;

/// The size at which a batch of a request is closed; a batch is larger only when its one
/// record is.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// Entries laid end to end, and the batches they are split into.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batches {
    /// The entries, msgpack, laid end to end.
    pub entries: Vec<u8>,
    /// How many there are.
    pub count: u32,
    /// The closed batches: their event counts and byte ranges, in order.
    closed: Vec<(u32, Range<usize>)>,
    /// Where the open batch starts, and how many events it has.
    open_start: usize,
    open_count: u32,
}

impl Batches {
    /// Adds the entry `[time, record]`, closing the open batch once it is full.
    pub fn push(&mut self, time: EventTime, record: &[u8]) {
        write_entry(&mut self.entries, time, record);
        self.count += 1;
        self.open_count += 1;
        if self.open_count == MAX_BATCH_EVENTS
            || self.entries.len() - self.open_start >= MAX_BATCH_BYTES
        {
            self.close();
        }
    }

    /// Closes the open batch, if it has events: call once every entry is pushed.
    pub fn close(&mut self) {
        if self.open_count > 0 {
            let end = self.entries.len();
            self.closed.push((self.open_count, self.open_start..end));
            self.open_start = end;
            self.open_count = 0;
        }
    }

    /// The closed batches to store, in order: (event count, entries).
    pub fn batches(&self) -> impl ExactSizeIterator<Item = (u32, &[u8])> {
        self.closed
            .iter()
            .map(|(count, range)| (*count, &self.entries[range.clone()]))
    }
}
