//! [`Position`]: where a record is in the log.

use std::fmt;
use std::str::FromStr;

/// A place in the log: the sequence number of a record, or of the record that will be
/// appended there. Every record has one, in append order without gaps, so positions compare as
/// the records do and the records between two positions can be counted.
///
/// Its text form is a plain decimal number: a client may be handed one as an opaque cursor and
/// give it back to resume reading there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(u64);

impl Position {
    /// The position before the first record ever appended.
    pub const START: Position = Position(0);

    /// The position of record number `seq`.
    pub const fn new(seq: u64) -> Self {
        Self(seq)
    }

    /// The record number, for metrics and for files that keep a position as a number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The position `records` records later.
    pub const fn after(self, records: u64) -> Self {
        Self(self.0.saturating_add(records))
    }

    /// The position of the next record.
    pub const fn next(self) -> Self {
        self.after(1)
    }

    /// How many records lie from `earlier` up to (not including) this position; zero if
    /// `earlier` is not earlier.
    pub const fn since(self, earlier: Position) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Parses the text form [`Display`](fmt::Display) writes: a decimal number, nothing else.
impl FromStr for Position {
    type Err = BadPosition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // `u64::from_str` would take a leading '+' too; a position is only ever digits.
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadPosition(text.to_owned()));
        }
        text.parse()
            .map(Self)
            .map_err(|_| BadPosition(text.to_owned()))
    }
}

/// Text that is not a log position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a log position is a decimal number below 2^64, not {0:?}")]
pub struct BadPosition(String);
