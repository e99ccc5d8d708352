//! Entries: one event's time and record, as msgpack.
//!
//! An entry is `[time, record]`, or the v1.5 form `[[time, metadata], record]`, where `time` is
//! an EventTime, an integer or a float and `record` and `metadata` are maps. A stream of entries
//! laid end to end is the body of a Forward `PackedForward` chunk and of a flumen batch.

use crate::EventTime;
use crate::msgpack::{MsgpackError, Reader};

/// One event inside a stream of entries, borrowed from the stream's bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry<'a> {
    /// When the event happened.
    pub time: EventTime,
    /// The v1.5 metadata map, when the sender sent one.
    pub metadata: Option<&'a [u8]>,
    /// The record, a msgpack map.
    pub record: &'a [u8],
    /// The whole entry as it arrived.
    pub raw: &'a [u8],
}

/// A malformed entry in a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("entry {index}: {reason}")]
pub struct EntryError {
    /// The zero-based index of the entry in its stream.
    pub index: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Reads one entry at the reader's position.
pub fn read_entry<'a>(r: &mut Reader<'a>) -> Result<Entry<'a>, MsgpackError> {
    let start = r.position();
    if r.read_array_len()? != 2 {
        return Err(MsgpackError::Invalid("an entry must be a 2-element array"));
    }
    let (time, metadata) = if r.peek()? & 0xf0 == 0x90 || matches!(r.peek()?, 0xdc | 0xdd) {
        if r.read_array_len()? != 2 {
            return Err(MsgpackError::Invalid(
                "an entry's [time, metadata] must have 2 elements",
            ));
        }
        let time = r.read_time()?;
        (time, Some(r.read_map_raw()?))
    } else {
        (r.read_time()?, None)
    };
    let record = r.read_map_raw()?;
    let raw = &r.buffer()[start..r.position()];
    Ok(Entry {
        time,
        metadata,
        record,
        raw,
    })
}

/// Iterates over a stream of entries; stops after the first malformed one.
#[derive(Debug, Clone)]
pub struct EntryIter<'a> {
    reader: Reader<'a>,
    index: usize,
    failed: bool,
}

impl<'a> EntryIter<'a> {
    /// Iterates over the entries laid end to end in `stream`.
    pub fn new(stream: &'a [u8]) -> Self {
        Self {
            reader: Reader::new(stream),
            index: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for EntryIter<'a> {
    type Item = Result<Entry<'a>, EntryError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_empty() {
            return None;
        }
        let index = self.index;
        self.index += 1;
        match read_entry(&mut self.reader) {
            Ok(entry) => Some(Ok(entry)),
            Err(error) => {
                self.failed = true;
                let reason = match error {
                    MsgpackError::Incomplete => "truncated entry",
                    MsgpackError::Invalid(reason) => reason,
                };
                Some(Err(EntryError { index, reason }))
            }
        }
    }
}

/// Checks that `stream` is a whole number of well-formed entries and counts them.
pub fn validate_entries(stream: &[u8]) -> Result<u32, EntryError> {
    let mut count = 0u32;
    for entry in EntryIter::new(stream) {
        entry?;
        count += 1;
    }
    Ok(count)
}

/// Appends `[time, record]` to `out`, where `record` is an encoded msgpack map.
pub fn write_entry(out: &mut Vec<u8>, time: EventTime, record: &[u8]) {
    out.push(0x92);
    time.write_msgpack(out);
    out.extend_from_slice(record);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        rmp::encode::write_map_len(&mut out, pairs.len() as u32).unwrap();
        for (k, v) in pairs {
            rmp::encode::write_str(&mut out, k).unwrap();
            rmp::encode::write_str(&mut out, v).unwrap();
        }
        out
    }

    #[test]
    fn reads_plain_and_v15_entries() {
        let rec = record(&[("log", "hello")]);
        let mut stream = Vec::new();
        write_entry(&mut stream, EventTime::new(10, 1), &rec);
        // [[time, {}], record]
        stream.extend_from_slice(&[0x92, 0x92]);
        EventTime::new(11, 2).write_msgpack(&mut stream);
        stream.push(0x80);
        stream.extend_from_slice(&rec);
        // [int time, record]
        stream.extend_from_slice(&[0x92, 12]);
        stream.extend_from_slice(&rec);

        let entries: Vec<_> = EntryIter::new(&stream).map(Result::unwrap).collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].time, EventTime::new(10, 1));
        assert_eq!(entries[1].time, EventTime::new(11, 2));
        assert_eq!(entries[1].metadata, Some(&[0x80u8][..]));
        assert_eq!(entries[2].time, EventTime::new(12, 0));
        assert!(entries.iter().all(|e| e.record == rec.as_slice()));
        assert_eq!(validate_entries(&stream), Ok(3));
    }

    #[test]
    fn rejects_a_record_that_is_not_a_map() {
        let stream = [0x92, 0x01, 0xa1, b'x'];
        let err = validate_entries(&stream).unwrap_err();
        assert_eq!(err.index, 0);
        assert_eq!(err.reason, "expected a map");
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let mut stream = Vec::new();
        write_entry(&mut stream, EventTime::new(1, 0), &record(&[("a", "b")]));
        stream.pop();
        assert_eq!(
            validate_entries(&stream).unwrap_err().reason,
            "truncated entry"
        );
    }
}
